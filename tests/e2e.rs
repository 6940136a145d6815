//! End-to-end tests on a real cluster (kind, k3d, ...), with the simulator and the operator run
//! as processes from the built binary.
//!
//! ```text
//! E2E_KUBECONFIG=~/.kube/config cargo test --test e2e -- --test-threads=1
//! ```
//!
//! Without `E2E_KUBECONFIG` every test prints a notice and passes; with `E2E_REQUIRE_CLUSTER=1`
//! a missing `E2E_KUBECONFIG` fails them instead (for CI jobs that do have a cluster). Each test
//! uses a fresh namespace and deletes it afterwards; the CRDs under `crds/` are applied first.
//! Logs of the operator and the simulator go to `target/e2e-logs/`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_imagepipeline-operator");
const WAIT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------- the cluster

/// The kubeconfig to test against, or `None` (after a notice) when the tests are skipped.
fn kubeconfig() -> Option<String> {
    match std::env::var("E2E_KUBECONFIG") {
        Ok(path) if !path.trim().is_empty() => {
            let expanded = match path.strip_prefix("~/") {
                Some(rest) => format!("{}/{rest}", std::env::var("HOME").unwrap_or_default()),
                None => path,
            };
            Some(expanded)
        }
        _ => {
            assert!(
                std::env::var("E2E_REQUIRE_CLUSTER").as_deref() != Ok("1"),
                "E2E_REQUIRE_CLUSTER=1 but E2E_KUBECONFIG is not set"
            );
            eprintln!(
                "skipping: set E2E_KUBECONFIG to a test cluster's kubeconfig to run the end-to-end tests \
                 (E2E_KUBECONFIG=~/.kube/config cargo test --test e2e -- --test-threads=1)"
            );
            None
        }
    }
}

fn logs_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/e2e-logs");
    std::fs::create_dir_all(&dir).expect("create target/e2e-logs");
    dir
}

/// A test namespace with its simulator and operator; everything is torn down on drop.
struct Env {
    kubeconfig: String,
    ns: String,
    sim_url: String,
    sim: Child,
    operator: Option<Child>,
    /// The kubeconfig the operator runs with, when not the tester's (e.g. a ServiceAccount's).
    operator_kubeconfig: Option<String>,
}

impl Env {
    /// Applies the CRDs, creates a fresh namespace, starts a simulator (with `sim_flags`) loaded
    /// with `items`, and the operator watching the namespace.
    fn start(test: &str, items: &[Value], sim_flags: &[&str]) -> Option<Self> {
        let kubeconfig = kubeconfig()?;
        let suffix = std::process::id() % 100_000;
        let ns = format!("e2e-{test}-{suffix}");
        let crds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds");
        run_ok(
            &kubeconfig,
            &["apply", "--server-side", "-f", crds.to_str().unwrap()],
        );
        for crd in [
            "imagepipelines.ecs.mirror.io",
            "imagepipelinequeries.ecs.mirror.io",
        ] {
            run_ok(
                &kubeconfig,
                &[
                    "wait",
                    "--for=condition=Established",
                    &format!("crd/{crd}"),
                    "--timeout=60s",
                ],
            );
        }
        run(
            &kubeconfig,
            &[
                "delete",
                "namespace",
                &ns,
                "--ignore-not-found",
                "--wait=true",
            ],
        );
        run_ok(&kubeconfig, &["create", "namespace", &ns]);
        let (sim, sim_url) = start_simulator(&ns, sim_flags);
        let mut env = Env {
            kubeconfig,
            ns,
            sim_url,
            sim,
            operator: None,
            operator_kubeconfig: None,
        };
        env.set_items(items);
        env.start_operator();
        Some(env)
    }

