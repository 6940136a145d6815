//! Tests of the Helm chart (`charts/imagepipeline-operator`), the Dockerfile and the docs
//! that describe them.
//!
//! The chart tests run the real `helm` (from `$HELM`, else `.tools/bin/helm` as installed by
//! `.ci/install-tools`, else `helm` on `PATH`). Without helm they print a notice and pass,
//! unless `REQUIRE_HELM=1`, which turns a missing helm into a failure (CI sets it).
//!
//! Every rendered document is parsed into its k8s-openapi type and serialized back: a field
//! the type does not know (a typo, a wrong nesting) is lost on the way and fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::de::DeserializeOwned;
use serde::{Deserialize as _, Serialize};
use serde_json::Value;

const CHART: &str = "charts/imagepipeline-operator";
const RELEASE: &str = "rel";
const NAMESPACE: &str = "ops";
/// The operator's resources are named `<release>-<chart>`.
const FULLNAME: &str = "rel-imagepipeline-operator";
const OPERATOR_USER: &str = "system:serviceaccount:ops:rel-imagepipeline-operator";
const GC_USER: &str = "system:serviceaccount:kube-system:generic-garbage-collector";
const GROUP: &str = "ecs.mirror.io";
/// Oldest Kubernetes the chart supports (ValidatingAdmissionPolicy v1 is GA in 1.30); the
/// project's k8s-openapi feature is v1_33.
const KUBE_VERSION: &str = "1.33.0";

const RRSA: &[&str] = &[
    "ambientCredentials.rrsa.enabled=true",
    "ambientCredentials.rrsa.roleArn=acs:ram::1234567890:role/imagepipeline-reader",
    "ambientCredentials.rrsa.oidcProviderArn=acs:ram::1234567890:oidc-provider/ack-rrsa-c123",
    "ambientCredentials.rrsa.stsRegion=cn-hangzhou",
    "ambientCredentials.rrsa.vpcEndpoint=true",
];

/// The documented toggles, each rendered and linted on its own.
fn scenarios() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("defaults", vec![]),
        ("single watched namespace", vec!["watchNamespaces={team-a}"]),
        (
            "two watched namespaces",
            vec!["watchNamespaces={team-a,team-b}"],
        ),
        ("no CRDs", vec!["crds.install=false"]),
        (
            "ServiceMonitor",
            vec!["metrics.serviceMonitor.enabled=true"],
        ),
        (
            "dashboard and alerts",
            vec![
                "metrics.serviceMonitor.enabled=true",
                "dashboard.enabled=true",
                "prometheusRule.enabled=true",
            ],
        ),
        ("three replicas", vec!["replicaCount=3"]),
        (
            "two shards with a ServiceMonitor",
            vec![
                "sharding.shards={shard1,shard2}",
                "metrics.serviceMonitor.enabled=true",
            ],
        ),
        (
            "admission policy off",
            vec!["admissionPolicy.enabled=false"],
        ),
        ("RRSA", RRSA.to_vec()),
        (
            "one replica without leader election",
            vec!["replicaCount=1", "leaderElection.enabled=false"],
        ),
        (
            "ambient credentials and tuning",
            vec![
                "ambientCredentials.namespaces={platform,ci}",
                "ambientCredentials.namespaceSelector=imagepipeline.ecs.mirror.io/ambient=true",
                "ambientCredentials.accessKey.existingSecret=operator-ak",
                "ecs.endpoint=https://ecs-vpc.cn-hangzhou.aliyuncs.com",
                "ecs.rateLimit=5",
                "concurrency=8",
                "logging.format=text",
                "logging.level=debug",
            ],
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// helm

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    repo_root().join(CHART)
}

fn find_helm() -> Option<PathBuf> {
    if let Some(helm) = std::env::var_os("HELM").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(helm));
    }
    let local = repo_root().join(".tools/bin/helm");
    if local.is_file() {
        return Some(local);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("helm"))
            .find(|candidate| candidate.is_file())
    })
}

/// The helm binary, or `None` after printing why the test is skipped. Panics instead when
/// `REQUIRE_HELM=1`.
fn helm_or_skip(test: &str) -> Option<PathBuf> {
    let helm = find_helm();
    if helm.is_none() {
        if std::env::var("REQUIRE_HELM").as_deref() == Ok("1") {
            panic!("REQUIRE_HELM=1 but no helm found: run .ci/install-tools or set HELM");
        }
        // Written to the real stderr (not through the test harness's capture) so that the
        // skip is visible in a normal `cargo test` run.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED chart test `{test}`: helm not found (set HELM, run .ci/install-tools, \
             or set REQUIRE_HELM=1 to make this a failure)"
        );
    }
    helm
}

fn set_args(sets: &[&str]) -> Vec<String> {
    sets.iter()
        .flat_map(|s| ["--set".to_string(), s.to_string()])
        .collect()
}

fn run_helm(helm: &Path, args: &[String]) -> Output {
    Command::new(helm)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", helm.display()))
}

fn template_args(chart: &Path, sets: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "template".into(),
        RELEASE.into(),
        chart.display().to_string(),
        "--namespace".into(),
        NAMESPACE.into(),
        "--kube-version".into(),
        KUBE_VERSION.into(),
    ];
    args.extend(set_args(sets));
    args
}

/// `helm template` of the chart at `chart` with `--set` values; every document as JSON.
fn render_chart(helm: &Path, chart: &Path, sets: &[&str]) -> Vec<Value> {
    let out = run_helm(helm, &template_args(chart, sets));
    assert!(
        out.status.success(),
        "helm template {sets:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_documents(&String::from_utf8_lossy(&out.stdout))
}

fn render(helm: &Path, sets: &[&str]) -> Vec<Value> {
    render_chart(helm, &chart_dir(), sets)
}

/// `helm template` that must fail; returns its error output.
fn render_error(helm: &Path, sets: &[&str]) -> String {
    let out = run_helm(helm, &template_args(&chart_dir(), sets));
    assert!(
        !out.status.success(),
        "helm template {sets:?} should have failed"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn parse_documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("invalid YAML rendered: {e}")))
        .filter(|doc| !doc.is_null())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// documents

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or_default()
}

fn namespace(doc: &Value) -> &str {
    doc["metadata"]["namespace"].as_str().unwrap_or_default()
}

fn all_of<'a>(docs: &'a [Value], wanted: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| kind(d) == wanted).collect()
}

fn one_of<'a>(docs: &'a [Value], wanted: &str) -> &'a Value {
    let found = all_of(docs, wanted);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {wanted}, found {}",
        found.len()
    );
    found[0]
}

/// Parses `doc` into `K` and back; fails when anything in `doc` did not survive, i.e. a field
/// `K` does not know. Nulls are dropped first (the API server ignores them too); numbers
/// compare by value (`500` and `500.0` are the same schema bound).
fn typed<K: DeserializeOwned + Serialize>(doc: &Value) -> K {
    let what = format!("{} {}", kind(doc), name(doc));
    let parsed: K = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{what} does not parse as its Kubernetes type: {e}"));
    let back = serde_json::to_value(&parsed).unwrap_or_else(|e| panic!("{what}: {e}"));
    if let Some(diff) = first_difference(&without_nulls(doc), &back, "") {
        panic!("{what} has a field its Kubernetes type does not know (or a wrong value): {diff}");
    }
    parsed
}

fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

fn first_difference(original: &Value, round_trip: &Value, path: &str) -> Option<String> {
    match (original, round_trip) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|k| {
                let here = format!("{path}.{k}");
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => first_difference(x, y, &here),
                    (Some(x), None) => Some(format!("{here} = {x} is unknown")),
                    (None, Some(y)) => Some(format!("{here} = {y} appeared")),
                    (None, None) => None,
                }
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]"))),
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => None,
        (a, b) if a == b => None,
        (a, b) => Some(format!("{path}: {a} became {b}")),
    }
}

