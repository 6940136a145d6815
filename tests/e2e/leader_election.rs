//! Two operator replicas with `--leader-election` on a real `coordination.k8s.io` Lease.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

const LEASE: &str = "ipo-e2e-leader";
const LEASE_DURATION: Duration = Duration::from_secs(5);

/// The Lease's `holderIdentity`, if the Lease exists and names one.
fn holder(env: &Env) -> Option<String> {
    let out = env.kubectl(&["get", "lease", LEASE, "-o", "json"]);
    if !out.status.success() {
        return None;
    }
    let lease: Value = serde_json::from_slice(&out.stdout).ok()?;
    lease["spec"]["holderIdentity"]
        .as_str()
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

/// An operator with leader election on [`LEASE`] in the test's namespace, named `identity`.
/// `replica-b` runs on two worker threads, the others on the default one, so that whichever
/// leads, both ways of running are seen mirroring; each has a `TOKIO_WORKER_THREADS` tokio
/// would panic on, which the operator must ignore (its thread count is `--worker-threads`).
fn replica(env: &Env, identity: &str, lease_duration: &str) -> Operator {
    let threads = if identity == "replica-b" { "2" } else { "1" };
    env.spawn_operator(
        identity,
        &[
            "--leader-election",
            "--lease-name",
            LEASE,
            "--lease-namespace",
            &env.ns,
            "--lease-duration",
            lease_duration,
            "--worker-threads",
            threads,
        ],
        &[("POD_NAME", identity), ("TOKIO_WORKER_THREADS", "many")],
    )
}

#[test]
fn of_two_replicas_only_the_lease_holder_writes_and_the_standby_takes_over_when_it_is_killed() {
    let mut items = data_set();
    let Some(env) = Env::without_operator("lease", &items, &[]) else {
        return;
    };
    env.secret();
    let mut replicas = vec![
        ("replica-a".to_string(), replica(&env, "replica-a", "5s")),
        ("replica-b".to_string(), replica(&env, "replica-b", "5s")),
    ];

    // Exactly one holds the Lease, and only that one says it leads.
    let first = wait_for("a replica to hold the lease", || holder(&env));
    let leader_at = replicas
        .iter()
        .position(|(id, _)| *id == first)
        .unwrap_or_else(|| panic!("the Lease names {first:?}, no replica of this test"));
    let (leader_id, mut leader) = replicas.remove(leader_at);
    let (standby_id, standby) = replicas.remove(0);
    wait_for("the holder to report itself leader", || {
        (leader.metric("imagepipeline_leader") == Some(1.0)).then_some(())
    });
    assert_eq!(standby.metric("imagepipeline_leader"), Some(0.0));

    env.apply_ok(&hangzhou_query("hz"));
    env.wait_ready("hz", "Synced");
    assert_eq!(env.names(), hangzhou_ids(&items));
    assert_eq!(holder(&env).as_deref(), Some(leader_id.as_str()));
    assert_eq!(
        leader.metric("imagepipeline_objects_written_total"),
        Some(6.0),
        "the leader wrote the six objects"
    );
    // The standby ran no controller: no sync, no write, no ECS call.
    for metric in [
        "imagepipeline_syncs_total",
        "imagepipeline_objects_written_total",
        "imagepipeline_ecs_calls_total",
    ] {
        assert_eq!(
            standby.metric(metric).unwrap_or(0.0),
            0.0,
            "the standby counted {metric}"
        );
    }
    assert!(
        !standby.log().contains("leading: starting the controller"),
        "the standby started its controller:\n{}",
        standby.log()
    );
    let before = env.pipelines();

    // A new pipeline appears in the cloud while the leader dies.
    items.push(pipeline("ip-hz999", "cn-hangzhou"));
    env.set_items(&items);
    leader.kill();
    let killed = Instant::now();
    wait_for_within(
        "the standby to take the lease over",
        LEASE_DURATION * 3,
        || (holder(&env).as_deref() == Some(standby_id.as_str())).then_some(()),
    );
    eprintln!(
        "{standby_id} took the lease over {:?} after {leader_id} was killed (lease duration {LEASE_DURATION:?})",
        killed.elapsed()
    );
    wait_for("the new leader to report itself leader", || {
        (standby.metric("imagepipeline_leader") == Some(1.0)).then_some(())
    });

    // The new leader converges: a refresh mirrors the new pipeline and rewrites nothing else.
    let q = env.refresh("hz");
    assert_eq!(q["status"]["matchedCount"], 7);
    assert_eq!(env.names(), hangzhou_ids(&items));
    let after = env.pipelines();
    for (name, version) in &before {
        assert_eq!(
            after.get(name),
            Some(version),
            "{name} was rewritten by the new leader"
        );
    }
    assert_eq!(
        standby.metric("imagepipeline_objects_written_total"),
        Some(1.0),
        "the new leader wrote only the new pipeline"
    );
}

#[test]
fn a_leader_stopped_with_sigterm_releases_the_lease_and_the_standby_takes_over_at_once() {
    let items = data_set();
    let Some(env) = Env::without_operator("release", &items, &[]) else {
        return;
    };
    env.secret();
    // A long lease: a standby that waited for it to expire would take 15 s.
    let lease_duration = Duration::from_secs(15);
    let mut a = replica(&env, "replica-a", "15s");
    let first = wait_for("replica-a to hold the lease", || holder(&env));
    assert_eq!(first, "replica-a");
    let b = replica(&env, "replica-b", "15s");
    wait_for("replica-b to stand by", || {
        (b.metric("imagepipeline_leader") == Some(0.0)).then_some(())
    });
    env.apply_ok(&hangzhou_query("hz"));
    env.wait_ready("hz", "Synced");

    let stopped = Instant::now();
    assert!(
        a.terminate(Duration::from_secs(30)),
        "the leader exits on SIGTERM"
    );
    assert!(a.log().contains("lease released"), "{}", a.log());
    wait_for_within(
        "replica-b to take the released lease",
        lease_duration,
        || (holder(&env).as_deref() == Some("replica-b")).then_some(()),
    );
    let took = stopped.elapsed();
    eprintln!(
        "replica-b took the lease {took:?} after replica-a got SIGTERM (lease duration {lease_duration:?})"
    );
    assert!(
        took < lease_duration / 2,
        "taken over after {took:?}: the lease was waited out, not released"
    );
    wait_for("replica-b to lead", || {
        (b.metric("imagepipeline_leader") == Some(1.0)).then_some(())
    });
    let q = env.refresh("hz");
    assert_eq!(ready_reason(&q).as_deref(), Some("Synced"));
}

#[test]
fn a_deleted_lease_is_created_again_and_a_replica_leads_again() {
    let mut items = data_set();
    let Some(env) = Env::without_operator("lease-deleted", &items, &[]) else {
        return;
    };
    env.secret();
    let a = replica(&env, "replica-a", "5s");
    let b = replica(&env, "replica-b", "5s");
    wait_for("a replica to hold the lease", || holder(&env));
    env.apply_ok(&hangzhou_query("hz"));
    env.wait_ready("hz", "Synced");

    // Someone deletes the Lease (a cleanup script, a namespace sweep gone wrong).
    let out = env.kubectl(&["delete", "lease", LEASE]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deleted = Instant::now();
    let next = wait_for_within("a replica to hold a new Lease", LEASE_DURATION * 4, || {
        holder(&env)
    });
    eprintln!(
        "{next} holds the Lease {:?} after it was deleted",
        deleted.elapsed()
    );
    wait_for("exactly one replica to lead", || {
        let leading = [&a, &b]
            .iter()
            .filter(|r| r.metric("imagepipeline_leader") == Some(1.0))
            .count();
        (leading == 1).then_some(())
    });
    // The leader mirrors a change again.
    items.push(pipeline("ip-hz999", "cn-hangzhou"));
    env.set_items(&items);
    let q = env.refresh("hz");
    assert_eq!(q["status"]["matchedCount"], 7);
    assert_eq!(env.names(), hangzhou_ids(&items));
    let logs = format!("{}{}", a.log(), b.log());
    assert!(
        logs.contains("the Lease was deleted or the lease manager stopped")
            || logs.contains("the Lease was released or deleted"),
        "{logs}"
    );
}
