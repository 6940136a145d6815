//! A credentials Secret rotated in place (`kubectl apply` of the same Secret with a new key).

use std::path::Path;

use serde_json::{Value, json};

use crate::support::*;

const OLD_ID: &str = "LTAI5tE2eRotationOld1";
const OLD_SECRET: &str = "old-secret-value-9f3a1c";
const NEW_ID: &str = "LTAI5tE2eRotationNew2";
const NEW_SECRET: &str = "new-secret-value-7c1e4b";

fn secret_manifest(id: &str, secret: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "ak"},
        "stringData": {"accessKeyId": id, "accessKeySecret": secret},
    })
}

/// Fails if `text` (a status, Events, a log) shows either secret value.
fn assert_no_secret(what: &str, text: &str) {
    for secret in [OLD_SECRET, NEW_SECRET] {
        assert!(!text.contains(secret), "{what} shows a secret: {text}");
    }
}

/// The AccessKey IDs of the `DescribeImagePipelines` calls in the request log, with their HTTP
/// status.
fn calls_by_key(log: &Path) -> Vec<(String, u64)> {
    describe_calls_logged(log)
        .iter()
        .map(|c| {
            (
                c["parameters"]["AccessKeyId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                c["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn a_secret_rotated_in_place_is_used_at_the_next_sync_and_never_shown() {
    let items = data_set();
    let requests = logs_dir().join(format!("rotate-{}-requests.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&requests);
    let old = format!("{OLD_ID}:{OLD_SECRET}");
    let new = format!("{NEW_ID}:{NEW_SECRET}");
    let log_flag = requests.to_string_lossy().into_owned();
    let Some(mut env) = Env::start(
        "rotate",
        &items,
        &[
            "--credential",
            &old,
            "--credential",
            &new,
            "--log",
            &log_flag,
        ],
    ) else {
        return;
    };
    env.apply_ok(&secret_manifest(OLD_ID, OLD_SECRET));
    env.apply_ok(&hangzhou_query("hz"));
    let q = env.wait_ready("hz", "Synced");
    assert_no_secret("status", &q.to_string());
    assert_eq!(q["status"]["matchedCount"], 6);
    let synced_with_old = calls_by_key(&requests);
    assert!(
        !synced_with_old.is_empty() && synced_with_old.iter().all(|(id, _)| id == OLD_ID),
        "the first sync did not use the Secret's key: {synced_with_old:?}"
    );

    // Rotate in place: the same Secret object, a new key.
    let uid = env.get_json(&["secret", "ak"])["metadata"]["uid"].clone();
    env.apply_ok(&secret_manifest(NEW_ID, NEW_SECRET));
    assert_eq!(
        env.get_json(&["secret", "ak"])["metadata"]["uid"],
        uid,
        "rotated in place"
    );
    let last_sync = q["status"]["lastSyncTime"].clone();
    wait_for("a sync with the new key", || {
        let q = env.query("hz");
        assert_no_secret("status", &q.to_string());
        let used_new = calls_by_key(&requests)
            .iter()
            .any(|(id, status)| id == NEW_ID && *status == 200);
        (used_new
            && q["status"]["lastSyncTime"] != last_sync
            && ready_reason(&q).as_deref() == Some("Synced"))
        .then_some(())
    });

    // Revoke the old key: the simulator comes back on the same address knowing only the new
    // one, so a sync that still signed with the old key would fail.
    let addr = env.sim.addr().to_string();
    env.sim.stop();
    let revoked = logs_dir().join(format!("rotate-{}-revoked.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&revoked);
    env.sim = Sim::start(
        &format!("{}-revoked", env.ns),
        &addr,
        &["--credential", &new, "--log", &revoked.to_string_lossy()],
    );
    env.set_items(&items);
    let q = env.refresh("hz");
    assert_no_secret("status", &q.to_string());
    assert_eq!(ready_reason(&q).as_deref(), Some("Synced"), "{q}");
    assert_eq!(q["status"]["credentials"], "secret/ak");
    let after_revocation = calls_by_key(&revoked);
    assert!(
        !after_revocation.is_empty()
            && after_revocation
                .iter()
                .all(|(id, status)| id == NEW_ID && *status == 200),
        "the refresh after the revocation did not list with the new key: {after_revocation:?}"
    );

    assert_no_secret(
        "the Events",
        &serde_json::to_string(&env.events_for("imagepipelinequery/hz")).unwrap_or_default(),
    );
    if let Some(operator) = &env.operator {
        assert_no_secret("the operator log", &operator.log());
    }
}
