//! Kubernetes Events: one per change of outcome (`Synced` with counts, `SyncFailed` with the API
//! code, ...), not one per refresh. Publishing is best effort: a failure is logged and never
//! fails the reconcile.

use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::warn;

use crate::controller::report::status::{Outcome, READY, reason};
use crate::crd::{ImagePipelineQuery, ImagePipelineQueryStatus};

/// The reason of the Event published when a listing fails.
pub const SYNC_FAILED: &str = "SyncFailed";

/// The Event to publish for `outcome`, given the status before it; `None` when nothing changed
/// that a reader of `kubectl describe` would want to see again.
pub fn event_for(old: Option<&ImagePipelineQueryStatus>, outcome: &Outcome) -> Option<Event> {
    let old_reason = old
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY))
        .map(|c| c.reason.as_str());
    let old_code = old
        .and_then(|s| s.last_error.as_ref())
        .map(|e| e.code.as_str());
    let new_reason = outcome.reason();
    let changed = old_reason != Some(new_reason);
    let (type_, event_reason, note) = match outcome {
        Outcome::Synced { counts, .. } => {
            let wrote = counts.created + counts.updated + counts.deleted + counts.released > 0;
            if !changed && !wrote {
                return None;
            }
            let note = format!(
                "{}: {} created, {} updated, {} deleted, {} released, {} unchanged",
                outcome.message(),
                counts.created,
                counts.updated,
                counts.deleted,
                counts.released,
                counts.unchanged
            );
            let type_ = if new_reason == reason::SYNCED {
                EventType::Normal
            } else {
                EventType::Warning
            };
            (type_, new_reason, note)
        }
        Outcome::WriteFailed { .. } => {
            let old_message = old
                .and_then(|s| s.last_error.as_ref())
                .map(|e| e.message.as_str());
            let message = outcome.message();
            if !changed && old_message == Some(message.as_str()) {
                return None;
            }
            (EventType::Warning, new_reason, message)
        }
        Outcome::Suspended => {
            if !changed {
                return None;
            }
            (EventType::Normal, reason::SUSPENDED, outcome.message())
        }
        Outcome::ListingFailed(_) => {
            let code = outcome.error().map(|e| e.code);
            if !changed && old_code == code.as_deref() {
                return None;
            }
            let note = format!("{}: {}", code.unwrap_or_default(), outcome.message());
            (EventType::Warning, SYNC_FAILED, note)
        }
        Outcome::InvalidSpec(_) | Outcome::CredentialsError(_) => {
            let old_message = old
                .and_then(|s| s.last_error.as_ref())
                .map(|e| e.message.as_str());
            let message = outcome.error().map(|e| e.message);
            if !changed && old_message == message.as_deref() {
                return None;
            }
            (EventType::Warning, new_reason, outcome.message())
        }
    };
    Some(Event {
        type_,
        reason: event_reason.to_string(),
        note: Some(truncate(note, 1024)),
        action: "Sync".to_string(),
        secondary: None,
    })
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Publishes `event` about `query`; a failure is logged, never returned.
pub async fn publish(recorder: &Recorder, query: &ImagePipelineQuery, event: Event) {
    // The recorder folds Events with the same type, action, reason and reference into one
    // series that keeps the first note, so a recovery would show an earlier sync's counts and a
    // new failure an earlier code. `event_for` already publishes once per outcome change; the
    // query's resourceVersion in the reference (compared by the recorder, and different after
    // every status write) makes each of those an Event of its own.
    let mut reference = query.object_ref(&());
    reference.resource_version = query.meta().resource_version.clone();
    if let Err(e) = recorder.publish(&event, &reference).await {
        warn!(error = %e, reason = %event.reason, "could not publish an Event");
    }
}
