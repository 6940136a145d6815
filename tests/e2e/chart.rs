//! The Helm chart on the real API server: its RBAC suffices for the operator, its admission
//! policy keeps ImagePipelines read-only for everyone else (cluster admins included, told why)
//! while the garbage collector and the namespace controller still delete them.

use serde_json::json;

use crate::support::*;

/// Installs the Helm chart (RBAC, ServiceAccount, admission policy; the CRDs are already applied
/// and the image may not be loadable into the cluster, so the Deployment runs no pod), then runs the operator binary *as the chart's ServiceAccount*: the
/// chart's RBAC must be enough to mirror, and its admission policy must refuse everyone else.
#[test]
fn the_chart_installs_its_rbac_suffices_and_only_the_operator_may_write_pipelines() {
    let items = data_set();
    let Some(mut env) = Env::start("helm", &items, &[]) else {
        return;
    };
    let _chart = install_chart_and_run_the_operator_as_its_service_account(&mut env);

    env.secret();
    env.apply_ok(&hangzhou_query("hz"));
    let q = env.wait_ready("hz", "Synced");
    assert_eq!(q["status"]["matchedCount"], 6);
    assert_eq!(env.names(), hangzhou_ids(&items));

    // Anyone else, here the tester (typically cluster-admin), is refused by the policy.
    let id = hangzhou_ids(&items)[0].clone();
    for attempt in [
        vec!["label", "imagepipeline", id.as_str(), "edited=by-hand"],
        vec!["delete", "imagepipeline", id.as_str(), "--wait=false"],
    ] {
        let out = env.kubectl(&attempt);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{attempt:?} was allowed");
        assert!(
            stderr.contains("read-only") && stderr.contains("ImagePipelineQuery"),
            "{attempt:?} refused without the policy's message: {stderr}"
        );
    }
    let forged = json!({
        "apiVersion": "ecs.mirror.io/v1alpha1",
        "kind": "ImagePipeline",
        "metadata": {"name": "ip-forged001"},
        "spec": {"imagePipelineId": "ip-forged001", "regionId": "cn-hangzhou"},
    });
    let out = env.apply(&forged);
    assert!(
        !out.status.success(),
        "creating an ImagePipeline by hand was allowed"
    );
    assert_eq!(env.names(), hangzhou_ids(&items), "nothing changed");
}

/// The operator, running as the chart's ServiceAccount, mirroring into `env`'s namespace with the
/// chart (installed in a namespace of its own) and its admission policy on.
fn install_chart_and_run_the_operator_as_its_service_account(env: &mut Env) -> ChartRelease {
    env.stop_operator();
    let chart = ChartRelease::install(&env.kubeconfig, &format!("{}-ipo", env.ns), &env.ns);
    env.operator_kubeconfig = Some(chart.service_account_kubeconfig());
    env.start_operator();
    // A new ValidatingAdmissionPolicy is enforced once the API server's policy informer has it
    // (about a second, more on a busy machine): wait until a server-side dry run is refused.
    let probe = serde_json::json!({
        "apiVersion": "ecs.mirror.io/v1alpha1",
        "kind": "ImagePipeline",
        "metadata": {"name": "ip-policyprobe"},
        "spec": {"imagePipelineId": "ip-policyprobe", "regionId": "cn-hangzhou"},
    });
    let path = std::env::temp_dir().join(format!("{}-policy-probe.json", env.ns));
    std::fs::write(&path, probe.to_string()).expect("write the probe");
    wait_for("the admission policy to be enforced", || {
        let out = env.kubectl(&["create", "--dry-run=server", "-f", path.to_str().unwrap()]);
        (!out.status.success()).then_some(())
    });
    let _ = std::fs::remove_file(&path);
    chart
}