fn check<K: DeserializeOwned + Serialize>(doc: &Value) {
    typed::<K>(doc);
}

/// Parses every document into its type; the ServiceMonitor and the PrometheusRule (not
/// k8s-openapi types) are checked loosely.
fn check_every_document_is_typed(docs: &[Value]) {
    for doc in docs {
        match kind(doc) {
            "Deployment" => check::<Deployment>(doc),
            "ServiceAccount" => check::<ServiceAccount>(doc),
            "Service" => check::<Service>(doc),
            "ClusterRole" => check::<ClusterRole>(doc),
            "ClusterRoleBinding" => check::<ClusterRoleBinding>(doc),
            "Role" => check::<Role>(doc),
            "RoleBinding" => check::<RoleBinding>(doc),
            "PodDisruptionBudget" => check::<PodDisruptionBudget>(doc),
            "ValidatingAdmissionPolicy" => check::<ValidatingAdmissionPolicy>(doc),
            "ValidatingAdmissionPolicyBinding" => check::<ValidatingAdmissionPolicyBinding>(doc),
            "CustomResourceDefinition" => check::<CustomResourceDefinition>(doc),
            "ServiceMonitor" => check_service_monitor_loosely(doc),
            "ConfigMap" => check::<ConfigMap>(doc),
            "PrometheusRule" => check_prometheus_rule_loosely(doc),
            other => panic!("the chart renders a {other} that this test does not know"),
        }
    }
}

fn check_service_monitor_loosely(doc: &Value) {
    assert_eq!(doc["apiVersion"], "monitoring.coreos.com/v1");
    let spec = doc["spec"].as_object().expect("ServiceMonitor has a spec");
    let known = ["selector", "endpoints", "namespaceSelector", "jobLabel"];
    for key in spec.keys() {
        assert!(
            known.contains(&key.as_str()),
            "unexpected ServiceMonitor spec.{key}"
        );
    }
    let endpoint = &doc["spec"]["endpoints"][0];
    for key in endpoint.as_object().expect("an endpoint").keys() {
        let known = [
            "port",
            "path",
            "interval",
            "scrapeTimeout",
            "scheme",
            "honorLabels",
        ];
        assert!(
            known.contains(&key.as_str()),
            "unexpected ServiceMonitor endpoint.{key}"
        );
    }
}

/// A PrometheusRule as the Prometheus Operator's schema has it: groups of named rules, each
/// an alert or a recording with an `expr`, and only the fields the schema knows.
fn check_prometheus_rule_loosely(doc: &Value) {
    assert_eq!(doc["apiVersion"], "monitoring.coreos.com/v1");
    let spec = doc["spec"].as_object().expect("PrometheusRule has a spec");
    assert_eq!(spec.keys().collect::<Vec<_>>(), ["groups"]);
    for group in doc["spec"]["groups"].as_array().expect("groups") {
        assert!(group["name"].is_string(), "a group has a name");
        for rule in group["rules"].as_array().expect("rules") {
            let rule = rule.as_object().expect("a rule");
            for key in rule.keys() {
                let known = ["alert", "record", "expr", "for", "labels", "annotations"];
                assert!(known.contains(&key.as_str()), "unexpected rule field {key}");
            }
            assert!(
                rule.contains_key("alert") != rule.contains_key("record"),
                "a rule is an alert or a recording: {rule:?}"
            );
            assert!(rule["expr"].is_string(), "{rule:?}");
        }
    }
}

fn deployment(docs: &[Value]) -> Deployment {
    typed(one_of(docs, "Deployment"))
}

fn pod_spec(deployment: &Deployment) -> PodSpec {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("the Deployment has a pod spec")
}

fn operator_container(deployment: &Deployment) -> Container {
    let pod = pod_spec(deployment);
    assert_eq!(pod.containers.len(), 1, "one container");
    pod.containers[0].clone()
}

fn args(deployment: &Deployment) -> Vec<String> {
    operator_container(deployment).args.unwrap_or_default()
}

fn env_value(container: &Container, wanted: &str) -> Option<String> {
    container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == wanted)
        .map(|e| {
            e.value
                .clone()
                .unwrap_or_else(|| "<from a reference>".into())
        })
}

// ---------------------------------------------------------------------------------------------
// lint and types

#[test]
fn chart_lints_clean_with_default_values_and_every_toggle() {
    let Some(helm) = helm_or_skip("chart_lints_clean_with_default_values_and_every_toggle") else {
        return;
    };
    for (scenario, sets) in scenarios() {
        let mut lint_args = vec![
            "lint".to_string(),
            "--strict".into(),
            chart_dir().display().to_string(),
        ];
        lint_args.extend(set_args(&sets));
        let out = run_helm(&helm, &lint_args);
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "helm lint ({scenario}) failed:\n{report}"
        );
        assert!(
            !report.contains("[WARNING]") && !report.contains("[ERROR]"),
            "helm lint ({scenario}) is not clean:\n{report}"
        );
    }
}

#[test]
fn every_rendered_document_parses_into_its_kubernetes_type_without_unknown_fields() {
    let Some(helm) = helm_or_skip("every_rendered_document_parses_into_its_kubernetes_type") else {
        return;
    };
    for (_, sets) in scenarios() {
        check_every_document_is_typed(&render(&helm, &sets));
    }
}

#[test]
fn unknown_field_check_catches_a_misspelled_field() {
    let doc = serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "x"}, "automountServiceAcountToken": false,
    });
    let caught = std::panic::catch_unwind(|| typed::<ServiceAccount>(&doc));
    assert!(
        caught.is_err(),
        "a misspelled field must fail the typed round trip"
    );
}

// ---------------------------------------------------------------------------------------------
// Deployment

#[test]
fn deployment_runs_non_root_read_only_without_capabilities() {
    let Some(helm) = helm_or_skip("deployment_runs_non_root_read_only_without_capabilities") else {
        return;
    };
    let deploy = deployment(&render(&helm, &[]));
    let pod = pod_spec(&deploy);
    let pod_sc = pod.security_context.clone().expect("pod securityContext");
    assert_eq!(pod_sc.run_as_non_root, Some(true));
    assert_eq!(pod_sc.run_as_user, Some(65532));
    assert_eq!(
        pod_sc.seccomp_profile.map(|p| p.type_).as_deref(),
        Some("RuntimeDefault")
    );

    let sc = operator_container(&deploy)
        .security_context
        .expect("container securityContext");
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.run_as_user, Some(65532), "a fixed non-root UID");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_ne!(sc.privileged, Some(true));
    let caps = sc.capabilities.expect("capabilities");
    assert_eq!(caps.drop, Some(vec!["ALL".to_string()]));
    assert!(
        caps.add.unwrap_or_default().is_empty(),
        "no capability added back"
    );
    assert_eq!(
        sc.seccomp_profile.map(|p| p.type_).as_deref(),
        Some("RuntimeDefault")
    );

    // The operator needs an API token: its pod mounts one, its ServiceAccount does not
    // hand one to every other pod.
    assert_eq!(pod.automount_service_account_token, Some(true));
    assert_eq!(pod.service_account_name.as_deref(), Some(FULLNAME));
    assert!(pod.host_network.is_none() && pod.host_pid.is_none());
}

