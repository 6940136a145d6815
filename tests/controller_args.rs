//! The flags of `imagepipeline-operator run`, each also an environment variable.

use clap::Parser;
use imagepipeline_operator::controller::RunArgs;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
}

fn parse(args: &[&str]) -> RunArgs {
    let mut full = vec!["run"];
    full.extend_from_slice(args);
    Cli::try_parse_from(full).expect("valid flags").run
}

#[test]
fn defaults_watch_all_namespaces_and_allow_no_ambient_credentials() {
    let a = parse(&[]);
    assert!(a.watched_namespaces().is_empty());
    assert!(a.ambient_policy().namespaces.is_empty());
    assert_eq!(a.ambient_policy().selector, None);
    assert_eq!(a.concurrency, 4);
    assert!(!a.leader_election);
    assert_eq!(a.lease_name, "imagepipeline-operator-leader");
    assert_eq!(a.admin_addr.to_string(), "0.0.0.0:8080");
    assert_eq!(a.lease_duration, std::time::Duration::from_secs(15));
    assert_eq!(a.ecs_endpoint, None);
    assert_eq!(a.worker_threads, 1);
}

#[test]
fn namespaces_repeat_or_split_on_commas() {
    let a = parse(&[
        "--namespace",
        "b",
        "--namespace",
        "a,c",
        "--ambient-credentials-namespaces",
        "ops, platform",
        "--ambient-credentials-namespace-selector",
        "ecs.mirror.io/ambient=true",
        "--concurrency",
        "8",
        "--leader-election",
        "--lease-name",
        "ipo",
        "--lease-duration",
        "20s",
        "--admin-addr",
        "127.0.0.1:9090",
        "--ecs-endpoint",
        "http://127.0.0.1:9000",
        "--ecs-rate-limit",
        "25",
        "--worker-threads",
        "3",
    ]);
    assert_eq!(a.watched_namespaces(), ["a", "b", "c"]);
    let policy = a.ambient_policy();
    assert!(policy.namespaces.contains("ops") && policy.namespaces.contains("platform"));
    assert_eq!(
        policy.selector.as_deref(),
        Some("ecs.mirror.io/ambient=true")
    );
    assert_eq!(a.concurrency, 8);
    assert!(a.leader_election);
    assert_eq!(a.lease_name, "ipo");
    assert_eq!(a.lease_duration, std::time::Duration::from_secs(20));
    assert_eq!(a.admin_addr.to_string(), "127.0.0.1:9090");
    assert_eq!(a.ecs_rate_limit, 25);
    assert_eq!(a.worker_threads, 3);
}

#[test]
fn zero_concurrency_is_refused() {
    assert!(Cli::try_parse_from(["run", "--concurrency", "0"]).is_err());
}

#[test]
fn a_zero_rate_limit_is_refused() {
    assert!(Cli::try_parse_from(["run", "--ecs-rate-limit", "0"]).is_err());
}

#[test]
fn an_instance_without_shard_flags_serves_every_query_under_the_main_names() {
    let a = parse(&[]);
    assert_eq!(a.query_selector(), None);
    assert_eq!(a.shard_name(), "main");
    assert_eq!(a.field_manager(), "imagepipeline-operator");
    assert_eq!(a.shard_lease_name(), "imagepipeline-operator-leader");
    assert_eq!(a.object_label(), None, "it watches every object");
}

#[test]
fn a_shard_has_its_own_field_manager_lease_and_object_label() {
    let a = parse(&[
        "--shard",
        "shard1",
        "--watch-label-selector",
        "sharding.fluxcd.io/key=shard1",
    ]);
    assert_eq!(a.query_selector(), Some("sharding.fluxcd.io/key=shard1"));
    assert_eq!(a.shard_name(), "shard1");
    assert_eq!(a.field_manager(), "imagepipeline-operator-shard1");
    assert_eq!(a.shard_lease_name(), "imagepipeline-operator-leader-shard1");
    assert_eq!(
        a.object_label().as_deref(),
        Some("shard.ecs.mirror.io/shard1")
    );
    // The main instance of a sharded installation keeps its names and labels its objects.
    let main = parse(&["--watch-label-selector", "!sharding.fluxcd.io/key"]);
    assert_eq!(main.field_manager(), "imagepipeline-operator");
    assert_eq!(
        main.object_label().as_deref(),
        Some("shard.ecs.mirror.io/main")
    );
}

#[test]
fn bad_shard_names_are_refused_with_a_reason() {
    let mut full = vec!["run", "--shard"];
    for bad in ["Shard1", "x-", "main", "", &"a".repeat(64)] {
        full.truncate(2);
        full.push(bad);
        let err = match Cli::try_parse_from(&full) {
            Ok(_) => panic!("{bad:?} accepted"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("shard name") || err.contains("names the instance without --shard"),
            "{bad:?}: {err}"
        );
    }
    let env = parse(&["--shard", "shard-2"]);
    assert_eq!(env.shard.as_deref(), Some("shard-2"));
}

#[test]
fn worker_threads_outside_one_to_256_are_refused() {
    for bad in ["0", "257", "-1", "two"] {
        assert!(
            Cli::try_parse_from(["run", "--worker-threads", bad]).is_err(),
            "--worker-threads {bad} was accepted"
        );
    }
}

/// tokio panics on a `TOKIO_WORKER_THREADS` it cannot read when it picks a thread count
/// itself; every command sets its own, so the variable is never read.
#[test]
fn a_bad_tokio_worker_threads_in_the_environment_is_ignored() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imagepipeline-operator"))
        .args(["run", "--admin-addr", "127.0.0.1:0"])
        .env("TOKIO_WORKER_THREADS", "many")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("run the operator");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "ran without a cluster: {stderr}");
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    assert!(stderr.contains("error"), "no error said: {stderr}");
    for command in [&["crds"][..], &["demo"][..]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_imagepipeline-operator"))
            .args(command)
            .env("TOKIO_WORKER_THREADS", "0")
            .output()
            .expect("run the operator");
        assert!(out.status.success(), "{command:?} failed: {out:?}");
    }
}
