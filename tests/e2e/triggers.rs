//! What a triggered sync sees and reports: a refresh requested right after a change in the cloud
//! acts on it (never on a listing that began before the request), and the credentials it used are
//! named once.

use serde_json::json;

use crate::support::*;

#[test]
fn a_refresh_requested_right_after_a_pipeline_vanished_prunes_it() {
    let mut items = data_set();
    let Some(env) = Env::start("vanish", &items, &[]) else {
        return;
    };
    env.secret();
    env.apply_ok(&hangzhou_query("hz"));
    env.wait_ready("hz", "Synced");
    assert!(env.names().contains(&"ip-hz001".to_string()));
    // Within the share window of the first sync's listing: only a new listing can see this.
    items.retain(|i| i["ImagePipelineId"] != "ip-hz001");
    env.set_items(&items);
    let q = env.refresh("hz");
    assert_eq!(q["status"]["matchedCount"], 5);
    assert_eq!(q["status"]["lastSyncResult"]["deleted"], 1);
    assert_eq!(
        env.names(),
        hangzhou_ids(&items),
        "the vanished one is pruned"
    );
}

#[test]
fn a_query_on_ambient_credentials_names_the_provider_with_one_prefix() {
    let items = data_set();
    let Some(mut env) = Env::without_operator("ambient", &items, &[]) else {
        return;
    };
    let ns = env.ns.clone();
    let operator = env.spawn_operator(
        "operator",
        &["--ambient-credentials-namespaces", &ns],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "AK"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "SECRET"),
        ],
    );
    env.operator = Some(operator);
    env.apply_ok(&query_manifest("hz", json!({"regionId": "cn-hangzhou"})));
    let q = env.wait_ready("hz", "Synced");
    assert_eq!(q["status"]["credentials"], "ambient/env");
    assert_eq!(q["status"]["matchedCount"], 6);
    let status = q["status"].to_string();
    assert!(
        !status.contains("SECRET"),
        "status shows no secret: {status}"
    );
}
