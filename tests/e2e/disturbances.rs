//! What a production cluster does to a mirror, on the real API server: someone else edits fields
//! the operator leaves out, a listing carries items that cannot be mirrored, the API server
//! refuses writes, the Lease is lost and won again. After each the operator converges with the
//! fewest writes, says so in status and Events, and then stays quiet.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// How long "quiet" is watched for: longer than the 10 s spacing of drift-triggered syncs, so a
/// repair loop would show at least once.
const QUIET: Duration = Duration::from_secs(25);

/// `kubectl get -w --output-watch-events` of one object: every write to it while it runs.
struct ObjectWatch {
    child: Child,
}

impl ObjectWatch {
    fn start(env: &Env, kind: &str, name: &str) -> Self {
        let child = Command::new(kubectl_bin())
            .args([
                "--kubeconfig",
                &env.kubeconfig,
                "-n",
                &env.ns,
                "get",
                kind,
                name,
                "-w",
                "--output-watch-events",
                "-o",
                "json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl get -w");
        // The first event (the object as it is) arrives once the watch is established.
        std::thread::sleep(Duration::from_secs(2));
        Self { child }
    }

    /// Stops the watch; returns the watch events after the initial one, in order.
    fn stop(mut self) -> Vec<Value> {
        let _ = self.child.kill();
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            let _ = stdout.read_to_string(&mut out);
        }
        let _ = self.child.wait();
        let events: Vec<Value> = serde_json::Deserializer::from_str(&out)
            .into_iter::<Value>()
            .filter_map(Result::ok)
            .collect();
        events.into_iter().skip(1).collect()
    }
}

fn uid(v: &Value) -> String {
    v["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn owner_uids(obj: &Value) -> Vec<String> {
    let mut uids: Vec<String> = obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["uid"].as_str().unwrap_or_default().to_string())
        .collect();
    uids.sort();
    uids
}

/// Waits `QUIET` and asserts the simulator served no further listing meanwhile.
fn assert_no_listing_for_a_while(env: &Env, what: &str) {
    let calls = env.sim_calls();
    std::thread::sleep(QUIET);
    assert_eq!(env.sim_calls(), calls, "{what}: no further listing");
}

#[test]
fn fields_someone_else_set_are_taken_back_in_one_write_and_then_nothing_is_written_or_listed() {
    let items = data_set();
    let Some(env) = Env::start("foreign", &items, &[]) else {
        return;
    };
    env.secret();
    env.apply_ok(&hangzhou_query("hz"));
    env.apply_ok(&ids_query("other", &["ip-hz001"]));
    let hz = env.wait_ready("hz", "Synced");
    let other = env.wait_ready("other", "Synced");

    // Fields the pipeline does not have (so the operator's apply leaves them out) and the
    // operator's own lastSyncTime, set by another field manager.
    let watch = ObjectWatch::start(&env, "imagepipeline", "ip-hz002");
    env.kubectl_ok(&[
        "patch",
        "imagepipeline",
        "ip-hz002",
        "--type=merge",
        "--field-manager=intruder",
        "-p",
        r#"{"spec":{"description":"hijacked","tags":[{"tagKey":"x","tagValue":"y"}],"lastSyncTime":"2000-01-01T00:00:00Z"}}"#,
    ]);
    wait_for("the foreign spec fields to be taken back", || {
        let spec = &env.get_json(&["imagepipeline", "ip-hz002"])["spec"];
        let back = spec["description"].is_null()
            && spec["tags"].as_array().is_none_or(Vec::is_empty)
            && spec["lastSyncTime"] != "2000-01-01T00:00:00Z";
        back.then_some(())
    });
    assert_no_listing_for_a_while(&env, "after the spec repair");
    let writes = watch.stop();
    assert_eq!(
        writes.len(),
        2,
        "the intruder's write and one repair, then nothing: {writes:#?}"
    );

    // An owner reference to another query of the namespace that does not match the pipeline:
    // the garbage collector would keep the object for that query.
    let watch = ObjectWatch::start(&env, "imagepipeline", "ip-hz003");
    let obj = env.get_json(&["imagepipeline", "ip-hz003"]);
    let mut refs = obj["metadata"]["ownerReferences"].clone();
    refs.as_array_mut().expect("owner references").push(json!({
        "apiVersion": "ecs.mirror.io/v1alpha1",
        "kind": "ImagePipelineQuery",
        "name": "other",
        "uid": uid(&other),
    }));
    env.kubectl_ok(&[
        "patch",
        "imagepipeline",
        "ip-hz003",
        "--type=merge",
        "--field-manager=intruder",
        "-p",
        &json!({"metadata": {"ownerReferences": refs}}).to_string(),
    ]);
    wait_for("the foreign owner reference to be removed", || {
        let obj = env.get_json(&["imagepipeline", "ip-hz003"]);
        (owner_uids(&obj) == [uid(&hz)]).then_some(())
    });
    assert_no_listing_for_a_while(&env, "after the owner repair");
    let writes = watch.stop();
    assert_eq!(
        writes.len(),
        2,
        "the intruder's write and one repair, then nothing: {writes:#?}"
    );
    // The other query never took the object as its own.
    assert_eq!(env.query("other")["status"]["matchedCount"], 1);
    assert_eq!(env.names(), hangzhou_ids(&items));
}

