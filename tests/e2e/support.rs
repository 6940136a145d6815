//! What every end-to-end test shares: the cluster (kubectl, helm), a fresh namespace per test,
//! the simulator and the operator as processes, and waiting with a deadline.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_imagepipeline-operator");
/// How long anything may take to converge. Generous: the garbage collector alone needs up to
/// ~60 s to notice a CRD created moments before (it rediscovers resources every 30 s).
pub const WAIT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------- the cluster

/// The kubeconfig to test against, or `None` (after a notice) when the tests are skipped.
pub fn kubeconfig() -> Option<String> {
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

pub fn logs_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/e2e-logs");
    std::fs::create_dir_all(&dir).expect("create target/e2e-logs");
    dir
}

/// A test namespace with its simulator and operator; everything is torn down on drop.
pub struct Env {
    pub kubeconfig: String,
    pub ns: String,
    pub sim: Sim,
    pub operator: Option<Operator>,
    /// The kubeconfig the operator runs with, when not the tester's (e.g. a ServiceAccount's).
    pub operator_kubeconfig: Option<String>,
}

impl Env {
    /// Applies the CRDs, creates a fresh namespace, starts a simulator (with `sim_flags`) loaded
    /// with `items`, and the operator watching the namespace.
    pub fn start(test: &str, items: &[Value], sim_flags: &[&str]) -> Option<Self> {
        let mut env = Self::without_operator(test, items, sim_flags)?;
        env.start_operator();
        Some(env)
    }

    /// [`Env::start`] without the operator: the test starts its own.
    pub fn without_operator(test: &str, items: &[Value], sim_flags: &[&str]) -> Option<Self> {
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
        let sim = Sim::start(&ns, "127.0.0.1:0", sim_flags);
        let env = Env {
            kubeconfig,
            ns,
            sim,
            operator: None,
            operator_kubeconfig: None,
        };
        env.set_items(items);
        Some(env)
    }

    /// Starts the operator watching the namespace, talking to the simulator.
    pub fn start_operator(&mut self) {
        let operator = self.spawn_operator("operator", &[], &[]);
        self.operator = Some(operator);
    }

