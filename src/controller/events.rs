//! Kubernetes Events: one per change of outcome (`Synced` with counts, `SyncFailed` with the API
//! code, ...), not one per refresh. Publishing is best effort: a failure is logged and never
//! fails the reconcile.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, Resource};
use tracing::warn;

pub use kube::runtime::events::{Event, EventType, Reporter};

use super::status::{Outcome, READY, reason};
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
            (EventType::Normal, reason::SYNCED, note)
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

/// Publishes Events (`events.k8s.io/v1`), each as a new object.
///
/// Why not kube's own `Recorder`: it folds every Event with the same reason into one series and
/// keeps the first Event's note, so a recovery after a failure would show as the first sync's
/// `Synced` "x2" with stale counts. The operator publishes only when the outcome changes, so
/// there is nothing to fold: each Event stands on its own, with its own note.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    reporter: Reporter,
}

impl Recorder {
    /// Publishes as `reporter`.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self { client, reporter }
    }

    /// Creates one Event about the object `reference` points at.
    pub async fn publish(
        &self,
        event: &Event,
        reference: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let namespace = reference.namespace.as_deref().unwrap_or("default");
        let api: Api<KubeEvent> = Api::namespaced(self.client.clone(), namespace);
        api.create(&PostParams::default(), &self.build(event, reference))
            .await
            .map(|_| ())
    }

    fn build(&self, event: &Event, reference: &ObjectReference) -> KubeEvent {
        let now = jiff::Timestamp::now();
        // Unique like client-go's names: the object, then the time and a random part, in hex.
        let name = format!(
            "{}.{:x}{:08x}",
            reference.name.as_deref().unwrap_or("object"),
            now.as_nanosecond(),
            rand::random::<u32>()
        );
        let controller = self.reporter.controller.clone();
        KubeEvent {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: reference.namespace.clone(),
                ..ObjectMeta::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            type_: Some(match event.type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            event_time: Some(MicroTime(now)),
            regarding: Some(reference.clone()),
            related: None,
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| controller.clone()),
            ),
            reporting_controller: Some(controller),
            ..KubeEvent::default()
        }
    }
}

/// Publishes `event` about `query`; a failure is logged, never returned.
pub async fn publish(recorder: &Recorder, query: &ImagePipelineQuery, event: Event) {
    let reference = query.object_ref(&());
    if let Err(e) = recorder.publish(&event, &reference).await {
        warn!(error = %e, reason = %event.reason, "could not publish an Event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder() -> Recorder {
        let (service, _handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        Recorder::new(
            Client::new(service, "default"),
            Reporter {
                controller: "imagepipeline-operator".into(),
                instance: Some("pod-a".into()),
            },
        )
    }

    fn event(type_: EventType, reason: &str, note: &str) -> Event {
        Event {
            type_,
            reason: reason.into(),
            note: Some(note.into()),
            action: "Sync".into(),
            secondary: None,
        }
    }

    #[tokio::test]
    async fn every_event_is_its_own_object_with_its_own_note() {
        let recorder = recorder();
        let reference = ObjectReference {
            kind: Some("ImagePipelineQuery".into()),
            name: Some("hz".into()),
            namespace: Some("team".into()),
            ..ObjectReference::default()
        };
        let first = recorder.build(&event(EventType::Normal, "Synced", "6 created"), &reference);
        let again = recorder.build(
            &event(EventType::Normal, "Synced", "6 unchanged"),
            &reference,
        );
        assert_ne!(first.metadata.name, again.metadata.name);
        assert!(first.metadata.name.as_deref().unwrap().starts_with("hz."));
        assert_eq!(first.metadata.namespace.as_deref(), Some("team"));
        assert_eq!(first.note.as_deref(), Some("6 created"));
        assert_eq!(again.note.as_deref(), Some("6 unchanged"));
        assert!(again.series.is_none(), "never folded into a series");
        assert_eq!(again.type_.as_deref(), Some("Normal"));
        assert_eq!(again.reason.as_deref(), Some("Synced"));
        assert_eq!(again.action.as_deref(), Some("Sync"));
        assert_eq!(again.regarding.as_ref(), Some(&reference));
        assert_eq!(
            again.reporting_controller.as_deref(),
            Some("imagepipeline-operator")
        );
        assert_eq!(again.reporting_instance.as_deref(), Some("pod-a"));
        assert!(again.event_time.is_some());
        let warning = recorder.build(&event(EventType::Warning, "SyncFailed", "x"), &reference);
        assert_eq!(warning.type_.as_deref(), Some("Warning"));
    }
}