#[test]
fn service_account_does_not_automount_its_token_for_other_pods() {
    let Some(helm) = helm_or_skip("service_account_does_not_automount_its_token") else {
        return;
    };
    let sa: ServiceAccount = typed(one_of(&render(&helm, &[]), "ServiceAccount"));
    assert_eq!(sa.metadata.name.as_deref(), Some(FULLNAME));
    assert_eq!(sa.automount_service_account_token, Some(false));
}

#[test]
fn deployment_probes_health_and_readiness_and_sets_resources() {
    let Some(helm) = helm_or_skip("deployment_probes_health_and_readiness_and_sets_resources")
    else {
        return;
    };
    let deploy = deployment(&render(&helm, &[]));
    let container = operator_container(&deploy);
    let ports = container.ports.clone().unwrap_or_default();
    assert!(
        ports
            .iter()
            .any(|p| p.container_port == 8080 && p.name.as_deref() == Some("http-admin")),
        "admin port 8080 named http-admin: {ports:?}"
    );
    let probe_path = |probe: Option<k8s_openapi::api::core::v1::Probe>| {
        let get = probe.and_then(|p| p.http_get).expect("an httpGet probe");
        (
            get.path.unwrap_or_default(),
            serde_json::to_value(get.port).unwrap_or_default(),
        )
    };
    assert_eq!(
        probe_path(container.liveness_probe.clone()),
        ("/healthz".into(), Value::from("http-admin"))
    );
    assert_eq!(
        probe_path(container.readiness_probe.clone()),
        ("/readyz".into(), Value::from("http-admin"))
    );

    let resources = container.resources.expect("resources");
    for part in [resources.requests, resources.limits] {
        let part = part.expect("requests and limits");
        assert!(
            part.contains_key("cpu") && part.contains_key("memory"),
            "{part:?}"
        );
    }
    let grace = pod_spec(&deploy).termination_grace_period_seconds;
    assert!(
        grace.is_some_and(|g| g > 0),
        "terminationGracePeriodSeconds set"
    );
}

#[test]
fn deployment_passes_the_pod_namespace_and_name_from_the_downward_api() {
    let Some(helm) = helm_or_skip("deployment_passes_the_pod_namespace_and_name") else {
        return;
    };
    let container = operator_container(&deployment(&render(&helm, &[])));
    for (var, field) in [
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_NAME", "metadata.name"),
    ] {
        let env = container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == var)
            .expect(var);
        let path = env
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| &f.field_path);
        assert_eq!(path.map(String::as_str), Some(field), "{var}");
    }
}

#[test]
fn default_deployment_runs_the_operator_with_leader_election() {
    let Some(helm) = helm_or_skip("default_deployment_runs_the_operator_with_leader_election")
    else {
        return;
    };
    let deploy = deployment(&render(&helm, &[]));
    assert_eq!(deploy.spec.as_ref().and_then(|s| s.replicas), Some(2));
    assert_eq!(
        args(&deploy),
        [
            "run",
            "--log-format=json",
            "--log-level=info",
            "--leader-election",
            "--lease-name=rel-imagepipeline-operator-leader",
            "--admin-addr=0.0.0.0:8080",
        ]
    );
    let image = operator_container(&deploy).image.unwrap_or_default();
    assert_eq!(
        image,
        "ghcr.io/imagepipeline-operator/imagepipeline-operator:0.1.0"
    );
}

#[test]
fn deployment_args_follow_the_values() {
    let Some(helm) = helm_or_skip("deployment_args_follow_the_values") else {
        return;
    };
    let mut sets = scenarios()
        .into_iter()
        .find(|(s, _)| *s == "ambient credentials and tuning")
        .map(|(_, sets)| sets)
        .unwrap_or_default();
    sets.push("watchNamespaces={team-a,team-b}");
    let deploy = deployment(&render(&helm, &sets));
    let args = args(&deploy);
    for expected in [
        "--namespace=team-a",
        "--namespace=team-b",
        "--concurrency=8",
        "--ambient-credentials-namespaces=platform,ci",
        "--ambient-credentials-namespace-selector=imagepipeline.ecs.mirror.io/ambient=true",
        "--ecs-endpoint=https://ecs-vpc.cn-hangzhou.aliyuncs.com",
        "--ecs-rate-limit=5",
        "--log-format=text",
        "--log-level=debug",
    ] {
        assert!(
            args.iter().any(|a| a == expected),
            "missing {expected} in {args:?}"
        );
    }
    let container = operator_container(&deploy);
    for var in [
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    ] {
        let env = container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == var)
            .expect(var);
        let secret = env
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref());
        assert_eq!(
            secret.map(|s| s.name.as_str()),
            Some("operator-ak"),
            "{var} from the Secret"
        );
    }
}

#[test]
fn values_that_would_run_two_writers_are_refused() {
    let Some(helm) = helm_or_skip("values_that_would_run_two_writers_are_refused") else {
        return;
    };
    let err = render_error(&helm, &["replicaCount=2", "leaderElection.enabled=false"]);
    assert!(err.contains("leaderElection.enabled=true"), "{err}");
}

#[test]
fn rrsa_without_a_role_is_refused() {
    let Some(helm) = helm_or_skip("rrsa_without_a_role_is_refused") else {
        return;
    };
    let err = render_error(&helm, &["ambientCredentials.rrsa.enabled=true"]);
    assert!(
        err.contains("ambientCredentials.rrsa.roleArn is required"),
        "{err}"
    );
}

#[test]
fn rrsa_mounts_an_sts_token_and_sets_the_role_environment() {
    let Some(helm) = helm_or_skip("rrsa_mounts_an_sts_token_and_sets_the_role_environment") else {
        return;
    };
    let docs = render(&helm, RRSA);
    let deploy = deployment(&docs);
    let container = operator_container(&deploy);
    let token_dir = "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens";
    for (var, value) in [
        (
            "ALIBABA_CLOUD_ROLE_ARN",
            "acs:ram::1234567890:role/imagepipeline-reader",
        ),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            "acs:ram::1234567890:oidc-provider/ack-rrsa-c123",
        ),
        (
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
            &format!("{token_dir}/token"),
        ),
        ("ALIBABA_CLOUD_STS_REGION", "cn-hangzhou"),
        ("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", "true"),
    ] {
        assert_eq!(env_value(&container, var).as_deref(), Some(value), "{var}");
    }
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == token_dir);
    assert_eq!(
        mount.and_then(|m| m.read_only),
        Some(true),
        "token mounted read-only"
    );

    let volumes = pod_spec(&deploy).volumes.unwrap_or_default();
    let token = volumes
        .iter()
        .filter_map(|v| v.projected.as_ref())
        .flat_map(|p| p.sources.iter().flatten())
        .find_map(|s| s.service_account_token.as_ref())
        .expect("a projected ServiceAccount token");
    assert_eq!(token.audience.as_deref(), Some("sts.aliyuncs.com"));
    assert_eq!(token.path, "token");
    assert_eq!(token.expiration_seconds, Some(3600));

    let sa: ServiceAccount = typed(one_of(&docs, "ServiceAccount"));
    let annotations = sa.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations
            .get("pod-identity.alibabacloud.com/role-name")
            .map(String::as_str),
        Some("imagepipeline-reader")
    );
}

