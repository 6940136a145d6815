//! Mirroring on the real API server: the matching set, zero writes at steady state, pruning,
//! failures that prune nothing, shared objects, suspend, the refresh annotation, schema
//! validation at `kubectl apply`, and an operator killed in the middle of a sync.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

#[test]
fn a_query_mirrors_exactly_the_matching_set_and_a_quiet_refresh_writes_nothing() {
    let items = data_set();
    let Some(env) = Env::start("mirror", &items, &[]) else {
        return;
    };
    env.secret();
    env.apply_ok(&hangzhou_query("hz"));
    let q = env.wait_ready("hz", "Synced");
    assert_eq!(q["status"]["matchedCount"], 6);
    assert_eq!(q["status"]["credentials"], "secret/ak");
    assert_eq!(env.names(), hangzhou_ids(&items));

    let table = env.kubectl_ok(&["get", "imagepipelines"]);
    let header = table.lines().next().unwrap_or_default();
    for column in ["ID", "NAME", "BASE IMAGE", "INSTANCE TYPE", "REGION", "AGE"] {
        assert!(header.contains(column), "missing column {column}: {header}");
    }
    let table = env.kubectl_ok(&["get", "ipq"]);
    let header = table.lines().next().unwrap_or_default();
    for column in ["READY", "MATCHED", "LAST SYNC", "INTERVAL", "AGE"] {
        assert!(header.contains(column), "missing column {column}: {header}");
    }

    let pages = |path: &str| {
        let operator = env.operator.as_ref().expect("the operator runs");
        let label = format!(r#"path="{path}""#);
        operator
            .metric_with("imagepipeline_listing_pages_total", &label)
            .expect("the series exists")
    };
    let (reused, decoded) = (pages("reused"), pages("decoded"));
    assert!(decoded >= 1.0, "the first sync decoded its listing");
    let before = env.pipelines();
    let refreshed = env.refresh("hz");
    assert_eq!(refreshed["status"]["lastSyncResult"]["unchanged"], 6);
    assert_eq!(
        env.pipelines(),
        before,
        "a refresh without changes writes nothing"
    );
    assert!(
        pages("reused") > reused,
        "the refresh took its pages as they were"
    );
    assert_eq!(pages("decoded"), decoded, "and decoded none");

    // Someone edits a mirrored object: the drift check finds it, and the sync it starts
    // decodes that page again and repairs the object.
    env.merge_patch(
        "imagepipeline",
        "ip-hz001",
        r#"{"spec":{"name":"edited by hand"}}"#,
    );
    wait_for("the edit to be repaired", || {
        let spec = &env.get_json(&["imagepipeline", "ip-hz001"])["spec"];
        (spec["name"] != "edited by hand").then_some(())
    });
    assert!(
        pages("decoded") > decoded,
        "the edited object's page was decoded"
    );
}

#[test]
fn a_pipeline_removed_from_the_cloud_is_pruned_at_the_next_timed_refresh() {
    let mut items = data_set();
    let Some(env) = Env::start("prune", &items, &[]) else {
        return;
    };
    env.secret();
    let mut q = hangzhou_query("hz");
    q["spec"]["refreshInterval"] = json!("30s");
    env.apply_ok(&q);
    env.wait_ready("hz", "Synced");
    items.retain(|i| i["ImagePipelineId"] != "ip-hz003");
    env.set_items(&items);
    wait_for("ip-hz003 to be pruned", || {
        (!env.names().contains(&"ip-hz003".to_string())).then_some(())
    });
    assert_eq!(env.names(), hangzhou_ids(&items));
}

#[test]
fn a_simulator_failing_every_page_prunes_nothing() {
    let items = data_set();
    let Some(mut env) = Env::start("failing", &items, &[]) else {
        return;
    };
    env.secret();
    env.apply_ok(&hangzhou_query("hz"));
    env.wait_ready("hz", "Synced");
    let before = env.pipelines();
    // The same data set behind a simulator that fails every call; and one pipeline gone.
    let fewer: Vec<Value> = items
        .iter()
        .filter(|i| i["ImagePipelineId"] != "ip-hz001")
        .cloned()
        .collect();
    env.restart_simulator(&fewer, &["--fail-every", "1"]);
    env.request_refresh("hz");
    let q = wait_for("the failure to be reported", || {
        let q = env.query("hz");
        matches!(ready_reason(&q).as_deref(), Some("ApiError" | "Throttled")).then_some(q)
    });
    assert!(q["status"]["lastError"]["code"].is_string());
    assert_eq!(
        env.pipelines(),
        before,
        "nothing pruned or rewritten after a failed listing"
    );
}

/// The sync streams page by page: a listing that fails after its first page has created that
/// page's new pipelines, but changed and removed nothing already mirrored.
#[test]
fn a_listing_failing_after_its_first_page_creates_its_new_pipelines_and_changes_nothing_mirrored() {
    let items = data_set();
    let Some(mut env) = Env::start("streamfail", &items, &[]) else {
        return;
    };
    env.secret();
    let mut query = hangzhou_query("hz");
    query["spec"]["pageSize"] = json!(2);
    env.apply_ok(&query);
    env.wait_ready("hz", "Synced");
    let before = env.pipelines();
    // The cloud now: every pipeline renamed, one gone, four new; and every NextToken refused,
    // so no listing gets past its first page.
    // The new ones come first: the simulator lists in its own (insertion) order.
    let mut now: Vec<Value> = (101..=104)
        .map(|i| pipeline(&format!("ip-hz{i:03}"), "cn-hangzhou"))
        .collect();
    now.extend(
        items
            .iter()
            .filter(|i| i["ImagePipelineId"] != "ip-hz001")
            .cloned()
            .map(|mut i| {
                i["Name"] = json!("renamed");
                i
            }),
    );
    env.restart_simulator(&now, &["--invalid-token-every", "1"]);
    env.request_refresh("hz");
    let ready = wait_for("the failure to be reported", || {
        let ready = ready_condition(&env.query("hz")).cloned()?;
        (ready["status"] == "False").then_some(ready)
    });
    let message = ready["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("nothing already mirrored was changed") && message.contains("page 2"),
        "{message}"
    );
    let after = env.pipelines();
    for (name, state) in &before {
        assert_eq!(
            after.get(name),
            Some(state),
            "{name} was changed or removed by a failed listing"
        );
    }
    let created: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert_eq!(
        created,
        ["ip-hz101", "ip-hz102"],
        "the first page's new pipelines are created, nothing else"
    );
}

#[test]
fn overlapping_queries_share_objects_and_deleting_one_keeps_the_shared_ones() {
    let items = data_set();
    let Some(env) = Env::start("shared", &items, &[]) else {
        return;
    };
    env.secret();
    let ids = |list: &[&str]| {
        query_manifest(
            "x",
            json!({"regionId": "cn-hangzhou", "imagePipelineIds": list, "credentials": {"secretRef": {"name": "ak"}}}),
        )
    };
    let mut first = ids(&["ip-hz001", "ip-hz002"]);
    first["metadata"]["name"] = json!("first");
    let mut second = ids(&["ip-hz002", "ip-hz003"]);
    second["metadata"]["name"] = json!("second");
    env.apply_ok(&first);
    env.apply_ok(&second);
    env.wait_ready("first", "Synced");
    env.wait_ready("second", "Synced");
    let shared = wait_for("ip-hz002 to have two owners", || {
        let p = env.pipelines();
        (p.get("ip-hz002").map(|(_, o)| o.len()) == Some(2)).then_some(p)
    });
    assert_eq!(
        shared.keys().cloned().collect::<Vec<_>>(),
        ["ip-hz001", "ip-hz002", "ip-hz003"]
    );

    env.kubectl_ok(&["delete", "imagepipelinequery", "second", "--wait=true"]);
    wait_for("ip-hz003 to be garbage-collected", || {
        (!env.names().contains(&"ip-hz003".to_string())).then_some(())
    });
    let left = env.pipelines();
    assert_eq!(
        left.keys().cloned().collect::<Vec<_>>(),
        ["ip-hz001", "ip-hz002"]
    );
    assert_eq!(
        left["ip-hz002"].1.len(),
        1,
        "only the deleted query's reference went"
    );
}

#[test]
fn a_suspended_query_keeps_its_objects_and_stops_listing() {
    let mut items = data_set();
    let Some(env) = Env::start("suspend", &items, &[]) else {
        return;
    };
    env.secret();
    env.apply_ok(&hangzhou_query("hz"));
    env.wait_ready("hz", "Synced");
    let mut q = hangzhou_query("hz");
    q["spec"]["suspend"] = json!(true);
    env.apply_ok(&q);
    env.wait_ready("hz", "Suspended");
    items.retain(|i| i["RegionId"] != "cn-hangzhou");
    env.set_items(&items);
    let calls = env.sim_calls();
    env.kubectl_ok(&[
        "annotate",
        "--overwrite",
        "imagepipelinequery",
        "hz",
        "ecs.mirror.io/requested-at=while-suspended",
    ]);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(env.names().len(), 6, "suspension keeps what is mirrored");
    assert_eq!(env.sim_calls(), calls, "no listing while suspended");
}

#[test]
fn the_refresh_annotation_syncs_at_once() {
    let mut items = data_set();
    let Some(env) = Env::start("annotate", &items, &[]) else {
        return;
    };
    env.secret();
    env.apply_ok(&hangzhou_query("hz"));
    env.wait_ready("hz", "Synced");
    items.push(pipeline("ip-hz999", "cn-hangzhou"));
    env.set_items(&items);
    let q = env.refresh("hz");
    assert_eq!(q["status"]["matchedCount"], 7);
    assert!(env.names().contains(&"ip-hz999".to_string()));
}

#[test]
fn invalid_specs_are_refused_at_apply_with_a_clear_message() {
    let Some(env) = Env::start("invalid", &[], &[]) else {
        return;
    };
    let cases = [
        (
            json!({"regionId": "Hangzhou"}),
            "regionId must be a region ID",
        ),
        (
            json!({"regionId": "cn-hangzhou", "pageSize": 0}),
            "pageSize",
        ),
        (
            json!({"regionId": "cn-hangzhou", "pageSize": 501}),
            "pageSize",
        ),
        (
            json!({"regionId": "cn-hangzhou", "refreshInterval": "5s"}),
            "at least 30s",
        ),
        (
            json!({"regionId": "cn-hangzhou", "refreshInterval": "ten"}),
            "refreshInterval",
        ),
        (
            json!({"regionId": "cn-hangzhou", "imagePipelineIds": ["m-123"]}),
            "ip- followed by",
        ),
        (
            json!({"regionId": "cn-hangzhou", "imagePipelineIds": ["ip-a", "ip-a"]}),
            "must not repeat",
        ),
        (
            json!({"regionId": "cn-hangzhou", "tags": [{"key": "team"}, {"key": "team", "value": "x"}]}),
            "must not repeat a key",
        ),
        (
            json!({"regionId": "cn-hangzhou", "tags": [{"key": ""}]}),
            "tags",
        ),
        (
            json!({"regionId": "cn-hangzhou", "credentials": {"secretRef": {"name": "Bad_Name"}}}),
            "Secret name",
        ),
        (
            json!({"regionId": "cn-hangzhou", "template": {"metadata": {"labels": {"bad key": "x"}}}}),
            "label keys",
        ),
        (
            json!({"regionId": "cn-hangzhou", "template": {"metadata": {"labels": {"team": "-x"}}}}),
            "label values",
        ),
    ];
    for (spec, expected) in cases {
        let out = env.apply(&query_manifest("bad", spec.clone()));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted: {spec}");
        assert!(
            stderr.contains(expected),
            "for {spec}: expected {expected:?} in {stderr}"
        );
    }
    let many: Vec<String> = (0..21).map(|i| format!("ip-x{i}")).collect();
    let out = env.apply(&query_manifest(
        "bad",
        json!({"regionId": "cn-hangzhou", "imagePipelineIds": many}),
    ));
    assert!(!out.status.success());
}

/// Kills the operator (SIGKILL) while it is writing the objects of a large first sync, starts it
/// again, and checks it converges: every pipeline mirrored exactly once, owned by the query, and
/// nothing else. The restarted operator takes the objects already there from a streaming list
/// (the API server serves one), not page by page.
#[test]
fn an_operator_killed_in_the_middle_of_a_sync_converges_after_restart() {
    let total = 400;
    let items: Vec<Value> = (0..total)
        .map(|i| pipeline(&format!("ip-kill{i:04}"), "cn-hangzhou"))
        .collect();
    let Some(mut env) = Env::start("kill", &items, &[]) else {
        return;
    };
    env.secret();
    env.apply_ok(&hangzhou_query("hz"));
    // Wait until the writes have started but not finished, then kill the process outright.
    let partial = wait_for("the first objects to be written", || {
        let n = env.names().len();
        (n > 0).then_some(n)
    });
    env.stop_operator();
    let after_kill = env.names().len();
    eprintln!("killed the operator with {partial}..{after_kill} of {total} objects written");

    let streamed_before = imagepipeline_watch_lists(&env);
    env.start_operator();
    let q = env.wait_ready("hz", "Synced");
    assert_eq!(q["status"]["matchedCount"], total);
    assert!(
        imagepipeline_watch_lists(&env) > streamed_before,
        "the restarted operator's initial list of ImagePipelines was a streaming list"
    );
    let query_uid = q["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mirrored = env.pipelines();
    assert_eq!(mirrored.len(), total, "nothing lost, nothing extra");
    for (name, (_, owners)) in &mirrored {
        assert_eq!(
            owners,
            &vec![query_uid.clone()],
            "{name} is owned by the query once"
        );
    }
    assert_eq!(env.names(), hangzhou_ids(&items));
}

/// How many streaming lists (watches with `sendInitialEvents`) of namespaced ImagePipelines the
/// API server has completed, from its own metrics.
fn imagepipeline_watch_lists(env: &Env) -> u64 {
    env.apiserver_metric(
        "apiserver_watch_list_duration_seconds_count",
        &[r#"resource="imagepipelines""#, r#"scope="namespace""#],
    )
}