#[test]
fn a_listing_with_odd_items_mirrors_the_rest_reports_them_once_and_lists_no_more() {
    let mut items = data_set();
    let mut odd = pipeline("ip-ap002..x", "cn-hangzhou");
    odd["ImagePipelineId"] = json!("ip-ap002..x");
    items.push(odd);
    let mut unreadable = pipeline("ip-hz009", "cn-hangzhou");
    unreadable["ImagePipelineId"] = json!("");
    items.push(unreadable);
    let Some(env) = Env::start("odd", &items, &[]) else {
        return;
    };
    env.secret();
    env.apply_ok(&hangzhou_query("hz"));
    let q = env.wait_ready("hz", "PartiallySynced");
    let ready = q["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .expect("Ready condition");
    assert_eq!(ready["status"], "True", "the rest is mirrored: {ready}");
    let message = ready["message"].as_str().unwrap_or_default();
    assert!(message.contains("ip-ap002..x"), "{message}");
    assert!(
        message.contains("without a readable ImagePipelineId"),
        "{message}"
    );
    assert_eq!(q["status"]["lastSyncResult"]["skipped"], 2);
    assert_eq!(
        env.names(),
        (1..=6).map(|i| format!("ip-hz{i:03}")).collect::<Vec<_>>()
    );
    assert_no_listing_for_a_while(&env, "with unmirrorable items");
    let warnings: Vec<Value> = env
        .events_for("imagepipelinequery/hz")
        .into_iter()
        .filter(|e| e["reason"] == "PartiallySynced")
        .collect();
    assert_eq!(warnings.len(), 1, "reported once: {warnings:#?}");
    assert_eq!(warnings[0]["type"], "Warning");
}

#[test]
fn refused_writes_are_reported_and_the_others_are_made() {
    let items = data_set();
    let Some(env) = Env::start("refused", &items, &[]) else {
        return;
    };
    env.secret();
    env.apply_ok(&json!({
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "pipelines"},
        "spec": {"hard": {"count/imagepipelines.ecs.mirror.io": "3"}},
    }));
    // The quota controller must have counted before it admits anything.
    wait_for("the quota to be counted", || {
        let quota = env.get_json(&["resourcequota", "pipelines"]);
        quota["status"]["hard"]
            .get("count/imagepipelines.ecs.mirror.io")
            .map(|_| ())
    });
    env.apply_ok(&hangzhou_query("hz"));
    let q = env.wait_ready("hz", "WriteFailed");
    let message = q["status"]["lastError"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("exceeded quota"), "{message}");
    assert!(message.contains("ImagePipeline ip-hz"), "{message}");
    assert_eq!(q["status"]["lastSyncResult"]["failed"], 3);
    assert_eq!(q["status"]["lastSyncResult"]["created"], 3);
    assert_eq!(env.names().len(), 3, "the writes that fit were made");
    let failed: Vec<Value> = env
        .events_for("imagepipelinequery/hz")
        .into_iter()
        .filter(|e| e["reason"] == "WriteFailed")
        .collect();
    assert!(!failed.is_empty(), "a WriteFailed Event");
    assert_eq!(failed[0]["type"], "Warning");

    // More room: a requested refresh is handled and mirrors everything.
    env.merge_patch(
        "resourcequota",
        "pipelines",
        r#"{"spec":{"hard":{"count/imagepipelines.ecs.mirror.io":"20"}}}"#,
    );
    wait_for("the quota to be raised", || {
        let quota = env.get_json(&["resourcequota", "pipelines"]);
        (quota["status"]["hard"]["count/imagepipelines.ecs.mirror.io"] == "20").then_some(())
    });
    let q = env.refresh("hz");
    assert_eq!(ready_reason(&q).as_deref(), Some("Synced"), "{q:#}");
    assert_eq!(env.names(), hangzhou_ids(&items));
}

