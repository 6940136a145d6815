//! The chart's Pods on a real node (kubelet and containerd): the Helm chart installed with its
//! defaults except the image, the ECS endpoint and test credentials, running the image the
//! Dockerfile describes (built offline by `hack/offline-image.sh`, or with the Dockerfile and
//! `kind load` on kind).
//!
//! Needs, besides `E2E_KUBECONFIG`:
//! - `E2E_IMAGE`: `REPOSITORY:TAG` of the operator image, present on the node
//!   (`imagePullPolicy: Never`);
//! - `E2E_IMAGE_UPGRADE_TAG`: another tag of an image present on the node, for `helm upgrade`;
//! - `E2E_POD_SIM_HOST`: an address of this machine the Pods reach (the node kit's bridge
//!   `k8slocal0`, kind's docker network gateway); the simulator listens there;
//! - optionally `E2E_NODE_PROC=1` when the node's containers are processes of this machine that
//!   the tester may read (`/proc`, the cgroups): the security settings and memory are then read
//!   from the running process, not only from the Pod's status.
//!
//! Without `E2E_IMAGE` these tests print a notice and pass; `E2E_REQUIRE_PODS=1` (set by
//! `.ci/run` when it starts the node) fails them instead.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// The chart's default `--lease-duration`: a standby takes over within it (plus [`SLACK`]).
const LEASE_DURATION: Duration = Duration::from_secs(15);
/// Scheduling, the probes and the Lease's renew interval on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(10);
const RELEASE: &str = "imagepipeline-operator";
const LEASE: &str = "imagepipeline-operator-leader";

/// What the tests need to run the chart's Pods, or `None` (after a notice) to skip.
struct PodSetup {
    repository: String,
    tag: String,
    upgrade_tag: String,
    sim_host: String,
    node_proc: bool,
}

fn pod_setup(test: &str) -> Option<PodSetup> {
    let image = std::env::var("E2E_IMAGE").unwrap_or_default();
    let Some((repository, tag)) = image.rsplit_once(':').filter(|(r, _)| !r.is_empty()) else {
        assert!(
            std::env::var("E2E_REQUIRE_PODS").as_deref() != Ok("1"),
            "E2E_REQUIRE_PODS=1 but E2E_IMAGE (REPOSITORY:TAG) is not set"
        );
        eprintln!(
            "skipping {test}: set E2E_IMAGE, E2E_IMAGE_UPGRADE_TAG and E2E_POD_SIM_HOST to run \
             the chart's Pods (see .ci/run and the README's Tests section)"
        );
        return None;
    };
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| panic!("E2E_IMAGE is set, so {name} must be too"))
    };
    Some(PodSetup {
        repository: repository.to_string(),
        tag: tag.to_string(),
        upgrade_tag: var("E2E_IMAGE_UPGRADE_TAG"),
        sim_host: var("E2E_POD_SIM_HOST"),
        node_proc: std::env::var("E2E_NODE_PROC").as_deref() == Ok("1"),
    })
}

/// The chart installed with its defaults (two replicas, leader election, admission policy,
/// CRDs) but the image, `pullPolicy: Never` and the ECS endpoint. Uninstalled on drop.
struct DefaultRelease {
    kubeconfig: String,
    namespace: String,
    installed: bool,
}

impl DefaultRelease {
    fn helm(&self, args: &[&str]) -> std::process::Output {
        Command::new(helm_bin())
            .args(args)
            .args(["--namespace", &self.namespace])
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("helm must be on PATH (or set E2E_HELM)")
    }