#[test]
fn several_replicas_get_a_disruption_budget_and_a_topology_spread() {
    let Some(helm) = helm_or_skip("several_replicas_get_a_disruption_budget") else {
        return;
    };
    let docs = render(&helm, &["replicaCount=3"]);
    let pdb: PodDisruptionBudget = typed(one_of(&docs, "PodDisruptionBudget"));
    let spec = pdb.spec.expect("PDB spec");
    assert!(spec.max_unavailable.is_some() || spec.min_available.is_some());
    let selector = spec
        .selector
        .and_then(|s| s.match_labels)
        .unwrap_or_default();
    assert_eq!(
        selector
            .get("app.kubernetes.io/instance")
            .map(String::as_str),
        Some(RELEASE)
    );

    let deploy = deployment(&docs);
    assert_eq!(deploy.spec.as_ref().and_then(|s| s.replicas), Some(3));
    let spread = pod_spec(&deploy)
        .topology_spread_constraints
        .unwrap_or_default();
    assert!(
        spread
            .iter()
            .any(|c| c.topology_key == "kubernetes.io/hostname"),
        "replicas spread over nodes: {spread:?}"
    );
}

#[test]
fn a_single_replica_has_no_disruption_budget_and_no_lease() {
    let Some(helm) = helm_or_skip("a_single_replica_has_no_disruption_budget_and_no_lease") else {
        return;
    };
    let docs = render(&helm, &["replicaCount=1", "leaderElection.enabled=false"]);
    assert!(all_of(&docs, "PodDisruptionBudget").is_empty());
    let args = args(&deployment(&docs));
    assert!(
        !args
            .iter()
            .any(|a| a.starts_with("--leader-election") || a.starts_with("--lease"))
    );
    assert!(
        pod_spec(&deployment(&docs))
            .topology_spread_constraints
            .is_none()
    );
}

// ---------------------------------------------------------------------------------------------
// RBAC

/// `<scope> <group>/<resource>` → verbs, over every rule bound to the operator's
/// ServiceAccount; scope is `cluster` or the namespace of a Role.
type Grants = BTreeMap<String, BTreeSet<String>>;

/// The rules bound to the operator's ServiceAccount, with the scope they apply in.
fn operator_rules(docs: &[Value]) -> Vec<(String, PolicyRule)> {
    let binds_operator = |subjects: &Option<Vec<k8s_openapi::api::rbac::v1::Subject>>| {
        subjects.iter().flatten().any(|s| {
            s.kind == "ServiceAccount"
                && s.name == FULLNAME
                && s.namespace.as_deref() == Some(NAMESPACE)
        })
    };
    let cluster_role = |role: &str| -> Vec<PolicyRule> {
        let found = all_of(docs, "ClusterRole")
            .into_iter()
            .find(|d| name(d) == role);
        let role: ClusterRole = typed(found.unwrap_or_else(|| panic!("ClusterRole {role}")));
        role.rules.unwrap_or_default()
    };
    let mut rules = Vec::new();
    for doc in all_of(docs, "ClusterRoleBinding") {
        let binding: ClusterRoleBinding = typed(doc);
        if binds_operator(&binding.subjects) {
            assert_eq!(binding.role_ref.kind, "ClusterRole");
            for rule in cluster_role(&binding.role_ref.name) {
                rules.push(("cluster".to_string(), rule));
            }
        }
    }
    for doc in all_of(docs, "RoleBinding") {
        let binding: RoleBinding = typed(doc);
        if !binds_operator(&binding.subjects) {
            continue;
        }
        let ns = namespace(doc).to_string();
        let role_rules = if binding.role_ref.kind == "ClusterRole" {
            cluster_role(&binding.role_ref.name)
        } else {
            let found = all_of(docs, "Role")
                .into_iter()
                .find(|d| name(d) == binding.role_ref.name && namespace(d) == ns);
            let role: Role = typed(found.unwrap_or_else(|| panic!("Role {ns}/{}", name(doc))));
            role.rules.unwrap_or_default()
        };
        rules.extend(role_rules.into_iter().map(|r| (ns.clone(), r)));
    }
    rules
}

fn grants(rules: &[(String, PolicyRule)]) -> Grants {
    let mut grants = Grants::new();
    for (scope, rule) in rules {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                grants
                    .entry(format!("{scope} {group}/{resource}"))
                    .or_default()
                    .extend(rule.verbs.iter().cloned());
            }
        }
    }
    grants
}

fn expect_grants(entries: &[(&str, &str)]) -> Grants {
    entries
        .iter()
        .map(|(key, verbs)| {
            (
                key.to_string(),
                verbs.split(' ').map(String::from).collect(),
            )
        })
        .collect()
}

/// What the controller does in a namespace it watches; `scope` is where.
fn watched_grants(scope: &str) -> Vec<(String, &'static str)> {
    vec![
        (
            format!("{scope} {GROUP}/imagepipelinequeries"),
            "list watch",
        ),
        (
            format!("{scope} {GROUP}/imagepipelinequeries/status"),
            "patch",
        ),
        (
            format!("{scope} {GROUP}/imagepipelines"),
            "get list watch create patch delete",
        ),
        (format!("{scope} /secrets"), "get list watch"),
        (format!("{scope} events.k8s.io/events"), "create patch"),
    ]
}

fn assert_no_wildcards(rules: &[(String, PolicyRule)]) {
    for (scope, rule) in rules {
        let all = rule
            .verbs
            .iter()
            .chain(rule.resources.iter().flatten())
            .chain(rule.api_groups.iter().flatten());
        for item in all {
            assert!(!item.contains('*'), "wildcard in a {scope} rule: {rule:?}");
        }
        assert!(
            rule.non_resource_urls.is_none(),
            "no non-resource URLs: {rule:?}"
        );
    }
}

#[test]
fn rbac_grants_exactly_the_verbs_the_operator_uses() {
    let Some(helm) = helm_or_skip("rbac_grants_exactly_the_verbs_the_operator_uses") else {
        return;
    };
    let rules = operator_rules(&render(&helm, &[]));
    assert_no_wildcards(&rules);
    let mut expected: Vec<(String, &str)> = watched_grants("cluster");
    expected.push((
        format!("{NAMESPACE} coordination.k8s.io/leases"),
        "get create patch",
    ));
    let expected = expected
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect::<Vec<_>>();
    assert_eq!(grants(&rules), expect_grants(&expected));
}

#[test]
fn rbac_reads_no_crds_and_restricts_the_lease_to_its_name() {
    let Some(helm) = helm_or_skip("rbac_reads_no_crds_and_restricts_the_lease_to_its_name") else {
        return;
    };
    let rules = operator_rules(&render(&helm, &[]));
    for (_, rule) in &rules {
        let resources = rule.resources.clone().unwrap_or_default();
        let names: BTreeSet<String> = rule.resource_names.iter().flatten().cloned().collect();
        assert!(
            !resources.contains(&"customresourcedefinitions".to_string()),
            "the operator checks its CRDs by listing its own resources, not by reading CRDs"
        );
        if resources.contains(&"leases".to_string()) {
            if rule.verbs == ["create"] {
                assert!(names.is_empty(), "create cannot be limited by name");
            } else {
                assert_eq!(
                    names,
                    BTreeSet::from([format!("{FULLNAME}-leader")]),
                    "{rule:?}"
                );
            }
        }
    }
}

#[test]
fn rbac_never_lets_the_operator_write_secrets() {
    let Some(helm) = helm_or_skip("rbac_never_lets_the_operator_write_secrets") else {
        return;
    };
    for (scenario, sets) in scenarios() {
        let docs = render(&helm, &sets);
        let rules = operator_rules(&docs);
        assert_no_wildcards(&rules);
        for (key, verbs) in grants(&rules) {
            if key.ends_with(" /secrets") {
                let read: BTreeSet<String> = ["get", "list", "watch"].map(String::from).into();
                assert!(verbs.is_subset(&read), "{scenario}: {key} {verbs:?}");
            }
        }
    }
}

