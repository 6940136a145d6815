//! The ambient credential chain (environment, RRSA through STS `AssumeRoleWithOIDC`, the ECS
//! instance RAM role through the metadata service) against the simulator: the real providers,
//! the real `EcsClient`, the simulator's STS and metadata endpoints on the same listener.
//!
//! Settings are injected with `ChainProvider::from_env` and a map; the process environment is
//! never read or changed (tests run in parallel), except to clear it for the `export` child.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use imagepipeline_operator::ecs::ambient::{AmbientOverrides, ChainProvider, Lookup, imds, oidc};
use imagepipeline_operator::ecs::credentials::{
    ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, StaticProvider,
};
use imagepipeline_operator::ecs::{
    ClientConfig, CredentialsProvider, EcsClient, Listing, ListingError, PipelineFilter,
    SharedProvider,
};
use imagepipeline_operator::sim::{
    DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, Faults, ImdsConfig, ImdsStats, SimConfig,
    SimHandle, StsConfig, generate, start, token_fingerprint,
};
use serde_json::Value;

const ROLE_ARN: &str = "acs:ram::1234567890123456:role/imagepipeline-reader";
const PROVIDER_ARN: &str = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1";
const REGION: &str = "cn-hangzhou";
const EXPIRED: &str = "InvalidSecurityToken.Expired";

