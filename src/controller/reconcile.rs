//! The reconcile of one ImagePipelineQuery, as named steps: validate, resolve credentials,
//! decide whether a sync is due, sync (list, plan, apply), then status and Events.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use tokio::time::Instant;
use tracing::{debug, info, instrument, warn};

use crate::controller::context::Context;
use crate::controller::error::ControllerError;
use crate::controller::inputs::credentials::ResolveError;
use crate::controller::inputs::schedule::{
    DueInput, MIN_TRIGGERED_SPACING, REQUESTED_AT_ANNOTATION, TRANSIENT_BASE, backoff, due,
    listing_not_before, next_sync_time, until,
};
use crate::controller::inputs::validate::validate;
use crate::controller::report::events::{event_for, publish};
use crate::controller::report::status::{Outcome, StatusInput, next_status};
use crate::controller::sync::{attempt, drifted};
use crate::crd::ImagePipelineQuery;

/// How often a replica that is not the leader looks again.
pub const FOLLOWER_RECHECK: Duration = Duration::from_secs(15);

/// How soon a query whose deletions wait for other queries' listings looks again.
pub const DEFERRED_RECHECK: Duration = Duration::from_secs(15);

/// Reconciles one query. Listing failures, invalid specs and credential problems are reported in
/// status and Events and end in `Ok` with the right requeue; only Kubernetes API failures are
/// errors (see [`error_policy`]).
#[instrument(skip_all, fields(namespace = query.namespace().unwrap_or_default(), name = %query.name_any()))]
pub async fn reconcile(
    query: Arc<ImagePipelineQuery>,
    ctx: Arc<Context>,
) -> Result<Action, ControllerError> {
    let uid = query
        .uid()
        .ok_or(ControllerError::MissingObjectKey("uid"))?;
    let namespace = query
        .namespace()
        .ok_or(ControllerError::MissingObjectKey("namespace"))?;
    if query.metadata.deletion_timestamp.is_some() {
        ctx.forget(&uid);
        return Ok(Action::await_change());
    }
    if !ctx.writer.is_leading() {
        return Ok(Action::requeue(FOLLOWER_RECHECK));
    }
    let started = Instant::now();
    let now = Timestamp::now();
    let requested_at = query.annotations().get(REQUESTED_AT_ANNOTATION).cloned();

    // Suspended or invalid: report, and wait for a change of the spec.
    let valid = if query.spec.suspend {
        Err(Outcome::Suspended)
    } else {
        validate(&query.spec).map_err(|e| Outcome::InvalidSpec(e.to_string()))
    };
    let valid = match valid {
        Ok(v) => v,
        Err(outcome) => {
            let requested = requested_at.as_deref();
            finish(&ctx, &query, outcome, now, None, None, requested, started).await?;
            return Ok(Action::await_change());
        }
    };
    ctx.observer
        .refresh_interval(&namespace, &query.name_any(), valid.refresh_interval);

    let credentials = match ctx
        .credentials
        .resolve(&ctx.client, &namespace, valid.secret_name.as_deref())
        .await
    {
        Err(ResolveError::Kube(e)) => return Err(ControllerError::Credentials(e)),
        other => other,
    };
    let fingerprint = match &credentials {
        Ok(r) => r.identity.clone(),
        Err(e) => format!("error: {e}"),
    };

    // Only the mirrored cache's complete picture may be planned from.
    // (The sender only goes away when the controller stops.)
    let _ = ctx.pipelines_ready.clone().wait_for(|ready| *ready).await;

    let memory = ctx.remembered(&uid);
    let status = query.status.as_ref();
    let drifted = || -> Result<bool, ControllerError> {
        match memory.as_ref() {
            Some(m) if m.failures == 0 => match &m.listing {
                Some(listing) => drifted(&ctx, &query, &valid, listing, &now.to_string()),
                None => Ok(false),
            },
            _ => Ok(false),
        }
    };
    let mut input = DueInput {
        generation: query.metadata.generation,
        observed_generation: status.and_then(|s| s.observed_generation),
        requested_at: requested_at.as_deref(),
        last_handled_requested_at: status.and_then(|s| s.last_handled_requested_at.as_deref()),
        next_sync_time: status.and_then(|s| s.next_sync_time.as_ref()).map(|t| t.0),
        remembered: memory.is_some(),
        credentials_changed: memory
            .as_ref()
            .is_some_and(|m| m.credentials.as_deref() != Some(fingerprint.as_str())),
        // Checking drift costs a plan: only when nothing else already makes the query due.
        drifted: false,
        retry: memory.as_ref().is_some_and(|m| m.errors > 0),
    };
    let mut reason = due(&input, now);
    if reason.is_none() {
        input.drifted = drifted()?;
        reason = due(&input, now);
    }
    let Some(reason) = reason else {
        debug!("not due");
        return Ok(match input.next_sync_time {
            Some(next) => Action::requeue(until(now, next).max(Duration::from_secs(1))),
            None => Action::await_change(),
        });
    };
    if reason.is_watch_triggered() {
        let since = memory
            .as_ref()
            .and_then(|m| m.last_attempt)
            .map(|t| t.elapsed());
        if let Some(since) = since.filter(|s| *s < MIN_TRIGGERED_SPACING) {
            return Ok(Action::requeue(MIN_TRIGGERED_SPACING - since));
        }
    }
    info!(reason = reason.as_str(), "syncing");
    ctx.remember(&uid, |m| {
        m.credentials = Some(fingerprint.clone());
        m.last_attempt = Some(started);
    });

    let created = query.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let not_before = listing_not_before(reason, now, created);
    let outcome = attempt(
        &ctx,
        &query,
        &valid,
        credentials.as_ref(),
        not_before,
        &now.to_string(),
    )
    .await?;
    let failures = match &outcome {
        Outcome::Synced { .. } => 0,
        _ => memory.map_or(0, |m| m.failures) + 1,
    };
    let deferred = match &outcome {
        Outcome::Synced { counts, .. } => counts.deferred > 0,
        _ => false,
    };
    ctx.remember(&uid, |m| {
        m.failures = failures;
        m.errors = 0;
    });
    let (next, wait) = {
        let mut rng = rand::rng();
        if failures == 0 {
            let next = next_sync_time(now, valid.refresh_interval, &mut rng);
            let wait = until(now, next);
            // Deletions wait for other queries' first listings: look again soon (the drift
            // check re-lists once they may go ahead).
            (
                next,
                if deferred {
                    wait.min(DEFERRED_RECHECK)
                } else {
                    wait
                },
            )
        } else {
            let wait = backoff(failures, outcome.is_permanent_failure(), &mut rng);
            (crate::controller::inputs::schedule::add(now, wait), wait)
        }
    };
    let display = credentials.as_ref().ok().map(|r| r.display());
    finish(
        &ctx,
        &query,
        outcome,
        now,
        Some(next),
        display,
        requested_at.as_deref(),
        started,
    )
    .await?;
    Ok(Action::requeue(wait))
}