#[test]
fn watching_named_namespaces_uses_a_role_in_each_and_nothing_cluster_wide() {
    let Some(helm) = helm_or_skip("watching_named_namespaces_uses_a_role_in_each") else {
        return;
    };
    let rules = operator_rules(&render(&helm, &["watchNamespaces={team-a,team-b}"]));
    assert_no_wildcards(&rules);
    let mut expected = watched_grants("team-a");
    expected.extend(watched_grants("team-b"));
    expected.push((
        format!("{NAMESPACE} coordination.k8s.io/leases"),
        "get create patch",
    ));
    let expected = expected
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect::<Vec<_>>();
    assert_eq!(grants(&rules), expect_grants(&expected));
}

#[test]
fn namespace_reads_come_only_with_an_ambient_credentials_selector() {
    let Some(helm) = helm_or_skip("namespace_reads_come_only_with_an_ambient_selector") else {
        return;
    };
    let key = "cluster /namespaces";
    let without = grants(&operator_rules(&render(&helm, &[])));
    assert!(!without.contains_key(key));
    let selector = "ambientCredentials.namespaceSelector=imagepipeline.ecs.mirror.io/ambient=true";
    let with = grants(&operator_rules(&render(&helm, &[selector])));
    assert_eq!(with.get(key), expect_grants(&[(key, "list")]).get(key));
}

#[test]
fn leader_election_off_drops_the_lease_permissions() {
    let Some(helm) = helm_or_skip("leader_election_off_drops_the_lease_permissions") else {
        return;
    };
    let docs = render(&helm, &["replicaCount=1", "leaderElection.enabled=false"]);
    let grants = grants(&operator_rules(&docs));
    assert!(!grants.keys().any(|k| k.contains("leases")), "{grants:?}");
}

#[test]
fn aggregated_roles_let_view_read_and_edit_write_queries_but_never_pipelines() {
    let Some(helm) = helm_or_skip("aggregated_roles_let_view_read_and_edit_write_queries") else {
        return;
    };
    let docs = render(&helm, &[]);
    let aggregated = |label: &str| -> Grants {
        let rules = all_of(&docs, "ClusterRole")
            .into_iter()
            .map(typed::<ClusterRole>)
            .filter(|r| {
                let labels = r.metadata.labels.clone().unwrap_or_default();
                labels.get(&format!("rbac.authorization.k8s.io/aggregate-to-{label}"))
                    == Some(&"true".to_string())
            })
            .flat_map(|r| r.rules.unwrap_or_default())
            .map(|r| ("cluster".to_string(), r))
            .collect::<Vec<_>>();
        assert_no_wildcards(&rules);
        grants(&rules)
    };
    let read = "get list watch";
    let queries = format!("cluster {GROUP}/imagepipelinequeries");
    let pipelines = format!("cluster {GROUP}/imagepipelines");
    let view = aggregated("view");
    assert_eq!(view.get(&queries), expect_grants(&[("q", read)]).get("q"));
    assert_eq!(view.get(&pipelines), expect_grants(&[("p", read)]).get("p"));
    for role in ["edit", "admin"] {
        let grants = aggregated(role);
        let writes = "get list watch create update patch delete deletecollection";
        assert_eq!(
            grants.get(&queries),
            expect_grants(&[("q", writes)]).get("q"),
            "{role}"
        );
        assert_eq!(
            grants.get(&pipelines),
            expect_grants(&[("p", read)]).get("p"),
            "{role}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// admission policy

fn admission_policy(docs: &[Value]) -> ValidatingAdmissionPolicy {
    typed(one_of(docs, "ValidatingAdmissionPolicy"))
}

#[test]
fn admission_policy_denies_pipeline_writes_by_anyone_but_the_operator() {
    let Some(helm) = helm_or_skip("admission_policy_denies_pipeline_writes") else {
        return;
    };
    let docs = render(&helm, &[]);
    let policy = admission_policy(&docs);
    let policy_name = policy.metadata.name.clone().unwrap_or_default();
    let spec = policy.spec.expect("policy spec");
    assert_eq!(spec.failure_policy.as_deref(), Some("Fail"));
    let rules = spec
        .match_constraints
        .and_then(|m| m.resource_rules)
        .unwrap_or_default();
    assert_eq!(rules.len(), 1);
    let rule = &rules[0];
    assert_eq!(rule.api_groups.as_deref(), Some(&[GROUP.to_string()][..]));
    assert_eq!(
        rule.resources.as_deref(),
        Some(&["imagepipelines".to_string()][..])
    );
    let ops: BTreeSet<&str> = rule
        .operations
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    assert_eq!(ops, BTreeSet::from(["CREATE", "UPDATE", "DELETE"]));

    let validations = spec.validations.unwrap_or_default();
    assert_eq!(validations.len(), 1);
    let validation = &validations[0];
    let expression = &validation.expression;
    check_cel(expression).unwrap_or_else(|e| panic!("{e}: {expression}"));
    assert!(
        expression.contains("request.userInfo.username"),
        "{expression}"
    );
    assert!(
        expression.contains(&format!("\"{OPERATOR_USER}\"")),
        "{expression}"
    );
    assert!(
        expression.contains(&format!("\"{GC_USER}\"")),
        "{expression}"
    );
    // `object` is null on DELETE: the decision must not depend on it.
    assert!(!expression.contains("object"), "{expression}");
    let message = validation.message.clone().unwrap_or_default();
    assert!(
        message.contains("mirrored") && message.contains("ImagePipelineQuery"),
        "{message}"
    );
    let message_expression = validation.message_expression.clone().unwrap_or_default();
    check_cel(&message_expression).unwrap_or_else(|e| panic!("{e}: {message_expression}"));

    let binding: ValidatingAdmissionPolicyBinding =
        typed(one_of(&docs, "ValidatingAdmissionPolicyBinding"));
    let binding = binding.spec.expect("binding spec");
    assert_eq!(binding.policy_name.as_deref(), Some(policy_name.as_str()));
    assert_eq!(binding.validation_actions, Some(vec!["Deny".to_string()]));
}

#[test]
fn admission_policy_is_limited_to_the_watched_namespaces() {
    let Some(helm) = helm_or_skip("admission_policy_is_limited_to_the_watched_namespaces") else {
        return;
    };
    let policy = admission_policy(&render(&helm, &["watchNamespaces={team-a,team-b}"]));
    let selector = policy
        .spec
        .and_then(|s| s.match_constraints)
        .and_then(|m| m.namespace_selector)
        .and_then(|s| s.match_expressions)
        .unwrap_or_default();
    assert_eq!(selector.len(), 1);
    assert_eq!(selector[0].key, "kubernetes.io/metadata.name");
    assert_eq!(selector[0].operator, "In");
    assert_eq!(
        selector[0].values,
        Some(vec!["team-a".to_string(), "team-b".to_string()])
    );
}

#[test]
fn admission_policy_can_be_turned_off() {
    let Some(helm) = helm_or_skip("admission_policy_can_be_turned_off") else {
        return;
    };
    let docs = render(&helm, &["admissionPolicy.enabled=false"]);
    assert!(all_of(&docs, "ValidatingAdmissionPolicy").is_empty());
    assert!(all_of(&docs, "ValidatingAdmissionPolicyBinding").is_empty());
}

/// Identifiers a ValidatingAdmissionPolicy expression may start from.
const CEL_VARIABLES: &[&str] = &[
    "request",
    "object",
    "oldObject",
    "params",
    "variables",
    "authorizer",
    "namespaceObject",
];
/// Literals, operators spelled as words, and global functions.
const CEL_WORDS: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "has",
    "size",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "type",
    "dyn",
    "duration",
    "timestamp",
    "matches",
];

/// A small syntax check of a CEL expression: balanced brackets, closed string literals, no
/// dangling operator, and every free identifier a known variable, literal or function.
/// (Field names after a `.` are free-form.) Not a full parser: it catches the typos a
/// template can make.
fn check_cel(expression: &str) -> Result<(), String> {
    let chars: Vec<char> = expression.chars().collect();
    let mut stack = Vec::new();
    let mut last_token = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                i += 1;
                continue;
            }
            '\'' | '"' => {
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => return Err(format!("unclosed string literal at {i}")),
                        Some('\\') => j += 2,
                        Some(&q) if q == c => break,
                        Some(_) => j += 1,
                    }
                }
                i = j + 1;
                last_token = "literal".into();
                continue;
            }
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.pop() != Some(open) {
                    return Err(format!("unbalanced {c:?} at {i}"));
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let selected = last_token == ".";
                if !selected
                    && !CEL_VARIABLES.contains(&word.as_str())
                    && !CEL_WORDS.contains(&word.as_str())
                {
                    return Err(format!("unknown identifier `{word}`"));
                }
                last_token = word;
                continue;
            }
            c if c.is_ascii_digit() => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                last_token = "literal".into();
                continue;
            }
            '.' | ',' | '+' | '-' | '*' | '/' | '%' | '!' | '<' | '>' | '=' | '&' | '|' | '?'
            | ':' => {}
            other => return Err(format!("unexpected character {other:?} at {i}")),
        }
        last_token = c.to_string();
        i += 1;
    }
    if let Some(open) = stack.pop() {
        return Err(format!("unclosed {open:?}"));
    }
    if last_token.is_empty() {
        return Err("empty expression".into());
    }
    let dangling = [
        ".", ",", "+", "-", "*", "/", "%", "!", "<", ">", "=", "&", "|", "?", ":",
    ];
    if dangling.contains(&last_token.as_str()) {
        return Err(format!("expression ends with {last_token:?}"));
    }
    Ok(())
}