    /// Starts one more operator process watching the namespace, with `extra` flags and `envs`;
    /// its log goes to `target/e2e-logs/<ns>-<label>-<n>.log`.
    pub fn spawn_operator(&self, label: &str, extra: &[&str], envs: &[(&str, &str)]) -> Operator {
        static STARTS: AtomicU32 = AtomicU32::new(0);
        let n = STARTS.fetch_add(1, Ordering::SeqCst);
        let log_path = logs_dir().join(format!("{}-{label}-{n}.log", self.ns));
        let log = std::fs::File::create(&log_path).expect("operator log file");
        let mut command = Command::new(BIN);
        command
            .args([
                "run",
                "--ecs-endpoint",
                &self.sim.url,
                "--namespace",
                &self.ns,
                // Any free port: the default 0.0.0.0:8080 may be taken on the tester's machine.
                "--admin-addr",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env(
                "KUBECONFIG",
                self.operator_kubeconfig
                    .as_ref()
                    .unwrap_or(&self.kubeconfig),
            )
            .env("LOG_LEVEL", "info,imagepipeline_operator=debug")
            .stdout(Stdio::from(log.try_clone().expect("log file")))
            .stderr(Stdio::from(log));
        for (key, value) in envs {
            command.env(key, value);
        }
        let child = command.spawn().expect("start the operator");
        Operator {
            child: Some(child),
            log: log_path,
        }
    }

    pub fn stop_operator(&mut self) {
        if let Some(mut operator) = self.operator.take() {
            operator.kill();
        }
    }

    /// Replaces the simulator for a new one (with other flags), keeping the data set.
    pub fn restart_simulator(&mut self, items: &[Value], sim_flags: &[&str]) {
        self.stop_operator();
        self.sim.stop();
        self.sim = Sim::start(&format!("{}-2", self.ns), "127.0.0.1:0", sim_flags);
        self.set_items(items);
        self.start_operator();
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        let mut full = vec!["-n", self.ns.as_str()];
        full.extend_from_slice(args);
        run(&self.kubeconfig, &full)
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The sum of the API server's own metric `name` over the series carrying every one of
    /// `labels` (`key="value"`), from its `/metrics`; 0 when it has none.
    pub fn apiserver_metric(&self, name: &str, labels: &[&str]) -> u64 {
        let metrics = self.kubectl_ok(&["get", "--raw", "/metrics"]);
        labelled_sum(&metrics, name, labels).unwrap_or(0.0) as u64
    }

    /// `kubectl patch <kind> <name> --type=merge -p <patch>`, which must succeed.
    pub fn merge_patch(&self, kind: &str, name: &str, patch: &str) -> String {
        self.kubectl_ok(&["patch", kind, name, "--type=merge", "-p", patch])
    }

    pub fn apply(&self, manifest: &Value) -> Output {
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

    pub fn apply_ok(&self, manifest: &Value) {
        let out = self.apply(manifest);
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn secret(&self) {
        self.kubectl_ok(&[
            "create",
            "secret",
            "generic",
            "ak",
            "--from-literal=accessKeyId=AK",
            "--from-literal=accessKeySecret=SECRET",
        ]);
    }

    pub fn get_json(&self, what: &[&str]) -> Value {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.kubectl_ok(&args)).expect("kubectl JSON")
    }

    pub fn query(&self, name: &str) -> Value {
        self.get_json(&["imagepipelinequery", name])
    }

    /// The mirrored objects: name → (resourceVersion, owner UIDs).
    pub fn pipelines(&self) -> BTreeMap<String, (String, Vec<String>)> {
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

    /// The mirrored objects: name → uid.
    pub fn object_uids(&self) -> BTreeMap<String, String> {
        self.get_json(&["imagepipelines"])["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| {
                Some((
                    o["metadata"]["name"].as_str()?.to_string(),
                    o["metadata"]["uid"].as_str()?.to_string(),
                ))
            })
            .collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.pipelines().into_keys().collect()
    }

    /// Waits until the query's Ready condition has `reason` (and the status the generation).
    pub fn wait_ready(&self, name: &str, reason: &str) -> Value {
        wait_for(&format!("query {name} to be {reason}"), || {
            let q = self.query(name);
            let current = q["status"]["observedGeneration"] == q["metadata"]["generation"];
            (current && ready_reason(&q).as_deref() == Some(reason)).then_some(q)
        })
    }

    /// Sets the refresh annotation to a new value and waits until the sync handled it.
    pub fn refresh(&self, name: &str) -> Value {
        let stamp = self.request_refresh(name);
        wait_for("the refresh to be handled", || {
            let q = self.query(name);
            (q["status"]["lastHandledRequestedAt"] == stamp.as_str()).then_some(q)
        })
    }

    /// Sets the refresh annotation to a new value and returns it, without waiting.
    pub fn request_refresh(&self, name: &str) -> String {
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
        stamp
    }

    pub fn set_items(&self, items: &[Value]) {
        self.sim.set_items(items);
    }

    /// How many `DescribeImagePipelines` calls the simulator served (the whole stats document
    /// when it has no such counter).
    pub fn sim_calls(&self) -> String {
        let body = http(&self.sim.url, "GET", "/_sim/stats", "").1;
        serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|stats| describe_calls(&stats))
            .map_or(body, |n| n.to_string())
    }

    /// The core/v1 Events about `kind/name`, oldest first, as `kubectl events --for` lists them.
    pub fn events_for(&self, kind_name: &str) -> Vec<Value> {
        let list: Value =
            serde_json::from_str(&self.kubectl_ok(&["events", "--for", kind_name, "-o", "json"]))
                .expect("kubectl events JSON");
        list["items"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop_operator();
        self.sim.stop();
        run(
            &self.kubeconfig,
            &["delete", "namespace", &self.ns, "--wait=false"],
        );
    }
}

/// The reason of the query's `Ready` condition.
pub fn ready_reason(query: &Value) -> Option<String> {
    ready_condition(query)
        .and_then(|c| c["reason"].as_str())
        .map(str::to_string)
}

/// The `Ready` condition of a query, as `kubectl get -o json` shows it.
pub fn ready_condition(query: &Value) -> Option<&Value> {
    query["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
}

/// `E2E_HELM`, else the helm `.ci/install-tools` puts under `.tools/bin`, else `helm` from
/// `PATH`.
pub fn helm_bin() -> String {
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
pub fn kubectl_bin() -> String {
    if let Ok(bin) = std::env::var("E2E_KUBECTL") {
        return bin;
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/kubectl");
    if local.exists() {
        return local.to_string_lossy().into_owned();
    }
    "kubectl".into()
}

pub fn run(kubeconfig: &str, args: &[&str]) -> Output {
    Command::new(kubectl_bin())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("kubectl must be on PATH")
}

pub fn run_ok(kubeconfig: &str, args: &[&str]) {
    let out = run(kubeconfig, args);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn wait_for<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    wait_for_within(what, WAIT, check)
}

/// Polls `check` every half second until it returns something, failing after `limit`.
pub fn wait_for_within<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what} (see target/e2e-logs/)"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

// ---------------------------------------------------------------- the chart

/// The Helm chart installed into its own release namespace, mirroring into `watched`, with no
/// pod (the image may not be loadable into the cluster; the tests run the binary instead) and
/// its admission policy on. Uninstalled, and its namespace deleted, on drop.
pub struct ChartRelease {
    kubeconfig: String,
    pub release: String,
    pub namespace: String,
    pub service_account: String,
}

impl ChartRelease {
    pub fn install(kubeconfig: &str, namespace: &str, watched: &str) -> Self {
        let chart = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts/imagepipeline-operator");
        let release = "ipo";
        let service_account = "ipo-e2e";
        let install = Command::new(helm_bin())
            .args(["install", release])
            .arg(&chart)
            .args(["--namespace", namespace, "--create-namespace"])
            .args(["--wait", "--timeout", "3m"])
            .args(["--set", &format!("fullnameOverride={service_account}")])
            .args([
                "--set",
                "replicaCount=0",
                "--set",
                "leaderElection.enabled=false",
            ])
            .args(["--set", "crds.install=false"])
            .args(["--set", "admissionPolicy.enabled=true"])
            .args(["--set", &format!("watchNamespaces={{{watched}}}")])
            .env("KUBECONFIG", kubeconfig)
            .output()
            .expect("helm must be on PATH (or set E2E_HELM)");
        assert!(
            install.status.success(),
            "helm install failed: {}",
            String::from_utf8_lossy(&install.stderr)
        );
        Self {
            kubeconfig: kubeconfig.into(),
            release: release.into(),
            namespace: namespace.into(),
            service_account: service_account.into(),
        }
    }

    /// A kubeconfig for the chart's ServiceAccount: the tester's cluster, the SA's token.
    pub fn service_account_kubeconfig(&self) -> String {
        let token = run(
            &self.kubeconfig,
            &[
                "-n",
                &self.namespace,
                "create",
                "token",
                &self.service_account,
                "--duration=1h",
            ],
        );
        assert!(token.status.success(), "kubectl create token failed");
        let view = run(
            &self.kubeconfig,
            &["config", "view", "--raw", "--minify", "-o", "json"],
        );
        assert!(view.status.success(), "kubectl config view failed");
        let mut config: Value = serde_json::from_slice(&view.stdout).expect("kubeconfig JSON");
        config["users"][0]["user"] =
            json!({"token": String::from_utf8_lossy(&token.stdout).trim()});
        let path = logs_dir().join(format!("{}-sa.kubeconfig", self.namespace));
        std::fs::write(&path, config.to_string()).expect("write the ServiceAccount kubeconfig");
        path.to_string_lossy().into_owned()
    }
}

impl Drop for ChartRelease {
    fn drop(&mut self) {
        let _ = Command::new(helm_bin())
            .args(["uninstall", &self.release, "--namespace", &self.namespace])
            .env("KUBECONFIG", &self.kubeconfig)
            .output();
        run(
            &self.kubeconfig,
            &["delete", "namespace", &self.namespace, "--wait=false"],
        );
    }
}

// ---------------------------------------------------------------- the operator

/// An operator process; killed (SIGKILL) on drop.
pub struct Operator {
    child: Option<Child>,
    log: PathBuf,
}

impl Operator {
    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `http://ADDR` of its admin listener, from its start-up log line.
    pub fn admin_url(&self) -> String {
        wait_for("the operator to serve /metrics", || {
            self.log()
                .lines()
                .filter(|l| l.contains("serving /metrics"))
                .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("addr=")))
                .map(|addr| format!("http://{}", addr.trim_matches('"')))
        })
    }

    /// The sum of every sample of metric `name` (all label sets), `None` when it has none.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (code, body) = http(&self.admin_url(), "GET", "/metrics", "");
        assert_eq!(code, 200, "GET /metrics: {body}");
        metric_sum(&body, name)
    }

    /// The sum of the samples of metric `name` whose labels include `label` (`key="value"`),
    /// `None` when it has none.
    pub fn metric_with(&self, name: &str, label: &str) -> Option<f64> {
        let (code, body) = http(&self.admin_url(), "GET", "/metrics", "");
        assert_eq!(code, 200, "GET /metrics: {body}");
        labelled_sum(&body, name, &[label])
    }

    /// SIGTERM, as a Pod's stop sends it; waits (at most `limit`) for the process to exit and
    /// tells whether it did.
    pub fn terminate(&mut self, limit: Duration) -> bool {
        let Some(child) = self.child.as_mut() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The sum of the samples of `name` in a Prometheus text exposition.
pub fn metric_sum(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| series.split('{').next() == Some(name))
        .filter_map(|(_, value)| value.trim().parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

/// The sum of the samples of `name` whose labels include every one of `labels` (`key="value"`)
/// in a Prometheus text exposition, `None` when it has none.
pub fn labelled_sum(exposition: &str, name: &str, labels: &[&str]) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric, present) = series.split_once('{').unwrap_or((series, ""));
            let present: Vec<&str> = present.trim_end_matches('}').split(',').collect();
            metric == name && labels.iter().all(|l| present.contains(l))
        })
        .filter_map(|(_, value)| value.trim().parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

// ---------------------------------------------------------------- the simulator

/// An `ecs-sim` process; killed on drop.
pub struct Sim {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Sim {
    /// Starts `ecs-sim` on `listen` (`127.0.0.1:0` for any port) accepting `AK:SECRET` plus
    /// what `flags` add; its log goes to `target/e2e-logs/<log_name>-sim.log`.
    pub fn start(log_name: &str, listen: &str, flags: &[&str]) -> Self {
        let log =
            std::fs::File::create(logs_dir().join(format!("{log_name}-sim.log"))).expect("sim log");
        let mut child = Command::new(BIN)
            .args([
                "ecs-sim",
                "--listen",
                listen,
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
        Self {
            child: Some(child),
            url,
        }
    }

    /// `127.0.0.1:PORT`, to start a replacement on the same address.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://").trim_end_matches('/')
    }

    pub fn set_items(&self, items: &[Value]) {
        let (code, body) = http(
            &self.url,
            "PUT",
            "/_sim/items",
            &Value::Array(items.to_vec()).to_string(),
        );
        assert!((200..300).contains(&code), "PUT /_sim/items: {code} {body}");
    }

    /// Replaces the injected faults (`PUT /_sim/faults`, camelCase JSON; `{}` for none).
    pub fn set_faults(&self, faults: &Value) {
        let (code, body) = http(&self.url, "PUT", "/_sim/faults", &faults.to_string());
        assert!(
            (200..300).contains(&code),
            "PUT /_sim/faults: {code} {body}"
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `DescribeImagePipelines` calls in a simulator request log (`--log FILE`, JSON lines).
pub fn describe_calls_logged(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["action"] == "DescribeImagePipelines")
        .collect()
}

/// A minimal HTTP/1.1 exchange (the simulator's admin endpoints, the operator's `/metrics`).
pub fn http(base: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(host).expect("connect");
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
pub fn describe_calls(stats: &Value) -> Option<u64> {
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

// ---------------------------------------------------------------- fixtures

pub fn pipeline(id: &str, region: &str) -> Value {
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

pub fn data_set() -> Vec<Value> {
    let mut items: Vec<Value> = (1..=6)
        .map(|i| pipeline(&format!("ip-hz{i:03}"), "cn-hangzhou"))
        .collect();
    items.extend((1..=3).map(|i| pipeline(&format!("ip-bj{i:03}"), "cn-beijing")));
    items
}

pub fn hangzhou_ids(items: &[Value]) -> Vec<String> {
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

pub fn query_manifest(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "ecs.mirror.io/v1alpha1",
        "kind": "ImagePipelineQuery",
        "metadata": {"name": name},
        "spec": spec,
    })
}

pub fn hangzhou_query(name: &str) -> Value {
    query_manifest(
        name,
        json!({"regionId": "cn-hangzhou", "credentials": {"secretRef": {"name": "ak"}}}),
    )
}

/// A query on `cn-hangzhou` selecting exactly `ids`.
pub fn ids_query(name: &str, ids: &[&str]) -> Value {
    query_manifest(
        name,
        json!({"regionId": "cn-hangzhou", "imagePipelineIds": ids, "credentials": {"secretRef": {"name": "ak"}}}),
    )
}