/// The number of ImagePipeline watches the API server is serving for namespace-scoped clients
/// (the operator watches one namespace; the garbage collector's watch is cluster-wide).
fn imagepipeline_watches(env: &Env) -> u64 {
    env.apiserver_metric(
        "apiserver_longrunning_requests",
        &[
            r#"resource="imagepipelines""#,
            r#"verb="WATCH""#,
            r#"scope="namespace""#,
        ],
    )
}

#[test]
fn losing_and_winning_the_lease_again_leaves_one_imagepipeline_watch() {
    let items = data_set();
    let Some(env) = Env::without_operator("relead", &items, &[]) else {
        return;
    };
    env.secret();
    let lease = "ipo-e2e-relead";
    let operator = env.spawn_operator(
        "leader",
        &[
            "--leader-election",
            "--lease-name",
            lease,
            "--lease-namespace",
            &env.ns,
            "--lease-duration",
            "5s",
        ],
        &[("POD_NAME", "replica-a")],
    );
    env.apply_ok(&hangzhou_query("hz"));
    env.wait_ready("hz", "Synced");
    assert_eq!(imagepipeline_watches(&env), 1);
    for round in 1..=2 {
        // Another identity takes the Lease: the operator must stop, then win it back.
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        env.kubectl_ok(&[
            "patch",
            "lease",
            lease,
            "--type=merge",
            "-p",
            &json!({"spec": {"holderIdentity": "intruder", "renewTime": now, "acquireTime": now, "leaseDurationSeconds": 5}})
                .to_string(),
        ]);
        wait_for(&format!("round {round}: the operator to step down"), || {
            (operator.metric("imagepipeline_leader") == Some(0.0)).then_some(())
        });
        let started = Instant::now();
        wait_for(
            &format!("round {round}: the operator to lead again"),
            || (operator.metric("imagepipeline_leader") == Some(1.0)).then_some(()),
        );
        eprintln!("round {round}: led again after {:?}", started.elapsed());
        wait_for(&format!("round {round}: one ImagePipeline watch"), || {
            (imagepipeline_watches(&env) == 1).then_some(())
        });
        // And it stays one: no watch of an earlier term lingers.
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(imagepipeline_watches(&env), 1, "round {round}");
    }
    // Still mirroring after the hand-backs.
    let q = env.refresh("hz");
    assert_eq!(ready_reason(&q).as_deref(), Some("Synced"));
}

#[test]
fn queries_created_and_deleted_by_the_dozen_are_forgotten() {
    let items = data_set();
    let Some(env) = Env::start("churn", &items, &[]) else {
        return;
    };
    env.secret();
    let names: Vec<String> = (0..24).map(|i| format!("q{i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        let id = format!("ip-hz{:03}", i % 6 + 1);
        env.apply_ok(&ids_query(name, &[&id]));
    }
    for name in &names {
        env.wait_ready(name, "Synced");
    }
    let operator = env.operator.as_ref().expect("operator");
    assert!(operator.metric("imagepipeline_query_ready").is_some());
    for name in &names {
        env.kubectl_ok(&["delete", "imagepipelinequery", name, "--wait=false"]);
    }
    wait_for("every deleted query to be forgotten", || {
        let forgotten = operator.log().matches("forgot a deleted query").count();
        (forgotten >= names.len()).then_some(())
    });
    wait_for("the garbage collector to remove what they owned", || {
        env.names().is_empty().then_some(())
    });
    // Nothing is kept for them: no per-query series either.
    assert_eq!(operator.metric("imagepipeline_query_ready"), None);
}