    fn start_operator(&mut self) {
        let log = std::fs::File::create(logs_dir().join(format!("{}-operator.log", self.ns)))
            .expect("operator log file");
        let child = Command::new(BIN)
            .args([
                "run",
                "--ecs-endpoint",
                &self.sim_url,
                "--namespace",
                &self.ns,
                // Any free port: the default 0.0.0.0:8080 may be taken on the tester's machine.
                "--admin-addr",
                "127.0.0.1:0",
            ])
            .env(
                "KUBECONFIG",
                self.operator_kubeconfig
                    .as_ref()
                    .unwrap_or(&self.kubeconfig),
            )
            .env("LOG_LEVEL", "info,imagepipeline_operator=debug")
            .stdout(Stdio::from(log.try_clone().expect("log file")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start the operator");
        self.operator = Some(child);
    }

    fn stop_operator(&mut self) {
        if let Some(mut child) = self.operator.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Replaces the simulator for a new one (with other flags), keeping the data set.
    fn restart_simulator(&mut self, items: &[Value], sim_flags: &[&str]) {
        self.stop_operator();
        let _ = self.sim.kill();
        let _ = self.sim.wait();
        let (sim, url) = start_simulator(&format!("{}-2", self.ns), sim_flags);
        self.sim = sim;
        self.sim_url = url;
        self.set_items(items);
        self.start_operator();
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        let mut full = vec!["-n", self.ns.as_str()];
        full.extend_from_slice(args);
        run(&self.kubeconfig, &full)
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn apply(&self, manifest: &Value) -> Output {
        let mut child = Command::new(kubectl_bin())
            .args(["-n", &self.ns, "apply", "-f", "-"])
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(manifest.to_string().as_bytes())
            .expect("write manifest");
        child.wait_with_output().expect("kubectl apply")
    }

    fn apply_ok(&self, manifest: &Value) {
        let out = self.apply(manifest);
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn secret(&self) {
        self.kubectl_ok(&[
            "create",
            "secret",
            "generic",
            "ak",
            "--from-literal=accessKeyId=AK",
            "--from-literal=accessKeySecret=SECRET",
        ]);
    }

    fn get_json(&self, what: &[&str]) -> Value {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.kubectl_ok(&args)).expect("kubectl JSON")
    }

    fn query(&self, name: &str) -> Value {
        self.get_json(&["imagepipelinequery", name])
    }

    /// The mirrored objects: name → (resourceVersion, owner UIDs).
    fn pipelines(&self) -> BTreeMap<String, (String, Vec<String>)> {
        let list = self.get_json(&["imagepipelines"]);
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| {
                let owners = o["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| r["uid"].as_str().unwrap_or_default().to_string())
                    .collect();
                (
                    o["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    (
                        o["metadata"]["resourceVersion"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        owners,
                    ),
                )
            })
            .collect()
    }

    fn names(&self) -> Vec<String> {
        self.pipelines().into_keys().collect()
    }

    /// Waits until the query's Ready condition has `reason` (and the status the generation).
    fn wait_ready(&self, name: &str, reason: &str) -> Value {
        wait_for(&format!("query {name} to be {reason}"), || {
            let q = self.query(name);
            let ready = q["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Ready")
                .cloned();
            let current = q["status"]["observedGeneration"] == q["metadata"]["generation"];
            (current && ready.is_some_and(|c| c["reason"] == reason)).then_some(q)
        })
    }

    /// Sets the refresh annotation to a new value and waits until the sync handled it.
    fn refresh(&self, name: &str) -> Value {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos().to_string())
            .unwrap_or_default();
        self.kubectl_ok(&[
            "annotate",
            "--overwrite",
            "imagepipelinequery",
            name,
            &format!("ecs.mirror.io/requested-at={stamp}"),
        ]);
        wait_for("the refresh to be handled", || {
            let q = self.query(name);
            (q["status"]["lastHandledRequestedAt"] == stamp.as_str()).then_some(q)
        })
    }

    fn set_items(&self, items: &[Value]) {
        let (code, body) = http(
            &self.sim_url,
            "PUT",
            "/_sim/items",
            &Value::Array(items.to_vec()).to_string(),
        );
        assert!((200..300).contains(&code), "PUT /_sim/items: {code} {body}");
    }

    /// How many `DescribeImagePipelines` calls the simulator served (the whole stats document
    /// when it has no such counter).
    fn sim_calls(&self) -> String {
        let body = http(&self.sim_url, "GET", "/_sim/stats", "").1;
        serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|stats| describe_calls(&stats))
            .map_or(body, |n| n.to_string())
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop_operator();
        let _ = self.sim.kill();
        let _ = self.sim.wait();
        run(
            &self.kubeconfig,
            &["delete", "namespace", &self.ns, "--wait=false"],
        );
    }
}

/// `E2E_HELM`, else the helm `.ci/install-tools` puts under `.tools/bin`, else `helm` from
/// `PATH`.
fn helm_bin() -> String {
    if let Ok(bin) = std::env::var("E2E_HELM") {
        return bin;
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/helm");
    if local.exists() {
        return local.to_string_lossy().into_owned();
    }
    "helm".into()
}

/// `E2E_KUBECTL`, else the kubectl `.ci/install-tools` puts under `.tools/bin`, else `kubectl`
/// from `PATH`.
fn kubectl_bin() -> String {
    if let Ok(bin) = std::env::var("E2E_KUBECTL") {
        return bin;
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/kubectl");
    if local.exists() {
        return local.to_string_lossy().into_owned();
    }
    "kubectl".into()
}

fn run(kubeconfig: &str, args: &[&str]) -> Output {
    Command::new(kubectl_bin())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("kubectl must be on PATH")
}

fn run_ok(kubeconfig: &str, args: &[&str]) {
    let out = run(kubeconfig, args);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < WAIT,
            "timed out waiting for {what} (see target/e2e-logs/)"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

// ---------------------------------------------------------------- the simulator

fn start_simulator(log_name: &str, flags: &[&str]) -> (Child, String) {
    let log =
        std::fs::File::create(logs_dir().join(format!("{log_name}-sim.log"))).expect("sim log");
    let mut child = Command::new(BIN)
        .args([
            "ecs-sim",
            "--listen",
            "127.0.0.1:0",
            "--generate",
            "50",
            "--seed",
            "7",
            "--credential",
            "AK:SECRET",
        ])
        .args(flags)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start the simulator");
    let stdout = child.stdout.take().expect("sim stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("sim first line");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from the simulator: {line:?}"))
        .to_string();
    (child, url)
}

/// A minimal HTTP/1.1 exchange with the simulator's admin endpoints.
fn http(base: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(host).expect("connect to the simulator");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("receive");
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// The first number under a key mentioning `DescribeImagePipelines`, searched depth-first.
fn describe_calls(stats: &Value) -> Option<u64> {
    match stats {
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.to_ascii_lowercase().contains("describeimagepipelines") {
                v.as_u64().or_else(|| describe_calls(v))
            } else {
                describe_calls(v)
            }
        }),
        Value::Array(items) => items.iter().find_map(describe_calls),
        _ => None,
    }
}

fn pipeline(id: &str, region: &str) -> Value {
    json!({
        "ImagePipelineId": id,
        "Name": format!("golden-{id}"),
        "RegionId": region,
        "BaseImage": "m-bp1base",
        "BaseImageType": "IMAGE",
        "InstanceType": "ecs.g6.large",
        "CreationTime": "2026-01-01T00:00:00Z",
    })
}

fn data_set() -> Vec<Value> {
    let mut items: Vec<Value> = (1..=6)
        .map(|i| pipeline(&format!("ip-hz{i:03}"), "cn-hangzhou"))
        .collect();
    items.extend((1..=3).map(|i| pipeline(&format!("ip-bj{i:03}"), "cn-beijing")));
    items
}

fn hangzhou_ids(items: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = items
        .iter()
        .filter(|i| i["RegionId"] == "cn-hangzhou")
        .map(|i| {
            i["ImagePipelineId"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    ids.sort();
    ids
}

fn query_manifest(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "ecs.mirror.io/v1alpha1",
        "kind": "ImagePipelineQuery",
        "metadata": {"name": name},
        "spec": spec,
    })
}

fn hangzhou_query(name: &str) -> Value {
    query_manifest(
        name,
        json!({"regionId": "cn-hangzhou", "credentials": {"secretRef": {"name": "ak"}}}),
    )
}

// ---------------------------------------------------------------- the tests

#[test]
fn a_query_mirrors_exactly_the_matching_set_and_a_quiet_refresh_writes_nothing() {
    let items = data_set();
    let Some(env) = Env::start("mirror", &items, &[]) else {
        return;
    };
    env.secret();
    env.apply_ok(&hangzhou_query("hz"));
    let q = env.wait_ready("hz", "Synced");
    assert_eq!(q["status"]["matchedCount"], 6);
    assert_eq!(q["status"]["credentials"], "secret/ak");
    assert_eq!(env.names(), hangzhou_ids(&items));

    let table = env.kubectl_ok(&["get", "imagepipelines"]);
    let header = table.lines().next().unwrap_or_default();
    for column in ["ID", "NAME", "BASE IMAGE", "INSTANCE TYPE", "REGION", "AGE"] {
        assert!(header.contains(column), "missing column {column}: {header}");
    }
    let table = env.kubectl_ok(&["get", "ipq"]);
    let header = table.lines().next().unwrap_or_default();
    for column in ["READY", "MATCHED", "LAST SYNC", "INTERVAL", "AGE"] {
        assert!(header.contains(column), "missing column {column}: {header}");
    }

    let before = env.pipelines();
    let refreshed = env.refresh("hz");
    assert_eq!(refreshed["status"]["lastSyncResult"]["unchanged"], 6);
    assert_eq!(
        env.pipelines(),
        before,
        "a refresh without changes writes nothing"
    );
}

#[test]
fn a_pipeline_removed_from_the_cloud_is_pruned_at_the_next_timed_refresh() {
    let mut items = data_set();
    let Some(env) = Env::start("prune", &items, &[]) else {
        return;
    };
    env.secret();
    let mut q = hangzhou_query("hz");
    q["spec"]["refreshInterval"] = json!("30s");
    env.apply_ok(&q);
    env.wait_ready("hz", "Synced");
    items.retain(|i| i["ImagePipelineId"] != "ip-hz003");
    env.set_items(&items);
    wait_for("ip-hz003 to be pruned", || {
        (!env.names().contains(&"ip-hz003".to_string())).then_some(())
    });
    assert_eq!(env.names(), hangzhou_ids(&items));
}

#[test]
fn a_simulator_failing_every_page_prunes_nothing() {
    let items = data_set();
    let Some(mut env) = Env::start("failing", &items, &[]) else {
        return;
    };
    env.secret();
    env.apply_ok(&hangzhou_query("hz"));
    env.wait_ready("hz", "Synced");
    let before = env.pipelines();
    // The same data set behind a simulator that fails every call; and one pipeline gone.
    let fewer: Vec<Value> = items
        .iter()
        .filter(|i| i["ImagePipelineId"] != "ip-hz001")
        .cloned()
        .collect();
    env.restart_simulator(&fewer, &["--fail-every", "1"]);
    env.kubectl_ok(&[
        "annotate",
        "--overwrite",
        "imagepipelinequery",
        "hz",
        "ecs.mirror.io/requested-at=failing",
    ]);
    let q = wait_for("the failure to be reported", || {
        let q = env.query("hz");
        let reason = q["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready")
            .map(|c| c["reason"].clone());
        matches!(
            reason.as_ref().and_then(Value::as_str),
            Some("ApiError" | "Throttled")
        )
        .then_some(q)
    });
    assert!(q["status"]["lastError"]["code"].is_string());
    assert_eq!(
        env.pipelines(),
        before,
        "nothing pruned or rewritten after a failed listing"
    );
}

#[test]
fn overlapping_queries_share_objects_and_deleting_one_keeps_the_shared_ones() {
    let items = data_set();
    let Some(env) = Env::start("shared", &items, &[]) else {
        return;
    };
    env.secret();
    let ids = |list: &[&str]| {
        query_manifest(
            "x",
            json!({"regionId": "cn-hangzhou", "imagePipelineIds": list, "credentials": {"secretRef": {"name": "ak"}}}),
        )
    };
    let mut first = ids(&["ip-hz001", "ip-hz002"]);
    first["metadata"]["name"] = json!("first");
    let mut second = ids(&["ip-hz002", "ip-hz003"]);
    second["metadata"]["name"] = json!("second");
    env.apply_ok(&first);
    env.apply_ok(&second);
    env.wait_ready("first", "Synced");
    env.wait_ready("second", "Synced");
    let shared = wait_for("ip-hz002 to have two owners", || {
        let p = env.pipelines();
        (p.get("ip-hz002").map(|(_, o)| o.len()) == Some(2)).then_some(p)
    });
    assert_eq!(
        shared.keys().cloned().collect::<Vec<_>>(),
        ["ip-hz001", "ip-hz002", "ip-hz003"]
    );

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
        left["ip-hz002"].1.len(),
        1,
        "only the deleted query's reference went"
    );
}

#[test]
fn a_suspended_query_keeps_its_objects_and_stops_listing() {
    let mut items = data_set();
    let Some(env) = Env::start("suspend", &items, &[]) else {
        return;
    };
    env.secret();
    env.apply_ok(&hangzhou_query("hz"));
    env.wait_ready("hz", "Synced");
    let mut q = hangzhou_query("hz");
    q["spec"]["suspend"] = json!(true);
    env.apply_ok(&q);
    env.wait_ready("hz", "Suspended");
    items.retain(|i| i["RegionId"] != "cn-hangzhou");
    env.set_items(&items);
    let calls = env.sim_calls();
    env.kubectl_ok(&[
        "annotate",
        "--overwrite",
        "imagepipelinequery",
        "hz",
        "ecs.mirror.io/requested-at=while-suspended",
    ]);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(env.names().len(), 6, "suspension keeps what is mirrored");
    assert_eq!(env.sim_calls(), calls, "no listing while suspended");
}

#[test]
fn the_refresh_annotation_syncs_at_once() {
    let mut items = data_set();
    let Some(env) = Env::start("annotate", &items, &[]) else {
        return;
    };
    env.secret();
    env.apply_ok(&hangzhou_query("hz"));
    env.wait_ready("hz", "Synced");
    items.push(pipeline("ip-hz999", "cn-hangzhou"));
    env.set_items(&items);
    let q = env.refresh("hz");
    assert_eq!(q["status"]["matchedCount"], 7);
    assert!(env.names().contains(&"ip-hz999".to_string()));
}

#[test]
fn invalid_specs_are_refused_at_apply_with_a_clear_message() {
    let Some(env) = Env::start("invalid", &[], &[]) else {
        return;
    };
    let cases = [
        (
            json!({"regionId": "Hangzhou"}),
            "regionId must be a region ID",
        ),
        (
            json!({"regionId": "cn-hangzhou", "pageSize": 0}),
            "pageSize",
        ),
        (
            json!({"regionId": "cn-hangzhou", "pageSize": 501}),
            "pageSize",
        ),
        (
            json!({"regionId": "cn-hangzhou", "refreshInterval": "5s"}),
            "at least 30s",
        ),
        (
            json!({"regionId": "cn-hangzhou", "refreshInterval": "ten"}),
            "refreshInterval",
        ),
        (
            json!({"regionId": "cn-hangzhou", "imagePipelineIds": ["m-123"]}),
            "ip- followed by",
        ),
        (
            json!({"regionId": "cn-hangzhou", "imagePipelineIds": ["ip-a", "ip-a"]}),
            "must not repeat",
        ),
        (
            json!({"regionId": "cn-hangzhou", "tags": [{"key": "team"}, {"key": "team", "value": "x"}]}),
            "must not repeat a key",
        ),
        (
            json!({"regionId": "cn-hangzhou", "tags": [{"key": ""}]}),
            "tags",
        ),
        (
            json!({"regionId": "cn-hangzhou", "credentials": {"secretRef": {"name": "Bad_Name"}}}),
            "Secret name",
        ),
        (
            json!({"regionId": "cn-hangzhou", "template": {"metadata": {"labels": {"bad key": "x"}}}}),
            "label keys",
        ),
        (
            json!({"regionId": "cn-hangzhou", "template": {"metadata": {"labels": {"team": "-x"}}}}),
            "label values",
        ),
    ];
    for (spec, expected) in cases {
        let out = env.apply(&query_manifest("bad", spec.clone()));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted: {spec}");
        assert!(
            stderr.contains(expected),
            "for {spec}: expected {expected:?} in {stderr}"
        );
    }
    let many: Vec<String> = (0..21).map(|i| format!("ip-x{i}")).collect();
    let out = env.apply(&query_manifest(
        "bad",
        json!({"regionId": "cn-hangzhou", "imagePipelineIds": many}),
    ));
    assert!(!out.status.success());
}

/// Installs the Helm chart into the test namespace (RBAC, ServiceAccount, admission policy; the
/// CRDs are already applied and the image may not be loadable into the cluster, so the
/// Deployment runs no pod), then runs the operator binary *as the chart's ServiceAccount*: the
/// chart's RBAC must be enough to mirror, and its admission policy must refuse everyone else.
#[test]
fn the_chart_installs_its_rbac_suffices_and_only_the_operator_may_write_pipelines() {
    let items = data_set();
    let Some(mut env) = Env::start("helm", &items, &[]) else {
        return;
    };
    env.stop_operator();
    let chart = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts/imagepipeline-operator");
    let release = "ipo";
    let sa = "ipo-e2e";
    let install = Command::new(helm_bin())
        .args(["install", release])
        .arg(&chart)
        .args(["--namespace", &env.ns, "--wait", "--timeout", "3m"])
        .args(["--set", &format!("fullnameOverride={sa}")])
        .args([
            "--set",
            "replicaCount=0",
            "--set",
            "leaderElection.enabled=false",
        ])
        .args(["--set", "crds.install=false"])
        .args(["--set", &format!("watchNamespaces={{{}}}", env.ns)])
        .env("KUBECONFIG", &env.kubeconfig)
        .output()
        .expect("helm must be on PATH (or set E2E_HELM)");
    assert!(
        install.status.success(),
        "helm install failed: {}",
        String::from_utf8_lossy(&install.stderr)
    );
    struct Uninstall(String, String, String);
    impl Drop for Uninstall {
        fn drop(&mut self) {
            let _ = Command::new(helm_bin())
                .args(["uninstall", &self.1, "--namespace", &self.2])
                .env("KUBECONFIG", &self.0)
                .output();
        }
    }
    let _uninstall = Uninstall(env.kubeconfig.clone(), release.into(), env.ns.clone());

    // A kubeconfig for the chart's ServiceAccount: the tester's cluster, the SA's token.
    let token = env.kubectl_ok(&["create", "token", sa, "--duration=1h"]);
    let view = run(
        &env.kubeconfig,
        &["config", "view", "--raw", "--minify", "-o", "json"],
    );
    assert!(view.status.success(), "kubectl config view failed");
    let mut config: Value = serde_json::from_slice(&view.stdout).expect("kubeconfig JSON");
    config["users"][0]["user"] = json!({"token": token.trim()});
    let path = logs_dir().join(format!("{}-sa.kubeconfig", env.ns));
    std::fs::write(&path, config.to_string()).expect("write the ServiceAccount kubeconfig");
    env.operator_kubeconfig = Some(path.to_string_lossy().into_owned());
    env.start_operator();

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

/// Kills the operator (SIGKILL) while it is writing the objects of a large first sync, starts it
/// again, and checks it converges: every pipeline mirrored exactly once, owned by the query, and
/// nothing else.
#[test]
fn an_operator_killed_in_the_middle_of_a_sync_converges_after_restart() {
    let total = 400;
    let items: Vec<Value> = (0..total)
        .map(|i| pipeline(&format!("ip-kill{i:04}"), "cn-hangzhou"))
        .collect();
    let Some(mut env) = Env::start("kill", &items, &[]) else {
        return;
    };
    env.secret();
    env.apply_ok(&hangzhou_query("hz"));
    // Wait until the writes have started but not finished, then kill the process outright.
    let partial = wait_for("the first objects to be written", || {
        let n = env.names().len();
        (n > 0).then_some(n)
    });
    env.stop_operator();
    let after_kill = env.names().len();
    eprintln!("killed the operator with {partial}..{after_kill} of {total} objects written");

    env.start_operator();
    let q = env.wait_ready("hz", "Synced");
    assert_eq!(q["status"]["matchedCount"], total);
    let query_uid = q["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mirrored = env.pipelines();
    assert_eq!(mirrored.len(), total, "nothing lost, nothing extra");
    for (name, (_, owners)) in &mirrored {
        assert_eq!(
            owners,
            &vec![query_uid.clone()],
            "{name} is owned by the query once"
        );
    }
    assert_eq!(env.names(), hangzhou_ids(&items));
}
