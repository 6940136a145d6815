//! The status and Event steps, without an API server: what a sync, a failed listing, an invalid
//! spec or a suspension leave in status, and which of them publish an Event.

use imagepipeline_operator::controller::events::{SYNC_FAILED, event_for};
use imagepipeline_operator::controller::plan::PlanCounts;
use imagepipeline_operator::controller::status::{Outcome, Skipped, StatusInput, next_status};
use imagepipeline_operator::crd::ImagePipelineQueryStatus;
use imagepipeline_operator::ecs::{ApiError, EcsError, ListingError};
use jiff::Timestamp;
use kube::runtime::events::EventType;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn synced(created: u32) -> Outcome {
    Outcome::Synced {
        pages: 2,
        matched: 7,
        counts: PlanCounts {
            created,
            unchanged: 7 - created,
            ..PlanCounts::default()
        },
        skipped: Skipped::default(),
    }
}

fn throttled() -> Outcome {
    Outcome::ListingFailed(ListingError {
        page: 3,
        calls: 9,
        error: EcsError::Api(ApiError {
            status: 400,
            code: "Throttling.User".into(),
            message: "Request was denied due to user flow control.".into(),
            request_id: Some("RID-42".into()),
            host_id: None,
            recommend: None,
        }),
    })
}

fn after(
    old: Option<&ImagePipelineQueryStatus>,
    outcome: &Outcome,
    now: &str,
) -> ImagePipelineQueryStatus {
    next_status(
        old,
        &StatusInput {
            outcome,
            generation: Some(4),
            now: t(now),
            next_sync_time: Some(t("2026-03-01T12:10:00Z")),
            credentials: Some("secret/team-ak".into()),
            requested_at: Some("2026-03-01T11:59:00Z"),
            shard: "main",
        },
    )
}

#[test]
fn a_sync_records_counts_times_and_a_true_ready_condition() {
    let s = after(None, &synced(3), "2026-03-01T12:00:00Z");
    let ready = &s.conditions[0];
    assert_eq!(
        (
            ready.type_.as_str(),
            ready.status.as_str(),
            ready.reason.as_str()
        ),
        ("Ready", "True", "Synced")
    );
    assert_eq!(ready.observed_generation, Some(4));
    assert_eq!(s.observed_generation, Some(4));
    assert_eq!(s.matched_count, Some(7));
    let result = s.last_sync_result.as_ref().unwrap();
    assert_eq!((result.pages, result.created, result.unchanged), (2, 3, 4));
    assert_eq!(s.last_sync_time, s.last_successful_sync_time);
    assert_eq!(s.credentials.as_deref(), Some("secret/team-ak"));
    assert_eq!(
        s.last_handled_requested_at.as_deref(),
        Some("2026-03-01T11:59:00Z")
    );
    assert!(s.last_error.is_none());
}

#[test]
fn a_failed_listing_reports_code_request_id_and_page_and_keeps_the_last_success() {
    let ok = after(None, &synced(0), "2026-03-01T12:00:00Z");
    let failed = after(Some(&ok), &throttled(), "2026-03-01T12:10:00Z");
    let ready = &failed.conditions[0];
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Throttled")
    );
    assert!(
        ready
            .message
            .contains("nothing already mirrored was changed"),
        "{}",
        ready.message
    );
    let err = failed.last_error.as_ref().unwrap();
    assert_eq!(err.code, "Throttling.User");
    assert_eq!(err.request_id.as_deref(), Some("RID-42"));
    assert_eq!(err.page, Some(3));
    assert_eq!(
        failed.matched_count,
        Some(7),
        "what is mirrored is unchanged"
    );
    assert_eq!(
        failed.last_successful_sync_time,
        ok.last_successful_sync_time
    );
    assert_ne!(failed.last_sync_time, ok.last_sync_time);
    assert_eq!(failed.last_sync_result, ok.last_sync_result);
}

#[test]
fn the_transition_time_moves_only_when_ready_changes() {
    let first = after(None, &synced(1), "2026-03-01T12:00:00Z");
    let second = after(Some(&first), &synced(0), "2026-03-01T12:10:00Z");
    assert_eq!(
        first.conditions[0].last_transition_time,
        second.conditions[0].last_transition_time
    );
    let failed = after(Some(&second), &throttled(), "2026-03-01T12:20:00Z");
    assert_eq!(
        failed.conditions[0].last_transition_time.0,
        t("2026-03-01T12:20:00Z")
    );
}

#[test]
fn invalid_and_suspended_queries_get_a_stable_status_without_sync_times() {
    let invalid =
        Outcome::InvalidSpec("refreshInterval \"5s\" is shorter than the minimum of 30s".into());
    let input = |outcome| StatusInput {
        outcome,
        generation: Some(2),
        now: t("2026-03-01T12:00:00Z"),
        next_sync_time: None,
        credentials: None,
        requested_at: None,
        shard: "shard1",
    };
    let s1 = next_status(None, &input(&invalid));
    assert_eq!(s1.conditions[0].reason, "InvalidSpec");
    assert_eq!(s1.last_error.as_ref().unwrap().code, "InvalidSpec");
    assert!(s1.last_sync_time.is_none() && s1.next_sync_time.is_none());
    let mut later = input(&invalid);
    later.now = t("2026-03-01T13:00:00Z");
    assert_eq!(
        next_status(Some(&s1), &later),
        s1,
        "no status write when nothing changed"
    );
    let s2 = next_status(None, &input(&Outcome::Suspended));
    assert_eq!(s2.conditions[0].reason, "Suspended");
}

#[test]
fn events_are_published_once_per_change_of_outcome() {
    let ok = after(None, &synced(3), "2026-03-01T12:00:00Z");
    let created = event_for(None, &synced(3)).expect("first sync is news");
    assert_eq!(created.reason, "Synced");
    assert!(created.note.as_deref().unwrap().contains("3 created"));
    assert!(
        event_for(Some(&ok), &synced(0)).is_none(),
        "a steady refresh is not news"
    );
    assert!(
        event_for(Some(&ok), &synced(1)).is_some(),
        "a refresh that wrote is"
    );
    let failed_event = event_for(Some(&ok), &throttled()).unwrap();
    assert_eq!(failed_event.reason, SYNC_FAILED);
    assert_eq!(failed_event.type_, EventType::Warning);
    assert!(
        failed_event
            .note
            .as_deref()
            .unwrap()
            .starts_with("Throttling.User")
    );
    let failed = after(Some(&ok), &throttled(), "2026-03-01T12:10:00Z");
    assert!(
        event_for(Some(&failed), &throttled()).is_none(),
        "the same failure again is not news"
    );
    assert!(
        event_for(Some(&failed), &synced(0)).is_some(),
        "recovery is"
    );
}