    fn helm_ok(&self, args: &[&str]) -> String {
        let out = self.helm(args);
        assert!(
            out.status.success(),
            "helm {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn install(kubeconfig: &str, namespace: &str, setup: &PodSetup, endpoint: &str) -> Self {
        Self::install_with(kubeconfig, namespace, setup, endpoint, &[])
    }

    /// [`DefaultRelease::install`] with more `--set` values.
    fn install_with(
        kubeconfig: &str,
        namespace: &str,
        setup: &PodSetup,
        endpoint: &str,
        sets: &[&str],
    ) -> Self {
        let chart = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts/imagepipeline-operator");
        assert_image_on_a_node(kubeconfig, &format!("{}:{}", setup.repository, setup.tag));
        let mut release = Self {
            kubeconfig: kubeconfig.into(),
            namespace: namespace.into(),
            installed: false,
        };
        let started = Instant::now();
        release.helm_ok(
            &[
                "install",
                RELEASE,
                &chart.to_string_lossy(),
                "--create-namespace",
                "--wait",
                "--timeout",
                "4m",
                "--set",
                &format!("image.repository={}", setup.repository),
                "--set",
                &format!("image.tag={}", setup.tag),
                "--set",
                "image.pullPolicy=Never",
                "--set",
                &format!("ecs.endpoint={endpoint}"),
            ]
            .into_iter()
            .chain(sets.iter().flat_map(|s| ["--set", s]))
            .collect::<Vec<&str>>(),
        );
        release.installed = true;
        eprintln!(
            "helm install --wait: {:.1} s",
            started.elapsed().as_secs_f64()
        );
        release
    }

    fn kubectl_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-n", self.namespace.as_str()];
        full.extend_from_slice(args);
        full.extend_from_slice(&["-o", "json"]);
        let out = run(&self.kubeconfig, &full);
        assert!(
            out.status.success(),
            "kubectl {full:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("kubectl JSON")
    }

    /// The operator's Pods (not terminating), by name.
    fn pods(&self) -> BTreeMap<String, Value> {
        self.pods_of("app.kubernetes.io/name=imagepipeline-operator")
    }

    /// The Pods (not terminating) that `selector` selects, by name.
    fn pods_of(&self, selector: &str) -> BTreeMap<String, Value> {
        let list = self.kubectl_json(&["get", "pods", "-l", selector]);
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter_map(|p| Some((p["metadata"]["name"].as_str()?.to_string(), p.clone())))
            .collect()
    }

    /// The Lease's holder, when it names one.
    fn holder(&self) -> Option<String> {
        self.holder_of(LEASE)
    }

    /// The holder of the Lease `lease`, when it names one.
    fn holder_of(&self, lease: &str) -> Option<String> {
        let out = run(
            &self.kubeconfig,
            &["-n", &self.namespace, "get", "lease", lease, "-o", "json"],
        );
        let lease: Value = serde_json::from_slice(&out.stdout).ok()?;
        lease["spec"]["holderIdentity"]
            .as_str()
            .filter(|h| !h.is_empty())
            .map(str::to_string)
    }

    /// Waits until `n` Pods run the `tag`, every one Ready and never restarted.
    fn wait_pods_ready(&self, n: usize, tag: &str) -> BTreeMap<String, Value> {
        wait_for(&format!("{n} Ready operator Pods on tag {tag}"), || {
            let pods = self.pods();
            let ok = pods.len() == n
                && pods.values().all(|p| {
                    pod_ready(p)
                        && p["spec"]["containers"][0]["image"]
                            .as_str()
                            .is_some_and(|i| i.ends_with(&format!(":{tag}")))
                });
            ok.then_some(pods)
        })
    }
}

/// Fails at once, with the likely cause, when no node reports `image` (a Pod with
/// `pullPolicy: Never` would wait for it until helm's timeout). The kubelet's image garbage
/// collection removes unused images, the sandbox image included, when the disk is fuller than
/// its `imageGCHighThresholdPercent`. Nodes list at most 50 images in their status; with that
/// many the check is left to helm.
fn assert_image_on_a_node(kubeconfig: &str, image: &str) {
    let listed = |nodes: &Value| -> Option<bool> {
        let mut full = false;
        for node in nodes["items"].as_array()? {
            let images = node["status"]["images"].as_array()?;
            full |= images.len() >= 50;
            let names = images
                .iter()
                .flat_map(|i| i["names"].as_array().into_iter().flatten())
                .filter_map(Value::as_str);
            if names
                .into_iter()
                .any(|n| n == image || n.ends_with(&format!("/{image}")))
            {
                return Some(true);
            }
        }
        full.then_some(true)
    };
    // A node reports newly loaded images with its next status update (10 s here).
    wait_for_within(
        &format!(
            "a node to list the image {image} (loaded for the test; if it was, the kubelet's \
             image garbage collection may have removed it: free disk space below its \
             imageGCHighThresholdPercent and load it again)"
        ),
        Duration::from_secs(60),
        || {
            let out = run(kubeconfig, &["get", "nodes", "-o", "json"]);
            let nodes: Value = serde_json::from_slice(&out.stdout).ok()?;
            listed(&nodes).filter(|ok| *ok)
        },
    );
}

impl Drop for DefaultRelease {
    fn drop(&mut self) {
        if self.installed {
            let _ = self.helm(&["uninstall", RELEASE, "--wait", "--timeout", "2m"]);
        }
        run(
            &self.kubeconfig,
            &["delete", "namespace", &self.namespace, "--wait=false"],
        );
    }
}

/// A test namespace (the CRDs applied first, with kubectl, as the README's first install step
/// does) and a simulator serving `items` where the Pods reach it.
fn pod_env(test: &str, setup: &PodSetup, items: &[Value]) -> Option<Env> {
    let mut env = Env::without_operator(test, items, &[])?;
    env.sim.stop();
    env.sim = Sim::start(
        &format!("{}-pod", env.ns),
        &format!("{}:0", setup.sim_host),
        &[],
    );
    env.set_items(items);
    Some(env)
}

/// Ready, every container ready and started, none restarted.
fn pod_ready(pod: &Value) -> bool {
    let ready = pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    let statuses = pod["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ready
        && !statuses.is_empty()
        && statuses
            .iter()
            .all(|s| s["ready"] == true && s["started"] == true)
}

fn restarts(pod: &Value) -> u64 {
    pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["restartCount"].as_u64())
        .sum()
}

fn pod_ip(pod: &Value) -> String {
    pod["status"]["podIP"]
        .as_str()
        .expect("a running Pod has an IP")
        .to_string()
}

/// `/metrics` of a Pod, scraped from its IP on the chart's admin port.
fn scrape(pod: &Value) -> String {
    let (code, body) = http(
        &format!("http://{}:8080", pod_ip(pod)),
        "GET",
        "/metrics",
        "",
    );
    assert_eq!(code, 200, "GET /metrics from the Pod: {body}");
    body
}

/// The operator's process of a Pod on this machine: the process in a cgroup of the Pod whose
/// executable is the operator (not the sandbox's `pause`).
fn node_process(pod: &Value) -> u32 {
    let uid = pod["metadata"]["uid"]
        .as_str()
        .expect("pod uid")
        .to_string();
    let forms = [uid.clone(), uid.replace('-', "_")];
    wait_for("the Pod's process on the node", || {
        std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .find_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
                (forms.iter().any(|f| cgroup.contains(&format!("pod{f}")))
                    && comm.trim().starts_with("imagepipeline"))
                .then_some(pid)
            })
    })
}