#[test]
fn with_the_chart_installed_deleting_a_query_collects_what_only_it_owned_and_deleting_the_namespace_completes()
 {
    let items = data_set();
    let Some(mut env) = Env::start("chart-gc", &items, &[]) else {
        return;
    };
    let _chart = install_chart_and_run_the_operator_as_its_service_account(&mut env);
    env.secret();
    env.apply_ok(&ids_query("first", &["ip-hz001", "ip-hz002"]));
    env.apply_ok(&ids_query("second", &["ip-hz002", "ip-hz003"]));
    env.wait_ready("first", "Synced");
    env.wait_ready("second", "Synced");
    let first_uid = env.query("first")["metadata"]["uid"].clone();
    wait_for("ip-hz002 to have two owners", || {
        let p = env.pipelines();
        (p.get("ip-hz002").map(|(_, o)| o.len()) == Some(2)).then_some(())
    });

    // A release as the chart's ServiceAccount (its RBAC must let the operator read the object
    // it re-applies): `first` stops matching the shared object, which stays with `second` only.
    let second_uid = env.query("second")["metadata"]["uid"].clone();
    env.apply_ok(&ids_query("first", &["ip-hz001"]));
    let first = env.wait_ready("first", "Synced");
    assert_eq!(first["status"]["lastSyncResult"]["released"], 1);
    assert_eq!(
        env.pipelines()["ip-hz002"].1,
        vec![second_uid.as_str().unwrap_or_default().to_string()],
        "released, not deleted"
    );
    env.apply_ok(&ids_query("first", &["ip-hz001", "ip-hz002"]));
    env.wait_ready("first", "Synced");
    wait_for("ip-hz002 to have two owners again", || {
        let p = env.pipelines();
        (p.get("ip-hz002").map(|(_, o)| o.len()) == Some(2)).then_some(())
    });

    // The policy lets the garbage collector through: what only `second` owned goes, the
    // shared object stays with `first` as its only owner.
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
        left["ip-hz002"].1,
        vec![first_uid.as_str().unwrap_or_default().to_string()],
        "only the deleted query's reference went"
    );

    // And the namespace controller: deleting the namespace completes with its ImagePipelines.
    run_ok(
        &env.kubeconfig,
        &["delete", "namespace", &env.ns, "--wait=false"],
    );
    wait_for(&format!("namespace {} to be deleted", env.ns), || {
        let out = run(
            &env.kubeconfig,
            &["get", "namespace", &env.ns, "-o", "name"],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        (!out.status.success() && stderr.contains("NotFound")).then_some(())
    });
}

#[test]
fn with_the_chart_installed_a_cluster_admin_cannot_create_edit_or_delete_a_pipeline_and_is_told_why()
 {
    let items = data_set();
    let Some(mut env) = Env::start("chart-admin", &items, &[]) else {
        return;
    };
    let _chart = install_chart_and_run_the_operator_as_its_service_account(&mut env);
    env.secret();
    env.apply_ok(&hangzhou_query("hz"));
    env.wait_ready("hz", "Synced");
    let before = env.pipelines();
    let id = hangzhou_ids(&items)[0].clone();

    let why = |stderr: &str, operation: &str| {
        for part in [
            "ImagePipelines are mirrored from Alibaba Cloud ECS",
            "read-only",
            &format!("may not {operation} them"),
            "edit the ImagePipelineQuery that selects the pipeline",
        ] {
            assert!(
                stderr.contains(part),
                "{operation} refused without saying {part:?}: {stderr}"
            );
        }
    };
    let forged = json!({
        "apiVersion": "ecs.mirror.io/v1alpha1",
        "kind": "ImagePipeline",
        "metadata": {"name": "ip-forged001"},
        "spec": {"imagePipelineId": "ip-forged001", "regionId": "cn-hangzhou"},
    });
    let out = env.apply(&forged);
    assert!(
        !out.status.success(),
        "creating an ImagePipeline was allowed"
    );
    why(&String::from_utf8_lossy(&out.stderr), "CREATE");

    let edits: [Vec<&str>; 3] = [
        vec!["label", "imagepipeline", &id, "edited=by-hand"],
        vec!["annotate", "imagepipeline", &id, "edited=by-hand"],
        vec![
            "patch",
            "imagepipeline",
            &id,
            "--type=merge",
            "-p",
            r#"{"spec":{"instanceType":"ecs.g7.xlarge"}}"#,
        ],
    ];
    for edit in edits {
        let out = env.kubectl(&edit);
        assert!(!out.status.success(), "{edit:?} was allowed");
        why(&String::from_utf8_lossy(&out.stderr), "UPDATE");
    }

    let out = env.kubectl(&["delete", "imagepipeline", &id, "--wait=false"]);
    assert!(
        !out.status.success(),
        "deleting an ImagePipeline was allowed"
    );
    why(&String::from_utf8_lossy(&out.stderr), "DELETE");

    assert_eq!(
        env.pipelines(),
        before,
        "nothing created, changed or deleted"
    );
}