#[test]
fn cel_check_rejects_broken_expressions_and_accepts_policy_expressions() {
    assert!(check_cel("request.userInfo.username in ['a', \"b\"]").is_ok());
    assert!(check_cel("has(object.spec) && object.spec.x.size() <= 20").is_ok());
    assert!(check_cel("'it\\'s ' + request.operation").is_ok());
    assert!(
        check_cel("request.userInfo.username in ['a'").is_err(),
        "unclosed bracket"
    );
    assert!(
        check_cel("request.userInfo.username in ['a)").is_err(),
        "unclosed string"
    );
    assert!(
        check_cel("(request.operation == 'DELETE'))").is_err(),
        "extra paren"
    );
    assert!(
        check_cel("requst.userInfo.username == 'a'").is_err(),
        "unknown identifier"
    );
    assert!(
        check_cel("request.userInfo.username ==").is_err(),
        "dangling operator"
    );
    assert!(check_cel("  ").is_err(), "empty");
}

// ---------------------------------------------------------------------------------------------
// metrics

#[test]
fn metrics_service_exposes_the_admin_port_and_service_monitor_scrapes_it() {
    let Some(helm) = helm_or_skip("metrics_service_exposes_the_admin_port") else {
        return;
    };
    let docs = render(&helm, &[]);
    assert!(
        all_of(&docs, "ServiceMonitor").is_empty(),
        "ServiceMonitor is opt-in"
    );
    let service: Service = typed(one_of(&docs, "Service"));
    let ports = service.spec.and_then(|s| s.ports).unwrap_or_default();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].name.as_deref(), Some("http-admin"));

    let docs = render(&helm, &["metrics.serviceMonitor.enabled=true"]);
    let monitor = one_of(&docs, "ServiceMonitor");
    check_service_monitor_loosely(monitor);
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http-admin");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"],
        RELEASE
    );
    assert_eq!(
        monitor["spec"]["endpoints"][0]["honorLabels"], true,
        "per-query series keep the query's namespace label, which the dashboard and alerts use"
    );
}

fn chart_file(path: &str) -> String {
    read(&format!("{CHART}/{path}"))
}

#[test]
fn dashboard_and_alerts_are_opt_in() {
    let Some(helm) = helm_or_skip("dashboard_and_alerts_are_opt_in") else {
        return;
    };
    let docs = render(&helm, &[]);
    assert!(
        all_of(&docs, "ConfigMap").is_empty(),
        "no dashboard by default"
    );
    assert!(
        all_of(&docs, "PrometheusRule").is_empty(),
        "no alerts by default"
    );
}

#[test]
fn dashboard_ships_as_a_configmap_the_grafana_sidecar_imports() {
    let Some(helm) = helm_or_skip("dashboard_ships_as_a_configmap") else {
        return;
    };
    let docs = render(&helm, &["dashboard.enabled=true"]);
    let map: ConfigMap = typed(one_of(&docs, "ConfigMap"));
    assert_eq!(
        map.metadata.name.as_deref(),
        Some("rel-imagepipeline-operator-dashboard")
    );
    assert_eq!(map.metadata.namespace.as_deref(), Some(NAMESPACE));
    let labels = map.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("grafana_dashboard").map(String::as_str),
        Some("1")
    );
    let data = map.data.unwrap_or_default();
    assert_eq!(data.len(), 1, "one dashboard");
    let shipped: Value = serde_json::from_str(&data["imagepipeline-operator.json"])
        .expect("the ConfigMap holds the dashboard's JSON");
    let file: Value =
        serde_json::from_str(&chart_file("files/dashboards/imagepipeline-operator.json"))
            .expect("the dashboard file is JSON");
    assert_eq!(shipped, file);
    assert_eq!(shipped["uid"], "imagepipeline-operator");

    // The sidecar may watch another namespace, and folders come from annotations.
    let docs = render(
        &helm,
        &[
            "dashboard.enabled=true",
            "dashboard.namespace=monitoring",
            "dashboard.annotations.grafana_folder=Operators",
        ],
    );
    let map = one_of(&docs, "ConfigMap");
    assert_eq!(namespace(map), "monitoring");
    assert_eq!(
        map["metadata"]["annotations"]["grafana_folder"],
        "Operators"
    );
}

#[test]
fn prometheus_rule_carries_the_alert_file() {
    let Some(helm) = helm_or_skip("prometheus_rule_carries_the_alert_file") else {
        return;
    };
    let docs = render(
        &helm,
        &[
            "prometheusRule.enabled=true",
            "prometheusRule.labels.release=kps",
        ],
    );
    let rule = one_of(&docs, "PrometheusRule");
    check_prometheus_rule_loosely(rule);
    assert_eq!(name(rule), FULLNAME);
    assert_eq!(namespace(rule), NAMESPACE);
    assert_eq!(rule["metadata"]["labels"]["release"], "kps");
    let file: Value = serde_yaml::from_str(&chart_file("files/alerts/rules.yaml"))
        .expect("the rules file is YAML");
    assert_eq!(rule["spec"], file, "the rules are shipped untemplated");
    let alerts: Vec<&str> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert_eq!(alerts.len(), 5, "{alerts:?}");
    // Prometheus, not Helm, fills in the alert text.
    let text = serde_json::to_string(&rule["spec"]).expect("serializable");
    assert!(text.contains("{{ $labels.query }}"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// CRDs

fn yaml_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .map(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, bytes)
        })
        .collect()
}