/// `Key:` of `/proc/PID/status`, whitespace-split.
fn proc_status(pid: u32, key: &str) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The mount options of `/` as the process sees it.
fn root_mount_options(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap_or_default()
        .lines()
        .rfind(|l| l.split_whitespace().nth(4) == Some("/"))
        .and_then(|l| l.split_whitespace().nth(5).map(str::to_string))
        .unwrap_or_default()
}

fn resource_versions(env: &Env) -> BTreeMap<String, String> {
    let list = env.get_json(&["imagepipelines"]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p["metadata"]["name"].as_str()?.to_string(),
                p["metadata"]["resourceVersion"].as_str()?.to_string(),
            ))
        })
        .collect()
}

fn leading(metrics: &str) -> Option<f64> {
    metric_sum(metrics, "imagepipeline_leader")
}

fn written(metrics: &str) -> f64 {
    metric_sum(metrics, "imagepipeline_objects_written_total").unwrap_or(0.0)
}

#[test]
fn the_charts_default_install_runs_on_a_real_node_mirrors_hands_over_and_upgrades_without_writes() {
    let Some(setup) = pod_setup("the_charts_default_install_runs_on_a_real_node") else {
        return;
    };
    let mut items = data_set();
    let Some(env) = pod_env("pods", &setup, &items) else {
        return;
    };
    let system = format!("{}-system", env.ns);
    let release = DefaultRelease::install(&env.kubeconfig, &system, &setup, &env.sim.url);

    // The CRDs stay with whoever applied them: the default install neither failed on them nor
    // took them over.
    let manifest = release.helm_ok(&["get", "manifest", RELEASE]);
    assert!(
        !manifest.contains("kind: CustomResourceDefinition"),
        "the release adopted CRDs applied with kubectl"
    );
    let crd = release.kubectl_json(&["get", "crd", "imagepipelines.ecs.mirror.io"]);
    assert_ne!(
        crd["metadata"]["annotations"]["meta.helm.sh/release-namespace"].as_str(),
        Some(system.as_str()),
        "the release took over the CRD applied with kubectl"
    );

    // Two Ready Pods (the chart's default), probes passing, never restarted.
    let pods = release.wait_pods_ready(2, &setup.tag);
    for (name, pod) in &pods {
        assert_eq!(restarts(pod), 0, "{name} restarted");
        let volumes: Vec<&str> = pod["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert!(
            volumes.iter().all(|v| v.starts_with("kube-api-access-")),
            "{name} mounts only the ServiceAccount token, no kubeconfig: {volumes:?}"
        );
    }

    // The running process: UID/GID 65532, no capabilities, no privilege gain, read-only `/`,
    // the in-cluster config (no KUBECONFIG).
    if setup.node_proc {
        for (name, pod) in &pods {
            let pid = node_process(pod);
            assert_eq!(
                proc_status(pid, "Uid"),
                ["65532"; 4],
                "{name}: uids of pid {pid}"
            );
            assert_eq!(proc_status(pid, "Gid"), ["65532"; 4], "{name}: gids");
            for caps in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
                assert_eq!(
                    proc_status(pid, caps),
                    ["0000000000000000"],
                    "{name}: {caps}"
                );
            }
            assert_eq!(proc_status(pid, "NoNewPrivs"), ["1"], "{name}");
            let options = root_mount_options(pid);
            assert!(
                options.split(',').any(|o| o == "ro"),
                "{name}: / mounted {options}"
            );
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let environ = String::from_utf8_lossy(&environ);
            let vars: Vec<&str> = environ.split('\0').collect();
            assert!(
                !vars.iter().any(|v| v.starts_with("KUBECONFIG=")),
                "{name}: {vars:?}"
            );
            assert!(
                vars.iter()
                    .any(|v| v.starts_with("KUBERNETES_SERVICE_HOST=")),
                "{name}: {vars:?}"
            );
            eprintln!("{name}: pid {pid}, uid 65532, no capabilities, / {options}");
        }
    } else {
        eprintln!("E2E_NODE_PROC is not 1: the process checks are skipped");
    }

    // Exactly one replica holds the Lease and says so on /metrics, scraped from the Pod IP.
    let leader = wait_for("a Pod to hold the Lease", || {
        release.holder().filter(|h| pods.contains_key(h))
    });
    wait_for("exactly the holder to report itself leader", || {
        let leaders: Vec<&String> = pods
            .iter()
            .filter(|(_, p)| leading(&scrape(p)) == Some(1.0))
            .map(|(n, _)| n)
            .collect();
        (leaders == [&leader]).then_some(())
    });
    // A tenant's query with a credentials Secret: the Pods' RBAC and in-cluster config suffice
    // to mirror the exact set, and only the leader writes.
    env.secret();
    env.apply_ok(&hangzhou_query("hz"));
    let q = env.wait_ready("hz", "Synced");
    assert_eq!(q["status"]["matchedCount"], 6);
    assert_eq!(env.names(), hangzhou_ids(&items));
    for (name, pod) in &pods {
        let writes = written(&scrape(pod));
        if *name == leader {
            assert!(writes >= 6.0, "the leader wrote {writes}");
        } else {
            assert_eq!(writes, 0.0, "the standby {name} wrote");
        }
    }
    // The operator's families, scraped from the leader's Pod IP.
    let leader_metrics = scrape(&pods[&leader]);
    for family in [
        "imagepipeline_syncs",
        "imagepipeline_sync_duration_seconds",
        "imagepipeline_ecs_calls",
        "imagepipeline_pipelines_mirrored",
        "imagepipeline_objects_written",
        "imagepipeline_leader",
        "process_resident_memory_bytes",
    ] {
        assert!(
            leader_metrics
                .lines()
                .any(|l| !l.starts_with('#') && l.starts_with(family)),
            "/metrics from the leader's Pod has no sample of {family}"
        );
    }

    // Deleting the leader's Pod hands the Lease over; the new leader mirrors a cloud change
    // on a requested refresh.
    let deleted = Instant::now();
    run_ok(
        &env.kubeconfig,
        &["-n", &system, "delete", "pod", &leader, "--wait=false"],
    );
    let next = wait_for_within(
        "another Pod to take the Lease",
        LEASE_DURATION + SLACK + Duration::from_secs(30),
        || release.holder().filter(|h| *h != leader),
    );
    let takeover = deleted.elapsed();
    eprintln!(
        "leader hand-over after deleting Pod {leader}: {next} took the Lease in {:.1} s",
        takeover.as_secs_f64()
    );
    assert!(
        takeover <= LEASE_DURATION + SLACK,
        "hand-over took {takeover:?}, more than the lease duration plus {SLACK:?}"
    );
    items.push(pipeline("ip-hz007", "cn-hangzhou"));
    env.set_items(&items);
    let q = env.refresh("hz");
    assert_eq!(q["status"]["matchedCount"], 7);
    assert_eq!(env.names(), hangzhou_ids(&items));
    let pods = release.wait_pods_ready(2, &setup.tag);
    let new_leader = release.holder().expect("a holder");
    assert!(
        written(&scrape(&pods[&new_leader])) >= 1.0,
        "the new leader wrote ip-hz007"
    );

    // `helm upgrade` to another tag rolls the Pods and writes nothing to unchanged objects.
    let before = resource_versions(&env);
    let chart = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts/imagepipeline-operator");
    assert_image_on_a_node(
        &env.kubeconfig,
        &format!("{}:{}", setup.repository, setup.upgrade_tag),
    );
    let upgraded = Instant::now();
    release.helm_ok(&[
        "upgrade",
        RELEASE,
        &chart.to_string_lossy(),
        "--reuse-values",
        "--set",
        &format!("image.tag={}", setup.upgrade_tag),
        "--wait",
        "--timeout",
        "4m",
    ]);
    let pods = release.wait_pods_ready(2, &setup.upgrade_tag);
    eprintln!(
        "helm upgrade --wait to tag {}: {:.1} s",
        setup.upgrade_tag,
        upgraded.elapsed().as_secs_f64()
    );
    let upgraded_leader = wait_for("a Pod of the new tag to hold the Lease", || {
        release.holder().filter(|h| pods.contains_key(h))
    });
    let q = env.refresh("hz");
    assert_eq!(q["status"]["lastSyncResult"]["unchanged"], 7, "{q}");
    assert_eq!(
        resource_versions(&env),
        before,
        "an unchanged ImagePipeline was written across the upgrade"
    );
    assert_eq!(
        written(&scrape(&pods[&upgraded_leader])),
        0.0,
        "the upgraded leader wrote"
    );
    for (name, pod) in release.pods() {
        assert_eq!(restarts(&pod), 0, "{name} restarted");
    }

    // `helm uninstall` leaves the CRDs, the query and every mirrored ImagePipeline.
    release.helm_ok(&["uninstall", RELEASE, "--wait", "--timeout", "2m"]);
    wait_for("the operator Pods to be gone", || {
        release.pods().is_empty().then_some(())
    });
    for crd in [
        "imagepipelines.ecs.mirror.io",
        "imagepipelinequeries.ecs.mirror.io",
    ] {
        run_ok(&env.kubeconfig, &["get", "crd", crd]);
    }
    assert_eq!(env.names(), hangzhou_ids(&items));
    assert_eq!(resource_versions(&env), before);
    env.query("hz");
    match release.holder() {
        Some(h) => eprintln!("after helm uninstall the Lease still names {h}"),
        None => eprintln!("after helm uninstall no Lease is held"),
    }
}

