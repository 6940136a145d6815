//! `/metrics` right after start, on the real API server: every family the operator defines is
//! there with its `# HELP` and `# TYPE` before anything was synced, and the series whose labels
//! are known in advance are there at 0, so that alerts and dashboards never see a missing
//! series (issue 19).

use imagepipeline_operator::metrics::Metrics;

use crate::support::*;

#[test]
fn metrics_right_after_start_show_every_family_and_the_known_series_at_zero() {
    let Some(mut env) = Env::without_operator("metrics-start", &[], &[]) else {
        return;
    };
    env.start_operator();
    let operator = env.operator.as_ref().expect("the operator started");
    // The first scrape that answers, with no query in the namespace: nothing has been synced,
    // retried or throttled yet.
    let (code, text) = http(&operator.admin_url(), "GET", "/metrics", "");
    assert_eq!(code, 200, "GET /metrics: {text}");
    let families = Metrics::new().family_names().to_vec();
    assert!(families.len() >= 20, "{families:?}");
    for family in &families {
        for line in [format!("# HELP {family} "), format!("# TYPE {family} ")] {
            assert!(
                text.lines().any(|l| l.starts_with(&line)),
                "no `{line}` right after start:\n{text}"
            );
        }
    }
    // Every series carries the instance's `shard` label (`main` here) besides its own; counters
    // never go below 0, so a sum of 0 over the series found means each one is there at 0.
    let shard = r#"shard="main""#;
    for (metric, labels) in [
        ("imagepipeline_syncs_total", &[r#"result="Synced""#][..]),
        ("imagepipeline_syncs_total", &[r#"result="Throttled""#]),
        (
            "imagepipeline_objects_written_total",
            &[r#"operation="created""#],
        ),
        ("imagepipeline_listing_pages_total", &[r#"path="decoded""#]),
        ("imagepipeline_listing_pages_total", &[r#"path="reused""#]),
        (
            "imagepipeline_ecs_calls_total",
            &[r#"action="DescribeImagePipelines""#, r#"code="Success""#],
        ),
    ] {
        let labels = [labels, &[shard]].concat();
        assert_eq!(
            labelled_sum(&text, metric, &labels),
            Some(0.0),
            "{metric}{{{}}} right after start:\n{text}",
            labels.join(",")
        );
    }
    for family in ["imagepipeline_ecs_retries", "imagepipeline_ecs_throttled"] {
        assert!(
            families.iter().any(|f| f.starts_with(family)),
            "{family} is not a family of the registry: {families:?}"
        );
    }
    env.stop_operator();
}
