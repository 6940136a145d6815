//! Events on a query, as `kubectl events` and `kubectl describe` show them: one per change of
//! outcome, not one per retry.

use serde_json::{Value, json};

use crate::support::*;

/// `(type, reason, how many times)` of each Event, oldest first.
fn outcomes(events: &[Value]) -> Vec<(String, String, u64)> {
    events
        .iter()
        .map(|e| {
            let series = e["series"]["count"].as_u64();
            let count = series.or(e["count"].as_u64()).unwrap_or(1);
            (
                e["type"].as_str().unwrap_or_default().to_string(),
                e["reason"].as_str().unwrap_or_default().to_string(),
                count,
            )
        })
        .collect()
}

#[test]
fn a_failed_then_recovered_sync_shows_one_event_per_outcome_change() {
    let items = data_set();
    let Some(env) = Env::start("events", &items, &[]) else {
        return;
    };
    env.secret();
    env.apply_ok(&hangzhou_query("hz"));
    env.wait_ready("hz", "Synced");

    // Every call fails from now on: the refresh fails, and so does every retry after it.
    env.sim.set_faults(&json!({"failEvery": 1}));
    env.request_refresh("hz");
    let failed = wait_for("the failure to be reported", || {
        let q = env.query("hz");
        (ready_reason(&q).as_deref() == Some("ApiError")).then_some(q)
    });
    let mut seen = vec![failed["status"]["lastSyncTime"].clone()];
    wait_for("two more failed retries", || {
        let q = env.query("hz");
        assert_eq!(ready_reason(&q).as_deref(), Some("ApiError"), "{q}");
        let at = q["status"]["lastSyncTime"].clone();
        if !seen.contains(&at) {
            seen.push(at);
        }
        (seen.len() >= 3).then_some(())
    });

    // Recovery.
    env.sim.set_faults(&json!({}));
    env.refresh("hz");
    env.wait_ready("hz", "Synced");

    let events = env.events_for("imagepipelinequery/hz");
    assert_eq!(
        outcomes(&events),
        [
            ("Normal".to_string(), "Synced".to_string(), 1),
            ("Warning".to_string(), "SyncFailed".to_string(), 1),
            ("Normal".to_string(), "Synced".to_string(), 1),
        ],
        "one Event per outcome change: {events:#?}"
    );
    let failure = events[1]["message"].as_str().unwrap_or_default();
    assert!(
        failure.contains("InternalError"),
        "the SyncFailed Event names the API code: {failure}"
    );

    let described = env.kubectl_ok(&["describe", "imagepipelinequery", "hz"]);
    let section = described
        .split_once("\nEvents:")
        .map(|(_, events)| events)
        .unwrap_or_else(|| panic!("kubectl describe shows no Events:\n{described}"));
    // Rows read `Type  Reason  Age  From  Message`.
    let reasons: Vec<&str> = section
        .lines()
        .filter_map(|row| row.split_whitespace().nth(1))
        .filter(|reason| *reason != "Reason" && *reason != "------")
        .collect();
    assert_eq!(reasons, ["Synced", "SyncFailed", "Synced"], "{section}");
}