/// The selector of one instance's Pods: the main one, or a shard's.
fn instance_pods(shard: Option<&str>) -> String {
    match shard {
        None => "app.kubernetes.io/name=imagepipeline-operator".into(),
        Some(s) => {
            format!("app.kubernetes.io/name=imagepipeline-operator-shard,ecs.mirror.io/shard={s}")
        }
    }
}

fn instance_lease(shard: Option<&str>) -> String {
    match shard {
        None => LEASE.into(),
        Some(s) => format!("{LEASE}-{s}"),
    }
}

fn shard_labelled(mut query: Value, shard: &str) -> Value {
    query["metadata"]["labels"] = serde_json::json!({ "sharding.fluxcd.io/key": shard });
    query
}

#[test]
fn the_chart_with_two_shards_runs_each_instance_in_its_own_pods_and_survives_a_shard_leader_loss() {
    let Some(setup) = pod_setup("the_chart_with_two_shards") else {
        return;
    };
    let items = data_set();
    let Some(mut env) = pod_env("pod-shards", &setup, &items) else {
        return;
    };
    env.secret();
    let system = format!("{}-system", env.ns);
    let release = DefaultRelease::install_with(
        &env.kubeconfig,
        &system,
        &setup,
        &env.sim.url,
        &["sharding.shards={shard1,shard2}"],
    );
    let shards = [None, Some("shard1"), Some("shard2")];
    let mut pods = BTreeMap::new();
    for shard in shards {
        let selector = instance_pods(shard);
        let ready = wait_for(&format!("2 Ready Pods of {selector}"), || {
            let p = release.pods_of(&selector);
            (p.len() == 2 && p.values().all(pod_ready)).then_some(p)
        });
        pods.insert(shard, ready);
    }
    let holders: BTreeMap<Option<&str>, String> = shards
        .iter()
        .map(|s| {
            let lease = instance_lease(*s);
            let holder = wait_for(&format!("{lease} to be held"), || release.holder_of(&lease));
            assert!(
                pods[s].contains_key(&holder),
                "{lease} held by {holder}, not by its Pods"
            );
            (*s, holder)
        })
        .collect();

    // Queries spread over the instances; qa (main) and qd (shard1) overlap on ip-hz002.
    env.apply_ok(&ids_query("qa", &["ip-hz001", "ip-hz002"]));
    env.apply_ok(&shard_labelled(ids_query("qb", &["ip-hz003"]), "shard1"));
    env.apply_ok(&shard_labelled(ids_query("qd", &["ip-hz002"]), "shard1"));
    env.apply_ok(&shard_labelled(
        ids_query("qc", &["ip-hz004", "ip-hz005"]),
        "shard2",
    ));
    for (query, shard) in [
        ("qa", "main"),
        ("qb", "shard1"),
        ("qd", "shard1"),
        ("qc", "shard2"),
    ] {
        let q = env.wait_ready(query, "Synced");
        assert_eq!(q["status"]["shard"], shard, "{query}");
    }
    wait_for(
        "exactly the selected pipelines, the shared one with both owners",
        || {
            let p = env.pipelines();
            let names: Vec<&str> = p.keys().map(String::as_str).collect();
            (names == ["ip-hz001", "ip-hz002", "ip-hz003", "ip-hz004", "ip-hz005"]
                && p["ip-hz002"].1.len() == 2)
                .then_some(())
        },
    );
    let wide = env.kubectl_ok(&["get", "ipq", "-o", "wide"]);
    assert!(wide.contains("SHARD") && wide.contains("shard2"), "{wide}");

    // 0 writes at steady state with every instance running, the overlap included.
    let before = resource_versions(&env);
    for q in ["qa", "qd", "qb", "qc"] {
        env.refresh(q);
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(resource_versions(&env), before, "0 writes at steady state");

    // A query moved from shard2 to shard1 keeps its objects.
    let uids = env.object_uids();
    env.kubectl_ok(&[
        "label",
        "--overwrite",
        "imagepipelinequery",
        "qc",
        "sharding.fluxcd.io/key=shard1",
    ]);
    wait_for("shard1 to serve qc", || {
        let q = env.query("qc");
        (q["status"]["shard"] == "shard1" && ready_reason(&q).as_deref() == Some("Synced"))
            .then_some(())
    });
    assert_eq!(env.object_uids(), uids, "no object re-created by the move");

    // shard1's leader Pod deleted: its standby takes over; the main instance and shard2 keep
    // their leaders and Pods.
    let old_leader = holders[&Some("shard1")].clone();
    run(
        &env.kubeconfig,
        &["-n", &system, "delete", "pod", &old_leader, "--wait=false"],
    );
    let lease = instance_lease(Some("shard1"));
    let new_leader = wait_for_within(
        "shard1's standby to take its Lease",
        LEASE_DURATION + SLACK + Duration::from_secs(20),
        || release.holder_of(&lease).filter(|h| *h != old_leader),
    );
    assert!(
        pods[&Some("shard1")].contains_key(&new_leader),
        "{new_leader}"
    );
    for shard in [None, Some("shard2")] {
        assert_eq!(
            release.holder_of(&instance_lease(shard)).as_ref(),
            Some(&holders[&shard]),
            "{shard:?} kept its leader"
        );
        let now = release.pods_of(&instance_pods(shard));
        assert_eq!(
            now.keys().collect::<Vec<_>>(),
            pods[&shard].keys().collect::<Vec<_>>(),
            "{shard:?}'s Pods untouched"
        );
        assert!(now.values().all(|p| restarts(p) == 0));
    }
    // The new shard1 leader serves its queries.
    let q = env.refresh("qb");
    assert_eq!(ready_reason(&q).as_deref(), Some("Synced"));
    assert_eq!(env.object_uids(), uids);
    env.sim.stop();
    drop(release);
}