#[test]
fn chart_carries_the_same_crd_bytes_as_the_crds_folder() {
    let source = repo_root().join("crds");
    if !source.is_dir() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED chart_carries_the_same_crd_bytes_as_the_crds_folder: crds/ does not exist yet"
        );
        return;
    }
    let carried = yaml_files(&chart_dir().join("files/crds"));
    let generated = yaml_files(&source);
    assert!(!generated.is_empty(), "crds/ holds no YAML");
    assert!(
        carried == generated,
        "charts/imagepipeline-operator/files/crds differs from crds/ (files {:?} vs {:?}); copy \
         them again:\n  rm -f {CHART}/files/crds/*.yaml && cp crds/*.yaml {CHART}/files/crds/",
        carried.keys().collect::<Vec<_>>(),
        generated.keys().collect::<Vec<_>>(),
    );
}

const FIXTURE_CRDS: &str = "\
# A fixture standing in for the generated CRDs: two documents in one file.
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: imagepipelinequeries.ecs.mirror.io
spec:
  group: ecs.mirror.io
  names: {kind: ImagePipelineQuery, plural: imagepipelinequeries, shortNames: [ipq]}
  scope: Namespaced
  versions:
    - name: v1alpha1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                pageSize: {type: integer, minimum: 1, maximum: 500, default: 500}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: imagepipelines.ecs.mirror.io
  annotations: {example.com/kept: \"yes\"}
spec:
  group: ecs.mirror.io
  names: {kind: ImagePipeline, plural: imagepipelines, shortNames: [ipl]}
  scope: Namespaced
  versions:
    - name: v1alpha1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        let target = to.join(path.file_name().unwrap_or_default());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}

#[test]
fn crds_render_with_the_keep_policy_and_can_be_skipped() {
    let Some(helm) = helm_or_skip("crds_render_with_the_keep_policy_and_can_be_skipped") else {
        return;
    };
    // A copy of the chart whose files/crds holds only the fixture, so that the template is
    // tested whatever crds/ currently holds.
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let chart = tmp.path().join("imagepipeline-operator");
    copy_dir(&chart_dir(), &chart);
    for old in yaml_files(&chart.join("files/crds")).keys() {
        std::fs::remove_file(chart.join("files/crds").join(old)).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(chart.join("files/crds/fixture.yaml"), FIXTURE_CRDS)
        .unwrap_or_else(|e| panic!("{e}"));

    let docs = render_chart(&helm, &chart, &[]);
    check_every_document_is_typed(&docs);
    let crds: Vec<CustomResourceDefinition> = all_of(&docs, "CustomResourceDefinition")
        .into_iter()
        .map(typed)
        .collect();
    let names: BTreeSet<String> = crds
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    let expected = [
        format!("imagepipelinequeries.{GROUP}"),
        format!("imagepipelines.{GROUP}"),
    ];
    assert_eq!(names, expected.into_iter().collect());
    for crd in &crds {
        let annotations = crd.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations
                .get("helm.sh/resource-policy")
                .map(String::as_str),
            Some("keep"),
            "{:?}",
            crd.metadata.name
        );
    }
    let kept_own = crds.iter().any(|c| {
        c.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("example.com/kept"))
            == Some(&"yes".to_string())
    });
    assert!(kept_own, "the CRD's own annotations survive");

    let not_kept = render_chart(&helm, &chart, &["crds.keep=false"]);
    for crd in all_of(&not_kept, "CustomResourceDefinition") {
        assert!(
            crd["metadata"]["annotations"]
                .get("helm.sh/resource-policy")
                .is_none()
        );
    }
    let skipped = render_chart(&helm, &chart, &["crds.install=false"]);
    assert!(all_of(&skipped, "CustomResourceDefinition").is_empty());
}

// ---------------------------------------------------------------------------------------------
// values, Chart.yaml, Dockerfile, README (no helm needed)

fn read(path: &str) -> String {
    let full = repo_root().join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

#[test]
fn every_value_is_documented_by_a_comment() {
    let values = read(&format!("{CHART}/values.yaml"));
    // Lines deeper than this indentation belong to a documented value (e.g. `resources`).
    let mut documented_block: Option<usize> = None;
    let mut previous = "";
    let mut undocumented = Vec::new();
    for line in values.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            if !trimmed.is_empty() {
                previous = trimmed;
            }
            continue;
        }
        if documented_block.is_some_and(|block| indent > block) {
            previous = trimmed;
            continue;
        }
        documented_block = None;
        let commented = previous.starts_with('#');
        let is_key = trimmed.split_once(':').is_some_and(|(key, _)| {
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        let opens_section = trimmed.ends_with(':');
        if is_key && commented && opens_section {
            documented_block = Some(indent);
        } else if is_key && !commented && !opens_section {
            undocumented.push(trimmed.to_string());
        }
        previous = trimmed;
    }
    assert!(
        undocumented.is_empty(),
        "values without a comment: {undocumented:?}"
    );
}

fn yaml_field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().trim_matches('"').to_string())
}

#[test]
fn chart_app_version_is_the_crate_version() {
    let chart = read(&format!("{CHART}/Chart.yaml"));
    let cargo = read("Cargo.toml");
    let crate_version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .map(|v| v.trim().trim_matches('"').to_string());
    assert_eq!(yaml_field(&chart, "appVersion"), crate_version);
}

#[test]
fn chart_home_and_sources_name_the_repository_the_image_says_it_comes_from() {
    let chart = read(&format!("{CHART}/Chart.yaml"));
    let dockerfile = read("Dockerfile");
    let source = dockerfile
        .lines()
        .find_map(|l| {
            l.trim()
                .trim_start_matches("LABEL ")
                .strip_prefix("org.opencontainers.image.source=")
        })
        .map(|v| {
            v.trim_end_matches('\\')
                .trim()
                .trim_matches('"')
                .to_string()
        })
        .expect("the image names its source repository");
    assert!(source.starts_with("https://github.com/"), "{source}");
    assert_eq!(yaml_field(&chart, "home"), Some(source.clone()));
    let sources: Vec<&str> = chart
        .split_once("\nsources:\n")
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .lines()
        .map_while(|l| l.trim().strip_prefix("- "))
        .collect();
    assert_eq!(sources, [source.as_str()]);
}

fn dockerfile_build_command() -> String {
    let dockerfile = read("Dockerfile");
    let builds: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.trim().strip_prefix("RUN "))
        .map(str::trim)
        .filter(|cmd| cmd.starts_with("cargo build"))
        .collect();
    assert_eq!(
        builds.len(),
        1,
        "exactly one `RUN cargo build` line in the Dockerfile"
    );
    builds[0].to_string()
}

#[test]
fn dockerfile_builds_a_static_binary_and_runs_it_as_non_root() {
    let dockerfile = read("Dockerfile");
    assert_eq!(
        dockerfile_build_command(),
        r#"cargo build --release --locked --target "$(uname -m)-unknown-linux-musl""#,
        "a static musl binary for the platform the stage runs on (amd64 and arm64 alike)"
    );
    assert!(
        !dockerfile.contains("--platform=$BUILDPLATFORM"),
        "the build stage runs on the target platform, so `uname -m` is the target"
    );
    let last_stage = dockerfile.rsplit("\nFROM ").next().unwrap_or_default();
    assert!(
        last_stage.starts_with("gcr.io/distroless/static"),
        "minimal static base"
    );
    assert!(
        last_stage.contains("\nUSER 65532"),
        "runs as the chart's UID 65532"
    );
    assert!(
        last_stage.contains("ENTRYPOINT [\"/usr/local/bin/imagepipeline-operator\"]"),
        "the binary is the entrypoint"
    );
    assert!(
        last_stage.contains("CMD [\"run\"]"),
        "`run` is the default subcommand"
    );
}

