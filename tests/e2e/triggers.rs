//! What a triggered sync sees and does: a refresh requested right after a change in the cloud
//! acts on it (never on a listing that began before the request), a mirrored object someone else
//! changed or deleted is put back, and the credentials it used are named once.

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

#[test]
fn a_mirrored_object_edited_or_deleted_by_someone_else_is_put_back() {
    let items = data_set();
    let Some(env) = Env::start("drift", &items, &[]) else {
        return;
    };
    env.secret();
    env.apply_ok(&query_manifest(
        "hz",
        json!({
            "regionId": "cn-hangzhou",
            "credentials": {"secretRef": {"name": "ak"}},
            "template": {"metadata": {"labels": {"team": "payments"}}},
        }),
    ));
    env.wait_ready("hz", "Synced");
    // Without the chart's admission policy nothing stops an admin: the operator must undo it.
    env.merge_patch(
        "imagepipeline",
        "ip-hz001",
        r#"{"spec":{"name":"hijacked","instanceType":"ecs.tiny"}}"#,
    );
    env.kubectl_ok(&["label", "imagepipeline", "ip-hz002", "team-"]);
    env.kubectl_ok(&["delete", "imagepipeline", "ip-hz003"]);
    wait_for("the edits to be reverted and the object re-created", || {
        let spec = &env.get_json(&["imagepipeline", "ip-hz001"])["spec"];
        let labels = &env.get_json(&["imagepipeline", "ip-hz002"])["metadata"]["labels"];
        let back = spec["name"] == "golden-ip-hz001"
            && spec["instanceType"] == "ecs.g6.large"
            && labels["team"] == "payments"
            && env.names().contains(&"ip-hz003".to_string());
        back.then_some(())
    });
    assert_eq!(env.names(), hangzhou_ids(&items));
}