async fn sim(items: Vec<Value>, sts: StsConfig, imds: ImdsConfig) -> SimHandle {
    start(SimConfig {
        items,
        sts,
        imds,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

fn in_region(items: &[Value]) -> usize {
    items.iter().filter(|i| i["RegionId"] == REGION).count()
}

/// The chain of `settings`, with STS and the metadata service pointed at `sim`.
fn chain(sim: &SimHandle, settings: &[(&str, &str)]) -> Arc<ChainProvider> {
    let map: BTreeMap<String, String> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup: Lookup = Box::new(move |k| map.get(k).cloned());
    let overrides = AmbientOverrides {
        sts_endpoint: Some(sim.url()),
        imds_endpoint: Some(sim.url()),
    };
    Arc::new(ChainProvider::from_env(lookup, &overrides).expect("chain"))
}

fn token_file(dir: &tempfile::TempDir, token: &str) -> String {
    let path = dir.path().join("token");
    std::fs::write(&path, token).expect("write token");
    path.display().to_string()
}

/// The three RRSA variables, with the RAM role switched off.
fn rrsa(token_path: &str) -> Vec<(&'static str, &str)> {
    vec![
        (oidc::ENV_ROLE_ARN, ROLE_ARN),
        (oidc::ENV_OIDC_PROVIDER_ARN, PROVIDER_ARN),
        (oidc::ENV_OIDC_TOKEN_FILE, token_path),
        (imds::ENV_ECS_METADATA_DISABLED, "true"),
    ]
}

async fn list_with(
    sim: &SimHandle,
    provider: SharedProvider,
    page_size: u32,
) -> Result<Listing, ListingError> {
    let client = EcsClient::new(ClientConfig {
        endpoint: Some(sim.url()),
        ..ClientConfig::default()
    })
    .expect("client");
    let filter = PipelineFilter {
        page_size,
        ..PipelineFilter::region(REGION)
    };
    client.list_all(&filter, &provider).await
}

async fn list(sim: &SimHandle, provider: SharedProvider) -> Result<Listing, ListingError> {
    list_with(sim, provider, 500).await
}

/// `(AccessKeyId, error code)` of every ECS call the simulator answered.
fn ecs_calls(sim: &SimHandle) -> Vec<(String, Option<String>)> {
    sim.requests()
        .into_iter()
        .filter(|r| r.action.as_deref() == Some("DescribeImagePipelines"))
        .map(|r| {
            let ak = r.parameters.get("AccessKeyId").cloned().unwrap_or_default();
            (ak, r.code)
        })
        .collect()
}

#[tokio::test]
async fn rrsa_credentials_from_sts_list_pipelines_through_the_simulator() {
    let items = generate(30, 1);
    let sim = sim(items.clone(), StsConfig::default(), ImdsConfig::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = token_file(&dir, "oidc-token-1");
    let provider = chain(&sim, &rrsa(&path));
    assert_eq!(provider.provider_names(), ["env", "rrsa"]);

    let listing = list(&sim, provider.clone()).await.expect("listing");
    assert_eq!(listing.items.len(), in_region(&items));
    assert_eq!(provider.name(), "ambient/rrsa");
    assert_eq!(sim.oidc_tokens(), ["oidc-token-1"]);
    let calls = ecs_calls(&sim);
    assert!(!calls.is_empty());
    for (ak, code) in &calls {
        assert!(ak.starts_with("STS."), "{ak}");
        assert_eq!(code, &None);
    }
    let sts = sim
        .requests()
        .into_iter()
        .find(|r| r.action.as_deref() == Some("AssumeRoleWithOIDC"))
        .expect("an STS call");
    let p = &sts.parameters;
    assert_eq!(p["RoleArn"], ROLE_ARN);
    assert_eq!(p["OIDCProviderArn"], PROVIDER_ARN);
    assert_eq!(p["Version"], "2015-04-01");
    assert_eq!(p["OIDCToken"], token_fingerprint("oidc-token-1"));
    assert!(p.contains_key("RoleSessionName") && p.contains_key("DurationSeconds"));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_rotated_token_file_is_what_the_next_sts_call_sends() {
    // Five-second credentials are already inside the providers' expiry guard, so every use
    // fetches anew: the refresh after the rotation is deterministic.
    let sts = StsConfig {
        lifetime: Some(Duration::from_secs(5)),
        ..StsConfig::default()
    };
    let sim = sim(generate(8, 2), sts, ImdsConfig::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = token_file(&dir, "token-before-rotation");
    let provider = chain(&sim, &rrsa(&path));
    let first = provider.credentials().await.expect("first credentials");

    // The kubelet replaces the projected token (trailing newline and all).
    std::fs::write(&path, "token-after-rotation\n").expect("rotate");
    let second = provider.credentials().await.expect("refreshed credentials");
    assert_ne!(first.access_key_id, second.access_key_id);
    assert_eq!(
        sim.oidc_tokens(),
        ["token-before-rotation", "token-after-rotation"]
    );

    list(&sim, provider.clone()).await.expect("listing");
    let tokens = sim.oidc_tokens();
    assert!(tokens.len() > 2);
    assert!(tokens[1..].iter().all(|t| t == "token-after-rotation"));
    sim.shutdown().await;
}

#[tokio::test]
async fn credentials_expiring_during_a_long_listing_are_refreshed_before_any_call_fails() {
    // 45 one-item pages at 200 ms each take longer than the 8 s the credentials live, so the
    // listing outlives the first credentials by construction.
    let items = generate(180, 3);
    assert_eq!(in_region(&items), 45);
    let sts = StsConfig {
        lifetime: Some(Duration::from_secs(8)),
        ..StsConfig::default()
    };
    let sim = start(SimConfig {
        items: items.clone(),
        sts,
        faults: Faults {
            latency_ms: 200,
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = token_file(&dir, "long-listing-token");
    let provider = chain(&sim, &rrsa(&path));

    let listing = list_with(&sim, provider.clone(), 1)
        .await
        .expect("listing completes");
    assert_eq!(listing.items.len(), 45);
    assert_eq!(listing.retries, 0, "no call failed");
    let calls = ecs_calls(&sim);
    assert_eq!(calls.len(), 45);
    assert!(
        calls.iter().all(|(_, code)| code.is_none()),
        "{:?}",
        calls.iter().filter(|c| c.1.is_some()).collect::<Vec<_>>()
    );
    assert!(
        !sim.requests()
            .iter()
            .any(|r| r.code.as_deref() == Some(EXPIRED))
    );
    let keys: HashSet<&String> = calls.iter().map(|(ak, _)| ak).collect();
    assert!(keys.len() > 1, "credentials were refreshed: {keys:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn sts_credentials_work_until_they_expire_then_answer_expired() {
    // Expiration is whole seconds: three-second credentials stay valid for more than two.
    let sts = StsConfig {
        lifetime: Some(Duration::from_secs(3)),
        ..StsConfig::default()
    };
    let sim = sim(generate(8, 1), sts, ImdsConfig::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = token_file(&dir, "short-lived");
    let credentials = chain(&sim, &rrsa(&path))
        .credentials()
        .await
        .expect("credentials");
    let fixed: SharedProvider = Arc::new(StaticProvider::new("fixed", credentials));
    list(&sim, fixed.clone())
        .await
        .expect("accepted while valid");
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let err = list(&sim, fixed).await.expect_err("refused once expired");
    assert!(err.to_string().contains(EXPIRED), "{err}");
    sim.shutdown().await;
}

#[tokio::test]
async fn sts_down_is_a_clear_error_naming_sts_after_retries_with_backoff() {
    let sim = sim(generate(8, 1), StsConfig::default(), ImdsConfig::default()).await;
    sim.set_faults(Faults {
        sts_fail_every: 1,
        ..Faults::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let path = token_file(&dir, "token");
    let provider = chain(&sim, &rrsa(&path));
    let err = list(&sim, provider.clone())
        .await
        .expect_err("no credentials")
        .to_string();
    for needle in [
        "rrsa",
        "sts",
        "AssumeRoleWithOIDC",
        "503",
        "ServiceUnavailable",
    ] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
    assert!(sim.sts_calls() > 1, "retried: {}", sim.sts_calls());
    assert!(
        ecs_calls(&sim).is_empty(),
        "no ECS call without credentials"
    );
    let times: Vec<jiff::Timestamp> = sim
        .requests()
        .iter()
        .filter(|r| r.action.as_deref() == Some("AssumeRoleWithOIDC"))
        .map(|r| r.time.parse().expect("log time"))
        .collect();
    for pair in times.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(gap >= jiff::SignedDuration::from_millis(100), "{gap:?}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn sts_refusals_are_not_retried_and_quote_the_code() {
    let sts = StsConfig {
        role_arns: vec!["acs:ram::1234567890123456:role/someone-else".into()],
        ..StsConfig::default()
    };
    let sim = sim(generate(8, 1), sts, ImdsConfig::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = token_file(&dir, "token");
    let err = chain(&sim, &rrsa(&path))
        .credentials()
        .await
        .expect_err("unknown role")
        .to_string();
    assert!(
        err.contains("EntityNotExist.Role") && err.contains("404"),
        "{err}"
    );
    assert_eq!(sim.sts_calls(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_ecs_ram_role_is_read_with_an_imdsv2_token() {
    let items = generate(12, 4);
    let hardened = ImdsConfig {
        v2_only: true,
        ..ImdsConfig::default()
    };
    let sim = sim(items.clone(), StsConfig::default(), hardened).await;
    let provider = chain(&sim, &[]);
    assert_eq!(provider.provider_names(), ["env", "ecs-ram-role"]);
    let listing = list(&sim, provider.clone()).await.expect("listing");
    assert_eq!(listing.items.len(), in_region(&items));
    assert_eq!(provider.name(), "ambient/ecs-ram-role");
    let stats = sim.imds_stats();
    assert!(stats.tokens_issued >= 1, "{stats:?}");
    assert_eq!(
        (stats.v2_reads, stats.v1_reads, stats.unauthorized),
        (2, 0, 0)
    );
    assert_eq!(stats.role_lists, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_refused_imdsv2_token_falls_back_to_imdsv1() {
    let no_v2 = ImdsConfig {
        v2_disabled: true,
        ..ImdsConfig::default()
    };
    let sim = sim(generate(8, 1), StsConfig::default(), no_v2).await;
    let provider = chain(&sim, &[]);
    list(&sim, provider.clone()).await.expect("listing");
    assert_eq!(provider.name(), "ambient/ecs-ram-role");
    let stats = sim.imds_stats();
    assert_eq!(
        (stats.tokens_refused, stats.v1_reads, stats.v2_reads),
        (1, 2, 0)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn imdsv1_disabled_with_imdsv2_refused_is_a_clear_error() {
    let no_v2 = ImdsConfig {
        v2_disabled: true,
        ..ImdsConfig::default()
    };
    let sim = sim(generate(8, 1), StsConfig::default(), no_v2).await;
    let provider = chain(&sim, &[(imds::ENV_IMDSV1_DISABLED, "true")]);
    let err = provider
        .credentials()
        .await
        .expect_err("no fallback")
        .to_string();
    assert!(
        err.contains("ecs-ram-role")
            && err.contains(imds::ENV_IMDSV1_DISABLED)
            && err.contains("404"),
        "{err}"
    );
    assert_eq!(sim.imds_stats().v1_reads, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn alibaba_cloud_ecs_metadata_names_the_role() {
    let config = ImdsConfig {
        role_name: "named-node-role".into(),
        ..ImdsConfig::default()
    };
    let sim = sim(generate(8, 1), StsConfig::default(), config).await;
    let named = chain(&sim, &[(imds::ENV_ECS_METADATA, "named-node-role")]);
    list(&sim, named).await.expect("listing");
    let stats = sim.imds_stats();
    assert_eq!((stats.role_lists, stats.credentials_issued), (0, 1));

    let wrong = chain(&sim, &[(imds::ENV_ECS_METADATA, "not-attached")]);
    let err = wrong
        .credentials()
        .await
        .expect_err("no such role")
        .to_string();
    assert!(err.contains("not-attached") && err.contains("404"), "{err}");
    sim.shutdown().await;
}

#[tokio::test]
async fn ecs_metadata_disabled_skips_the_ram_role() {
    let sim = sim(generate(8, 1), StsConfig::default(), ImdsConfig::default()).await;
    let provider = chain(&sim, &[(imds::ENV_ECS_METADATA_DISABLED, "true")]);
    assert_eq!(provider.provider_names(), ["env"]);
    let err = provider
        .credentials()
        .await
        .expect_err("nothing configured");
    assert!(!err.to_string().contains("ecs-ram-role"), "{err}");
    assert_eq!(sim.imds_stats(), ImdsStats::default());
    sim.shutdown().await;
}

#[tokio::test]
async fn env_beats_rrsa_beats_the_ram_role() {
    let sim = sim(generate(8, 1), StsConfig::default(), ImdsConfig::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = token_file(&dir, "chain-token");
    let env = [
        (ENV_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_ID),
        (ENV_ACCESS_KEY_SECRET, DEFAULT_ACCESS_KEY_SECRET),
    ];
    let rrsa_vars = [
        (oidc::ENV_ROLE_ARN, ROLE_ARN),
        (oidc::ENV_OIDC_PROVIDER_ARN, PROVIDER_ARN),
        (oidc::ENV_OIDC_TOKEN_FILE, path.as_str()),
    ];

    let all: Vec<_> = env.iter().chain(&rrsa_vars).copied().collect();
    let provider = chain(&sim, &all);
    assert_eq!(provider.provider_names(), ["env", "rrsa", "ecs-ram-role"]);
    list(&sim, provider.clone()).await.expect("listing");
    assert_eq!(provider.name(), "ambient/env");
    assert_eq!(sim.sts_calls(), 0);
    assert_eq!(sim.imds_stats(), ImdsStats::default());

    let provider = chain(&sim, &rrsa_vars);
    list(&sim, provider.clone()).await.expect("listing");
    assert_eq!(provider.name(), "ambient/rrsa");
    assert_eq!(sim.sts_calls(), 1);
    assert_eq!(sim.imds_stats(), ImdsStats::default());

    let provider = chain(&sim, &[]);
    list(&sim, provider.clone()).await.expect("listing");
    assert_eq!(provider.name(), "ambient/ecs-ram-role");
    assert_eq!(sim.imds_stats().credentials_issued, 1);
    sim.shutdown().await;
}

async fn json_of(r: reqwest::Response) -> Value {
    let bytes = r.bytes().await.expect("body");
    serde_json::from_slice(&bytes).expect("JSON body")
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

#[tokio::test]
async fn the_metadata_service_answers_like_the_real_one() {
    let hardened = ImdsConfig {
        v2_only: true,
        ..ImdsConfig::default()
    };
    let sim = sim(vec![], StsConfig::default(), hardened).await;
    let http = http();
    let url = |p: &str| format!("{}{p}", sim.url());
    let creds_path = "/latest/meta-data/ram/security-credentials/";
    let status = |r: reqwest::Response| r.status().as_u16();
    let put = |ttl: Option<&str>| {
        let mut req = http.put(url("/latest/api/token"));
        if let Some(ttl) = ttl {
            req = req.header("X-aliyun-ecs-metadata-token-ttl-seconds", ttl);
        }
        req
    };
    for bad in [None, Some("0"), Some("21601"), Some("soon")] {
        assert_eq!(status(put(bad).send().await.expect("put")), 400, "{bad:?}");
    }
    let proxied = put(Some("60")).header("X-Forwarded-For", "10.0.0.1");
    assert_eq!(status(proxied.send().await.expect("put")), 403);
    assert_eq!(
        status(http.get(url(creds_path)).send().await.expect("get")),
        401
    );
    let forged = http
        .get(url(creds_path))
        .header("X-aliyun-ecs-metadata-token", "forged");
    assert_eq!(status(forged.send().await.expect("get")), 401);

    let token = put(Some("60"))
        .send()
        .await
        .expect("put")
        .text()
        .await
        .expect("token");
    let get = |path: &str| {
        http.get(url(path))
            .header("X-aliyun-ecs-metadata-token", token.as_str())
    };
    let role = get(creds_path)
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("role");
    assert_eq!(role, "sim-node-role");
    let body = json_of(
        get(&format!("{creds_path}{role}"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(body["Code"], "Success");
    for key in [
        "AccessKeyId",
        "AccessKeySecret",
        "SecurityToken",
        "Expiration",
        "LastUpdated",
    ] {
        assert!(body[key].as_str().is_some_and(|v| !v.is_empty()), "{key}");
    }
    let missing = get(&format!("{creds_path}other-role"))
        .send()
        .await
        .expect("get");
    assert_eq!(status(missing), 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn sts_reads_parameters_from_the_query_or_the_form_body() {
    let sim = sim(vec![], StsConfig::default(), ImdsConfig::default()).await;
    let http = http();
    let common = [
        ("Action", "AssumeRoleWithOIDC"),
        ("Version", "2015-04-01"),
        ("Format", "JSON"),
    ];
    let call = [
        ("RoleArn", ROLE_ARN),
        ("OIDCProviderArn", PROVIDER_ARN),
        ("OIDCToken", "tok"),
    ];
    let all: Vec<_> = common.iter().chain(&call).copied().collect();
    let in_query = json_of(http.post(sim.url()).query(&all).send().await.expect("post")).await;
    assert!(
        in_query["Credentials"]["AccessKeyId"].is_string(),
        "{in_query}"
    );
    let in_form = http.post(sim.url()).form(&all).send().await.expect("post");
    assert_eq!(in_form.status().as_u16(), 200);
    let too_long = http
        .post(sim.url())
        .query(&common)
        .form(&[call.as_slice(), &[("DurationSeconds", "86400")]].concat())
        .send()
        .await
        .expect("post");
    assert_eq!(too_long.status().as_u16(), 400);
    let body = json_of(too_long).await;
    assert_eq!(body["Code"], "InvalidParameter.DurationSeconds");
    assert!(body["RequestId"].is_string());
    sim.shutdown().await;
}

#[tokio::test]
async fn admin_faults_and_stats_cover_sts_and_the_metadata_service() {
    let sim = sim(generate(8, 1), StsConfig::default(), ImdsConfig::default()).await;
    let http = http();
    let admin = |p: &str| format!("{}/_sim/{p}", sim.url());
    let put = http
        .put(admin("faults"))
        .body(r#"{"stsFailEvery": 1}"#)
        .send()
        .await
        .expect("put faults");
    assert_eq!(put.status().as_u16(), 200);
    assert_eq!(sim.faults().sts_fail_every, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = token_file(&dir, "admin-token");
    chain(&sim, &rrsa(&path))
        .credentials()
        .await
        .expect_err("STS is down");
    chain(&sim, &[]).credentials().await.expect("RAM role");

    let stats = json_of(http.get(admin("stats")).send().await.expect("stats")).await;
    assert_eq!(stats["sts"]["calls"], 3);
    let fingerprint = token_fingerprint("admin-token");
    assert_eq!(
        stats["sts"]["oidcTokens"],
        serde_json::json!([fingerprint, fingerprint, fingerprint])
    );
    assert_eq!(stats["byCode"]["ServiceUnavailable"], 3);
    assert_eq!(stats["imds"]["credentialsIssued"], 1);
    assert_eq!(stats["imds"]["v2Reads"], 2);
    sim.shutdown().await;
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imagepipeline-operator"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ALIBABA_CLOUD_") {
            cmd.env_remove(&key);
        }
    }
    cmd
}

fn start_sim_process(log: &Path) -> (Killed, String) {
    let mut child = binary()
        .args(["ecs-sim", "--generate", "30", "--seed", "1"])
        .args([
            "--oidc-role-arn",
            ROLE_ARN,
            "--oidc-provider-arn",
            PROVIDER_ARN,
        ])
        .args(["--oidc-token", "export-token", "--log"])
        .arg(log)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ecs-sim starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let child = Killed(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, url)
}

#[test]
fn export_lists_with_rrsa_credentials_from_the_same_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("sim.jsonl");
    let (_sim, url) = start_sim_process(&log);
    let path = token_file(&dir, "export-token");
    let out = binary()
        .env(oidc::ENV_ROLE_ARN, ROLE_ARN)
        .env(oidc::ENV_OIDC_PROVIDER_ARN, PROVIDER_ARN)
        .env(oidc::ENV_OIDC_TOKEN_FILE, &path)
        .env(imds::ENV_ECS_METADATA_DISABLED, "true")
        .args(["export", "--region", REGION, "--endpoint", &url])
        .args(["--sts-endpoint", &url, "-o", "json"])
        .output()
        .expect("export runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("ambient"), "{stderr}");
    let list: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(list["kind"], "List");
    let got: HashSet<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| o["spec"]["imagePipelineId"].as_str().expect("id"))
        .collect();
    let items = generate(30, 1);
    let want: HashSet<&str> = items
        .iter()
        .filter(|i| i["RegionId"] == REGION)
        .map(|i| i["ImagePipelineId"].as_str().expect("id"))
        .collect();
    assert_eq!(got, want);

    let logged: Vec<Value> = std::fs::read_to_string(&log)
        .expect("sim log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("log line"))
        .collect();
    let sts: Vec<&Value> = logged
        .iter()
        .filter(|l| l["action"] == "AssumeRoleWithOIDC")
        .collect();
    assert_eq!(sts.len(), 1);
    assert_eq!(
        sts[0]["parameters"]["OIDCToken"],
        token_fingerprint("export-token")
    );
    let ecs: Vec<&Value> = logged
        .iter()
        .filter(|l| l["action"] == "DescribeImagePipelines")
        .collect();
    assert!(!ecs.is_empty());
    for call in ecs {
        assert_eq!(call["status"], 200);
        let ak = call["parameters"]["AccessKeyId"].as_str().expect("ak");
        assert!(ak.starts_with("STS."), "{ak}");
    }
}