#[test]
fn readme_documents_the_dockerfile_build_command() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap_or_default();
    let (open, close) = ("<!-- docker-build -->", "<!-- /docker-build -->");
    let Some(block) = readme
        .split_once(open)
        .and_then(|(_, rest)| rest.split_once(close))
        .map(|(block, _)| block)
    else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED readme_documents_the_dockerfile_build_command: README.md has no \
             `{open}` ... `{close}` block yet"
        );
        return;
    };
    let documented: Vec<&str> = block
        .lines()
        .map(|l| l.trim().trim_start_matches("$ ").trim())
        .filter(|l| l.starts_with("cargo build"))
        .collect();
    assert_eq!(
        documented,
        [dockerfile_build_command().as_str()],
        "README's docker-build block and the Dockerfile's `RUN cargo build` line differ"
    );
}

#[test]
fn install_notes_show_a_sample_secret_and_query_and_how_to_list_pipelines() {
    let Some(helm) = helm_or_skip("install_notes_show_a_sample_secret_and_query") else {
        return;
    };
    let mut args: Vec<String> = ["install", RELEASE]
        .into_iter()
        .map(String::from)
        .chain([chart_dir().display().to_string()])
        .chain(["--namespace", NAMESPACE, "--dry-run=client"].map(String::from))
        .collect();
    args.extend(set_args(&["watchNamespaces={team-a}"]));
    let out = run_helm(&helm, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let notes = stdout
        .split_once("NOTES:")
        .map(|(_, n)| n)
        .expect("install prints NOTES");
    for expected in [
        "kubectl -n team-a create secret generic ecs-readonly",
        "kind: ImagePipelineQuery",
        "secretRef:",
        "kubectl -n team-a get ipl",
        "kubectl -n ops rollout status deployment/rel-imagepipeline-operator",
    ] {
        assert!(
            notes.contains(expected),
            "NOTES lack `{expected}`:\n{notes}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// sharding

fn label(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<String> {
    meta.labels.as_ref().and_then(|l| l.get(key).cloned())
}

fn matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn each_shard_gets_its_own_deployment_lease_service_and_budget_beside_the_main_one() {
    let Some(helm) = helm_or_skip(
        "each_shard_gets_its_own_deployment_lease_service_and_budget_beside_the_main_one",
    ) else {
        return;
    };
    let docs = render(
        &helm,
        &[
            "sharding.shards={shard1,shard2}",
            "metrics.serviceMonitor.enabled=true",
        ],
    );
    let deployments: Vec<Deployment> = all_of(&docs, "Deployment").into_iter().map(typed).collect();
    let by_name = |n: &str| {
        deployments
            .iter()
            .find(|d| d.metadata.name.as_deref() == Some(n))
            .unwrap_or_else(|| panic!("Deployment {n}"))
    };
    assert_eq!(deployments.len(), 3);
    let main = by_name(FULLNAME);
    assert!(
        args(main).contains(&"--watch-label-selector=!sharding.fluxcd.io/key".to_string()),
        "the main instance takes what carries no shard label: {:?}",
        args(main)
    );
    assert!(!args(main).iter().any(|a| a.starts_with("--shard")));
    let pod_labels = |d: &Deployment| -> BTreeMap<String, String> {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap()
    };
    let selector = |d: &Deployment| -> BTreeMap<String, String> {
        d.spec
            .as_ref()
            .unwrap()
            .selector
            .match_labels
            .clone()
            .unwrap()
    };
    assert_eq!(
        selector(main),
        BTreeMap::from([
            (
                "app.kubernetes.io/name".to_string(),
                "imagepipeline-operator".to_string()
            ),
            ("app.kubernetes.io/instance".to_string(), "rel".to_string()),
        ]),
        "the main selector never changes across upgrades"
    );
    for shard in ["shard1", "shard2"] {
        let d = by_name(&format!("{FULLNAME}-{shard}"));
        let a = args(d);
        assert!(a.contains(&format!("--shard={shard}")), "{a:?}");
        assert!(
            a.contains(&format!(
                "--watch-label-selector=sharding.fluxcd.io/key={shard}"
            )),
            "{a:?}"
        );
        assert!(a.contains(&"--leader-election".to_string()));
        assert_eq!(
            label(&d.metadata, "ecs.mirror.io/shard").as_deref(),
            Some(shard)
        );
        assert!(matches(&selector(d), &pod_labels(d)));
        // No Deployment selects another's pods.
        for other in &deployments {
            if other.metadata.name != d.metadata.name {
                assert!(!matches(&selector(other), &pod_labels(d)), "{shard}");
                assert!(!matches(&selector(d), &pod_labels(other)), "{shard}");
            }
        }
    }
    // One metrics Service per instance, each selecting only its pods; the ServiceMonitor
    // selects all three.
    let services: Vec<Service> = all_of(&docs, "Service").into_iter().map(typed).collect();
    assert_eq!(services.len(), 3);
    let monitor = one_of(&docs, "ServiceMonitor");
    let monitor_selector: BTreeMap<String, String> =
        serde_json::from_value(monitor["spec"]["selector"]["matchLabels"].clone()).unwrap();
    for d in &deployments {
        let pods = pod_labels(d);
        let serving: Vec<&Service> = services
            .iter()
            .filter(|s| {
                let sel = s.spec.as_ref().unwrap().selector.clone().unwrap();
                matches(&sel, &pods)
            })
            .collect();
        assert_eq!(serving.len(), 1, "{:?}", d.metadata.name);
        assert!(matches(
            &monitor_selector,
            serving[0].metadata.labels.as_ref().unwrap()
        ));
    }
    // A disruption budget per instance, and the Lease of each shard in the Role.
    assert_eq!(all_of(&docs, "PodDisruptionBudget").len(), 3);
    let names: BTreeSet<String> = operator_rules(&docs)
        .iter()
        .filter(|(_, r)| {
            r.resources.iter().flatten().any(|x| x == "leases") && r.verbs != ["create"]
        })
        .flat_map(|(_, r)| r.resource_names.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            format!("{FULLNAME}-leader"),
            format!("{FULLNAME}-leader-shard1"),
            format!("{FULLNAME}-leader-shard2"),
        ])
    );
}

#[test]
fn without_shards_the_main_instance_serves_every_query() {
    let Some(helm) = helm_or_skip("without_shards_the_main_instance_serves_every_query") else {
        return;
    };
    let docs = render(&helm, &[]);
    let a = args(&deployment(&docs));
    assert!(
        !a.iter()
            .any(|x| x.starts_with("--watch-label-selector") || x.starts_with("--shard")),
        "{a:?}"
    );
}

#[test]
fn bad_shard_names_are_refused() {
    let Some(helm) = helm_or_skip("bad_shard_names_are_refused") else {
        return;
    };
    for (sets, wanted) in [
        ("sharding.shards={Shard_1}", "is not a shard name"),
        ("sharding.shards={main}", "names the main instance"),
        ("sharding.shards={a,a}", "may appear once"),
        (
            "sharding.shards={a-shard-name-long-enough-to-overflow-the-service-name}",
            "longer than 63 characters",
        ),
    ] {
        let err = render_error(&helm, &[sets]);
        assert!(err.contains(wanted), "{sets}: {err}");
    }
}

#[test]
fn a_numeric_shard_name_is_a_string_label_value() {
    let Some(helm) = helm_or_skip("a_numeric_shard_name_is_a_string_label_value") else {
        return;
    };
    let docs = render(&helm, &["sharding.shards={1}"]);
    // Typed parsing fails on a label value YAML reads as a number.
    check_every_document_is_typed(&docs);
    let deployments: Vec<Deployment> = all_of(&docs, "Deployment").into_iter().map(typed).collect();
    assert!(
        deployments
            .iter()
            .any(|d| label(&d.metadata, "ecs.mirror.io/shard").as_deref() == Some("1"))
    );
}
