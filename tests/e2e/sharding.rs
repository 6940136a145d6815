//! Sharding on a real API server: a main instance and two shards (each with its own field
//! manager and Lease) serving the queries their label selectors select, objects shared by
//! queries of different shards, a query moved between shards, and a shard's leader lost.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const KEY: &str = "sharding.fluxcd.io/key";

/// An instance: the main one (`shard: None`) or a shard, with leader election on its Lease in
/// the test namespace.
fn instance(env: &Env, shard: Option<&str>) -> Operator {
    let selector = match shard {
        Some(s) => format!("{KEY}={s}"),
        None => format!("!{KEY}"),
    };
    let mut flags = vec![
        "--watch-label-selector".to_string(),
        selector,
        "--leader-election".to_string(),
        "--lease-namespace".to_string(),
        env.ns.clone(),
        "--lease-duration".to_string(),
        "4s".to_string(),
    ];
    if let Some(s) = shard {
        flags.extend(["--shard".to_string(), s.to_string()]);
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let identity = format!("{}-{}", env.ns, shard.unwrap_or("main"));
    env.spawn_operator(
        shard.unwrap_or("main"),
        &flags,
        &[("POD_NAME", identity.as_str())],
    )
}

fn labelled(mut query: Value, shard: Option<&str>) -> Value {
    if let Some(s) = shard {
        query["metadata"]["labels"] = json!({ KEY: s });
    }
    query
}

fn owner_names(env: &Env, name: &str) -> Vec<String> {
    let obj = env.get_json(&["imagepipeline", name]);
    let mut names: Vec<String> = obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

/// The shard labels (`shard.ecs.mirror.io/<shard>`) on `name`.
fn shard_labels(env: &Env, name: &str) -> Vec<String> {
    let obj = env.get_json(&["imagepipeline", name]);
    let mut keys: Vec<String> = obj["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("shard.ecs.mirror.io/").map(str::to_string))
        .collect();
    keys.sort();
    keys
}

/// The field managers that own the owner reference of `query_uid` on `name`.
fn ref_managers(env: &Env, name: &str, query_uid: &str) -> Vec<String> {
    let obj = env.get_json(&["imagepipeline", name, "--show-managed-fields"]);
    let key = format!("k:{{\"uid\":\"{query_uid}\"}}");
    let mut managers: Vec<String> = obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| {
            m["fieldsV1"]["f:metadata"]["f:ownerReferences"]
                .get(&key)
                .is_some()
        })
        .map(|m| m["manager"].as_str().unwrap_or_default().to_string())
        .collect();
    managers.sort();
    managers
}

fn lease_holder(env: &Env, lease: &str) -> Option<String> {
    let out = env.kubectl(&["get", "lease", lease, "-o", "json"]);
    if !out.status.success() {
        return None;
    }
    let lease: Value = serde_json::from_slice(&out.stdout).ok()?;
    lease["spec"]["holderIdentity"].as_str().map(str::to_string)
}

#[test]
fn shards_serve_their_queries_share_objects_quietly_and_adopt_a_moved_query_in_place() {
    let items = data_set();
    let Some(env) = Env::without_operator("shards", &items, &[]) else {
        return;
    };
    env.secret();
    let main = instance(&env, None);
    let shard1 = instance(&env, Some("shard1"));
    let mut shard2 = instance(&env, Some("shard2"));

    // qa (main) and qb (shard1) overlap on ip-hz002; qc (shard2) has its own.
    env.apply_ok(&labelled(ids_query("qa", &["ip-hz001", "ip-hz002"]), None));
    env.apply_ok(&labelled(
        ids_query("qb", &["ip-hz002", "ip-hz003"]),
        Some("shard1"),
    ));
    env.apply_ok(&labelled(
        ids_query("qc", &["ip-hz004", "ip-hz005"]),
        Some("shard2"),
    ));
    for (query, shard) in [("qa", "main"), ("qb", "shard1"), ("qc", "shard2")] {
        let q = env.wait_ready(query, "Synced");
        assert_eq!(q["status"]["shard"], shard, "{query}: {q}");
        assert_eq!(q["status"]["matchedCount"], 2, "{query}");
    }
    let expected: Vec<&str> = vec!["ip-hz001", "ip-hz002", "ip-hz003", "ip-hz004", "ip-hz005"];
    wait_for("every selected pipeline to be mirrored", || {
        (env.names() == expected).then_some(())
    });
    wait_for("the shared object to carry both owners", || {
        (owner_names(&env, "ip-hz002") == ["qa", "qb"]).then_some(())
    });
    // Each instance (the main one too, as it serves a part of the queries) labels what it
    // mirrors, and its watch selects only that.
    assert_eq!(shard_labels(&env, "ip-hz001"), ["main"]);
    assert_eq!(shard_labels(&env, "ip-hz002"), ["main", "shard1"]);
    assert_eq!(shard_labels(&env, "ip-hz004"), ["shard2"]);
    for (lease, shard) in [
        ("imagepipeline-operator-leader", "main"),
        ("imagepipeline-operator-leader-shard1", "shard1"),
        ("imagepipeline-operator-leader-shard2", "shard2"),
    ] {
        let holder = wait_for(&format!("{lease} to be held"), || lease_holder(&env, lease));
        assert!(holder.ends_with(shard), "{lease}: {holder}");
    }
    assert!(
        shard1.log().contains("shard=\"shard1\"") || shard1.log().contains("shard=shard1"),
        "the shard says which it is"
    );

    // Steady state: refreshes of every query on both sides of the shared object write
    // nothing (resourceVersions unchanged).
    let before = env.pipelines();
    for query in ["qa", "qb", "qc", "qa", "qb"] {
        env.refresh(query);
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        env.pipelines(),
        before,
        "0 writes at steady state across shards"
    );

    // Events and metrics name the shard.
    let events = env.events_for("imagepipelinequery/qb");
    assert!(
        events.iter().any(|e| e["reportingComponent"]
            .as_str()
            .or(e["source"]["component"].as_str())
            .is_some_and(|c| c == "imagepipeline-operator-shard1")),
        "{events:?}"
    );
    let (_, metrics) = http(&shard1.admin_url(), "GET", "/metrics", "");
    assert!(
        metrics.contains("imagepipeline_leader{shard=\"shard1\"} 1"),
        "{metrics}"
    );

    // Deleting qb keeps the shared object for qa (same object), and removes qb's own one.
    let uids_before = env.object_uids();
    env.kubectl_ok(&["delete", "imagepipelinequery", "qb", "--wait=true"]);
    wait_for("qb's own object to go and the shared one to stay", || {
        let now = env.object_uids();
        (!now.contains_key("ip-hz003")
            && now.get("ip-hz002") == uids_before.get("ip-hz002")
            && owner_names(&env, "ip-hz002") == ["qa"])
        .then_some(())
    });

    // shard1 has no reference left on the shared object: it gives it up (its label goes), and
    // the object stays qa's.
    wait_for_within(
        "shard1 to give up the shared object",
        Duration::from_secs(60),
        || (shard_labels(&env, "ip-hz002") == ["main"]).then_some(()),
    );
    assert_eq!(
        env.object_uids().get("ip-hz002"),
        uids_before.get("ip-hz002")
    );

    // Move qc from shard2 to shard1: same objects (uids), shard1 adopts, shard2 lets go.
    let qc_uid = env.query("qc")["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    env.kubectl_ok(&[
        "label",
        "--overwrite",
        "imagepipelinequery",
        "qc",
        &format!("{KEY}=shard1"),
    ]);
    wait_for("shard1 to serve qc", || {
        (env.query("qc")["status"]["shard"] == "shard1").then_some(())
    });
    wait_for_within(
        "shard2 to let go of qc's objects",
        Duration::from_secs(60),
        || {
            ["ip-hz004", "ip-hz005"]
                .iter()
                .all(|n| ref_managers(&env, n, &qc_uid) == ["imagepipeline-operator-shard1"])
                .then_some(())
        },
    );
    let after_move = env.object_uids();
    for name in ["ip-hz004", "ip-hz005", "ip-hz001", "ip-hz002"] {
        assert_eq!(
            after_move.get(name),
            uids_before.get(name),
            "{name} kept its uid"
        );
    }
    assert_eq!(owner_names(&env, "ip-hz004"), ["qc"]);
    assert_eq!(
        shard_labels(&env, "ip-hz004"),
        ["shard1"],
        "shard2 took its label off"
    );

    // And quiet again.
    let before = env.pipelines();
    env.refresh("qc");
    env.refresh("qa");
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(env.pipelines(), before, "0 writes after the move");

    // A shard's leader lost: shard2's process is killed; the other Leases keep their holders
    // and the other queries stay Ready.
    let holders_before: Vec<Option<String>> = [
        "imagepipeline-operator-leader",
        "imagepipeline-operator-leader-shard1",
    ]
    .iter()
    .map(|l| lease_holder(&env, l))
    .collect();
    shard2.kill();
    std::thread::sleep(Duration::from_secs(6));
    env.refresh("qa");
    env.refresh("qc");
    let holders_after: Vec<Option<String>> = [
        "imagepipeline-operator-leader",
        "imagepipeline-operator-leader-shard1",
    ]
    .iter()
    .map(|l| lease_holder(&env, l))
    .collect();
    assert_eq!(holders_after, holders_before);
    drop(main);
}
