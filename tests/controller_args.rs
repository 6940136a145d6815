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
}

#[test]
fn zero_concurrency_is_refused() {
    assert!(Cli::try_parse_from(["run", "--concurrency", "0"]).is_err());
}

#[test]
fn a_zero_rate_limit_is_refused() {
    assert!(Cli::try_parse_from(["run", "--ecs-rate-limit", "0"]).is_err());
}