/// The one log line of a sync: outcome, counts, pages, duration and, on failure, the API code,
/// failing page and RequestId (the span adds the query's namespace and name).
fn log_sync(outcome: &Outcome, elapsed: Duration) {
    let duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    match outcome {
        Outcome::Synced {
            pages,
            matched,
            counts,
            ..
        } => info!(
            reason = outcome.reason(),
            pages,
            matched,
            created = counts.created,
            updated = counts.updated,
            deleted = counts.deleted,
            released = counts.released,
            unchanged = counts.unchanged,
            duration_ms,
            "{}",
            outcome.message()
        ),
        Outcome::ListingFailed(e) => warn!(
            reason = outcome.reason(),
            code = %e.error.code(),
            page = e.page,
            calls = e.calls,
            request_id = e.error.request_id().unwrap_or(""),
            duration_ms,
            "{}",
            outcome.message()
        ),
        _ => warn!(
            reason = outcome.reason(),
            duration_ms,
            "{}",
            outcome.message()
        ),
    }
}

/// Step 5: status (patched only when it changed), an Event on a change of outcome, metrics.
#[allow(clippy::too_many_arguments)]
async fn finish(
    ctx: &Context,
    query: &ImagePipelineQuery,
    outcome: Outcome,
    now: Timestamp,
    next: Option<Timestamp>,
    credentials: Option<String>,
    requested_at: Option<&str>,
    started: Instant,
) -> Result<(), ControllerError> {
    let old = query.status.as_ref();
    let new = next_status(
        old,
        &StatusInput {
            outcome: &outcome,
            generation: query.metadata.generation,
            now,
            next_sync_time: next,
            credentials,
            requested_at,
            shard: &ctx.shard,
        },
    );
    if old != Some(&new) {
        ctx.writer.patch_status(query, &new).await?;
    }
    if let Some(event) = event_for(old, &outcome) {
        publish(&ctx.recorder, query, event).await;
    }
    let matched = match &outcome {
        Outcome::Synced { matched, .. } => Some(*matched),
        _ => None,
    };
    if outcome.is_attempt() {
        log_sync(&outcome, started.elapsed());
    }
    ctx.observer.sync_finished(
        &query.namespace().unwrap_or_default(),
        &query.name_any(),
        outcome.reason(),
        started.elapsed(),
        matched,
    );
    Ok(())
}

/// What to do after a reconcile error: retry with exponential backoff and jitter (a conflict
/// or an API hiccup is usually gone in seconds).
pub fn error_policy(
    query: Arc<ImagePipelineQuery>,
    error: &ControllerError,
    ctx: Arc<Context>,
) -> Action {
    ctx.observer.reconcile_failed(error.metric_label());
    if matches!(error, ControllerError::NotLeader) {
        return Action::requeue(FOLLOWER_RECHECK);
    }
    let uid = query.uid().unwrap_or_default();
    let mut errors = 1;
    ctx.remember(&uid, |m| {
        m.errors += 1;
        errors = m.errors;
    });
    let wait = backoff(errors, false, &mut rand::rng()).max(TRANSIENT_BASE / 5);
    warn!(error = %error, retry_in = ?wait, name = %query.name_any(), "reconcile failed");
    Action::requeue(wait)
}
