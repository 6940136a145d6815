//! Interoperability with Alibaba Cloud's official SDKs, both ways:
//!
//! * our client pages through `tests/sdk/verify_server.py`, an independent endpoint that checks
//!   every signature with the SDKs' own signing code (aliyunsdkcore, alibabacloud_openapi_util,
//!   alibabacloud_tea_openapi), with every filter and with STS credentials;
//! * the official SDKs (legacy core + aliyunsdkecs, the Tea client with v2 and V3 signatures)
//!   page through the in-process `ecs-sim` with every filter (`tests/sdk/page_sim.py`).
//!
//! The SDKs live in `.tools/sdk-venv` (`bash .ci/install-sdks`). Without it these tests print a
//! notice and pass, unless `REQUIRE_SDK=1`, when they fail.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use imagepipeline_operator::ecs::credentials::StaticProvider;
use imagepipeline_operator::ecs::{
    ClientConfig, Credentials, EcsClient, EcsError, PipelineFilter, SharedProvider, TagFilter,
};
use imagepipeline_operator::sim::{self, Credential, SimConfig, SimHandle};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const REGION: &str = "cn-hangzhou";
/// The tag value the issue names: space, `/`, `+`, `=`, `&`, `*`, `~` and non-ASCII.
const NASTY_VALUE: &str = "payments team/+=&*~ 支付";
const NASTY_KEY: &str = "cost center/+=&*~ 成本";

// ------------------------------------------------------------------------------------------
// The SDK venv

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's Python, or `None` (with a notice) when the SDKs are not installed and not
/// required. Panics when `REQUIRE_SDK=1` and they are missing.
fn sdk_python() -> Option<PathBuf> {
    let python = repo_root().join(".tools/sdk-venv/bin/python");
    if python.is_file() {
        return Some(python);
    }
    let required = std::env::var("REQUIRE_SDK").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "REQUIRE_SDK=1 but {} is missing: run `bash .ci/install-sdks`",
        python.display()
    );
    // Straight to stderr, past the test harness's capture, so the skip is seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED an SDK interop test: the official SDKs are not installed ({} is missing); \
         run `bash .ci/install-sdks` (REQUIRE_SDK=1 turns this into a failure)",
        python.display()
    );
    None
}

fn script(name: &str) -> PathBuf {
    repo_root().join("tests/sdk").join(name)
}

// ------------------------------------------------------------------------------------------
// Data and filters

/// A pipeline in the API's item shape plus `RegionId`.
fn item(id: &str, name: &str, region: &str, group: &str, tags: &[(&str, &str)]) -> Value {
    let tags: Vec<Value> = tags
        .iter()
        .map(|(k, v)| json!({"TagKey": k, "TagValue": v}))
        .collect();
    json!({
        "ImagePipelineId": id,
        "Name": name,
        "Description": format!("hand-made {id}"),
        "BaseImageType": "IMAGE",
        "BaseImage": "m-bp67acfmxazb4p0000",
        "InstanceType": "ecs.g7.large",
        "SystemDiskSize": 40,
        "InternetMaxBandwidthOut": 0,
        "DeleteInstanceOnFailure": true,
        "ResourceGroupId": group,
        "CreationTime": "2024-05-01T00:00:00Z",
        "Tags": {"Tag": tags},
        "ToRegionIds": {"ToRegionId": [region]},
        "AddAccounts": {"AddAccount": []},
        "RegionId": region,
    })
}

/// Enough tags that `Tag.10` and `Tag.11` sort before `Tag.2` in every signer's canonical string.
const EXTRA_TAGS: [(&str, &str); 10] = [
    ("extra-01", "v 01"),
    ("extra-02", "v+02"),
    ("extra-03", "v/03"),
    ("extra-04", "v=04"),
    ("extra-05", "v&05"),
    ("extra-06", "v*06"),
    ("extra-07", "v~07"),
    ("extra-08", "v%08"),
    ("extra-09", "v 支09"),
    ("extra-10", "v'\"10"),
];

/// Hand-made pipelines whose tags carry every character that encoders get wrong, spread so
/// that every filter below selects a proper, non-trivial subset.
fn handmade_items() -> Vec<Value> {
    let mut items = Vec::new();
    for i in 0..40u32 {
        let region = if i % 5 == 4 { "cn-shanghai" } else { REGION };
        let group = if i % 2 == 0 {
            "rg-acfmnasty01"
        } else {
            "rg-acfmnasty02"
        };
        let team = match i % 4 {
            0 => NASTY_VALUE,
            1 => "payments team", // the nasty value's prefix must not match it
            2 => "payments+team", // nor a value that differs only in space vs '+'
            _ => "a=b&c=d*e~f/g%h", // characters the form and URL encodings treat specially
        };
        let cost = if i % 3 == 0 { "ops 运维 ~*" } else { "dev" };
        let mut tags = vec![("team", team), (NASTY_KEY, cost)];
        if i % 7 == 0 {
            tags.push(("emoji", "rocket 🚀 + moon"));
            tags.extend(EXTRA_TAGS);
        }
        items.push(item(
            &format!("ip-nasty{i:04}"),
            &format!("golden.base_v{}:x-{}", i % 3, i % 2),
            region,
            group,
            &tags,
        ));
    }
    items
}

/// The data every test serves: the simulator's generated pipelines plus the hand-made ones.
fn dataset() -> Vec<Value> {
    let mut items = sim::generate(300, 42);
    items.extend(handmade_items());
    items
}

/// One named filter, as both our client and the SDK driver take it.
#[derive(Debug, Clone)]
struct Case {
    name: &'static str,
    region: String,
    group: Option<String>,
    pipeline_name: Option<String>,
    ids: Vec<String>,
    tags: Vec<(String, Option<String>)>,
    page_size: u32,
}

impl Case {
    fn new(name: &'static str, page_size: u32) -> Self {
        Self {
            name,
            region: REGION.into(),
            group: None,
            pipeline_name: None,
            ids: Vec::new(),
            tags: Vec::new(),
            page_size,
        }
    }

    fn group(mut self, g: &str) -> Self {
        self.group = Some(g.into());
        self
    }

    fn named(mut self, n: &str) -> Self {
        self.pipeline_name = Some(n.into());
        self
    }

    fn ids(mut self, ids: &[&str]) -> Self {
        self.ids = ids.iter().map(|s| s.to_string()).collect();
        self
    }

    fn tag(mut self, key: &str, value: Option<&str>) -> Self {
        self.tags.push((key.into(), value.map(str::to_string)));
        self
    }

    fn filter(&self) -> PipelineFilter {
        let mut f = PipelineFilter::region(&self.region);
        f.resource_group_id = self.group.clone();
        f.name = self.pipeline_name.clone();
        f.image_pipeline_ids = self.ids.clone();
        f.tags = self
            .tags
            .iter()
            .map(|(key, value)| TagFilter {
                key: key.clone(),
                value: value.clone(),
            })
            .collect();
        f.page_size = self.page_size;
        f
    }

    /// The filter as `page_sim.py` reads it (API parameter names).
    fn sdk_spec(&self) -> Value {
        let mut spec = json!({"RegionId": self.region, "MaxResults": self.page_size});
        if let Some(g) = &self.group {
            spec["ResourceGroupId"] = json!(g);
        }
        if let Some(n) = &self.pipeline_name {
            spec["Name"] = json!(n);
        }
        if !self.ids.is_empty() {
            spec["ImagePipelineIds"] = json!(self.ids);
        }
        if !self.tags.is_empty() {
            let tags: Vec<Value> = self
                .tags
                .iter()
                .map(|(k, v)| match v {
                    Some(v) => json!({"Key": k, "Value": v}),
                    None => json!({"Key": k}),
                })
                .collect();
            spec["Tags"] = json!(tags);
        }
        spec
    }

    /// The IDs the API must return for this filter, computed from the data: every condition
    /// must hold, every tag condition must match one of the item's tags.
    fn expected(&self, items: &[Value]) -> BTreeSet<String> {
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        items
            .iter()
            .filter(|it| s(it, "RegionId").as_deref() == Some(self.region.as_str()))
            .filter(|it| self.group.is_none() || s(it, "ResourceGroupId") == self.group)
            .filter(|it| self.pipeline_name.is_none() || s(it, "Name") == self.pipeline_name)
            .filter(|it| {
                self.ids.is_empty()
                    || s(it, "ImagePipelineId").is_some_and(|id| self.ids.contains(&id))
            })
            .filter(|it| {
                let tags: Vec<(String, String)> = it["Tags"]["Tag"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|t| Some((s(t, "TagKey")?, s(t, "TagValue")?)))
                            .collect()
                    })
                    .unwrap_or_default();
                self.tags.iter().all(|(key, value)| {
                    tags.iter()
                        .any(|(k, v)| k == key && value.as_ref().is_none_or(|want| want == v))
                })
            })
            .filter_map(|it| s(it, "ImagePipelineId"))
            .collect()
    }
}

/// Every filter of the API, alone and combined, with small pages so `NextToken` is followed.
/// Each one selects a proper subset of the region (checked), so a filter that is ignored or
/// mis-decoded changes the result.
fn cases(items: &[Value]) -> Vec<Case> {
    let cases = all_cases(items);
    let region_total = Case::new("all", 1).expected(items).len();
    for case in &cases {
        let n = case.expected(items).len();
        match case.name {
            "region-only" => assert_eq!(n, region_total),
            "nothing-matches" => assert_eq!(n, 0),
            name => assert!(
                0 < n && n < region_total,
                "{name} selects {n} of {region_total}: not a discriminating case"
            ),
        }
    }
    cases
}

fn all_cases(items: &[Value]) -> Vec<Case> {
    // Hand-made IDs of both regions and groups, one generated ID, and one that does not exist.
    let generated = items
        .first()
        .and_then(|it| it["ImagePipelineId"].as_str())
        .unwrap_or("ip-missing")
        .to_string();
    let some_ids: Vec<String> = [0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 14, 17, 21]
        .iter()
        .map(|i| format!("ip-nasty{i:04}"))
        .chain([generated, "ip-doesnotexist0".to_string()])
        .collect();
    let some_ids: Vec<&str> = some_ids.iter().map(String::as_str).collect();
    vec![
        Case::new("region-only", 7),
        Case::new("resource-group", 7).group("rg-acfmnasty02"),
        Case::new("name", 3).named("golden.base_v1:x-0"),
        Case::new("several-ids", 4).ids(&some_ids),
        Case::new("nasty-tag-value", 2).tag("team", Some(NASTY_VALUE)),
        Case::new("tag-value-with-form-specials", 3).tag("team", Some("a=b&c=d*e~f/g%h")),
        Case::new("nasty-key-and-value", 5)
            .tag(NASTY_KEY, Some("ops 运维 ~*"))
            .tag("team", Some("payments+team")),
        Case::new("key-only-tag-and-emoji", 1).tag("emoji", None),
        Case::new("every-filter", 2)
            .group("rg-acfmnasty01")
            .ids(&some_ids)
            .tag("team", Some(NASTY_VALUE))
            .tag(NASTY_KEY, None),
        Case::new("every-filter-with-name", 1)
            .group("rg-acfmnasty01")
            .named("golden.base_v0:x-0")
            .ids(&some_ids)
            .tag("team", Some(NASTY_VALUE))
            .tag("emoji", None),
        EXTRA_TAGS.iter().fold(
            Case::new("twelve-tags", 2)
                .tag("emoji", Some("rocket 🚀 + moon"))
                .tag("team", Some(NASTY_VALUE)),
            |case, (k, v)| case.tag(k, Some(v)),
        ),
        Case::new("generated-group-and-spaced-tag", 4)
            .group("rg-acfmpayments01")
            .tag("team", Some("data science")),
        Case::new("nothing-matches", 7).tag("team", Some("payments team/+=&*~ 支")),
    ]
}

// ------------------------------------------------------------------------------------------
// The verifying endpoint

const VERIFY_KEY_ID: &str = "LTAI5tVerifyKey";
const VERIFY_SECRET: &str = "verify/secret+with=chars~*";
const STS_KEY_ID: &str = "STS.NUverifyTemporary";
const STS_SECRET: &str = "sts+secret/xyz=";
const STS_TOKEN: &str = "CAIS/token+with=all&kinds*of~chars 支付==";

/// `verify_server.py`, killed when dropped (and exiting by itself when its stdin closes).
struct VerifyServer {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl VerifyServer {
    async fn start(python: &Path, items: &[Value]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("items.json");
        let log = dir.path().join("requests.jsonl");
        std::fs::write(&data, serde_json::to_vec(items).expect("items serialize"))
            .expect("write items");
        let mut child = Command::new(python)
            .arg(script("verify_server.py"))
            .arg("--data")
            .arg(&data)
            .arg("--log")
            .arg(&log)
            .arg("--credential")
            .arg(format!("{VERIFY_KEY_ID}:{VERIFY_SECRET}"))
            .arg("--credential")
            .arg(format!("{STS_KEY_ID}:{STS_SECRET}:{STS_TOKEN}"))
            .arg("--exit-on-stdin-eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start verify_server.py");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("verify_server.py prints its address within 30 s")
            .expect("read verify_server.py stdout")
            .expect("verify_server.py printed nothing");
        let url = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_string();
        Self {
            child,
            url,
            log,
            _dir: dir,
        }
    }

    /// Every request logged so far, oldest first.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("log lines are JSON"))
            .collect()
    }

    /// Drops the log, so the next assertions see only the next listing's requests.
    fn clear_log(&self) {
        let _ = std::fs::remove_file(&self.log);
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn client(url: &str) -> EcsClient {
    EcsClient::new(ClientConfig {
        endpoint: Some(url.to_string()),
        max_attempts: 1,
        rate_limit_qps: 1000,
        rate_limit_burst: 1000,
        ..Default::default()
    })
    .expect("client builds")
}

fn provider(credentials: Credentials) -> SharedProvider {
    Arc::new(StaticProvider::new("test", credentials))
}

fn param<'a>(request: &'a Value, name: &str) -> Option<&'a str> {
    request["params"][name].as_str()
}

/// Asserts that the logged requests are exactly one paged listing of `case`, sent by our
/// client as the official SDKs would verify it: one POST form per page, each carrying the
/// filter decoded exactly, `MaxResults`, and the previous page's `NextToken`.
fn assert_listing_requests(case: &Case, requests: &[Value], expected_pages: usize) {
    let name = case.name;
    assert_eq!(
        requests.len(),
        expected_pages,
        "{name}: one request per page: {requests:#?}"
    );
    let want: BTreeMap<String, String> = case.filter().to_params().into_iter().collect();
    for (i, r) in requests.iter().enumerate() {
        assert_eq!(r["status"], 200, "{name}: request {i} refused: {r:#}");
        assert_eq!(r["method"], "POST", "{name}: {r:#}");
        assert_eq!(r["content_type"], "application/x-www-form-urlencoded");
        assert_eq!(r["query"], json!([]), "{name}: everything in the form body");
        for (k, v) in &want {
            assert_eq!(
                param(r, k),
                Some(v.as_str()),
                "{name}: request {i} parameter {k}"
            );
        }
        assert_eq!(param(r, "MaxResults"), Some(&*case.page_size.to_string()));
        assert_eq!(param(r, "Action"), Some("DescribeImagePipelines"));
        assert_eq!(param(r, "Version"), Some("2014-05-26"));
        assert_eq!(param(r, "SignatureMethod"), Some("HMAC-SHA1"));
        assert_eq!(param(r, "SignatureVersion"), Some("1.0"));
        let token = param(r, "NextToken");
        if i == 0 {
            assert_eq!(token, None, "{name}: the first page has no NextToken");
        } else {
            assert!(
                token.is_some_and(|t| !t.is_empty()),
                "{name}: page {} follows NextToken",
                i + 1
            );
        }
    }
    let nonces: BTreeSet<_> = requests
        .iter()
        .filter_map(|r| param(r, "SignatureNonce"))
        .collect();
    assert_eq!(
        nonces.len(),
        requests.len(),
        "{name}: a fresh nonce per call"
    );
}

fn pages_for(n: usize, page_size: u32) -> usize {
    n.div_ceil(page_size as usize).max(1)
}

#[tokio::test]
async fn our_client_pages_through_an_endpoint_that_verifies_with_the_official_sdks() {
    let Some(python) = sdk_python() else {
        return;
    };
    let items = dataset();
    let server = VerifyServer::start(&python, &items).await;
    let client = client(&server.url);
    let creds = provider(Credentials::new(VERIFY_KEY_ID, VERIFY_SECRET));
    for case in cases(&items) {
        let expected = case.expected(&items);
        server.clear_log();
        let listing = client
            .list_all(&case.filter(), &creds)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let got: Vec<String> = listing
            .items
            .iter()
            .map(|i| i.image_pipeline_id.clone())
            .collect();
        let unique: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(unique.len(), got.len(), "{}: each ID once", case.name);
        assert_eq!(unique, expected, "{}: exactly the matching IDs", case.name);
        let pages = pages_for(expected.len(), case.page_size);
        assert_eq!(listing.pages as usize, pages, "{}", case.name);
        assert_listing_requests(&case, &server.requests(), pages);
    }
    server.stop().await;
}

#[tokio::test]
async fn nasty_tag_values_reach_the_verifying_endpoint_decoded_exactly() {
    let Some(python) = sdk_python() else {
        return;
    };
    let items = dataset();
    let server = VerifyServer::start(&python, &items).await;
    let case = Case::new("nasty", 500)
        .tag(NASTY_KEY, Some("ops 运维 ~*"))
        .tag("team", Some(NASTY_VALUE));
    let listing = client(&server.url)
        .list_all(
            &case.filter(),
            &provider(Credentials::new(VERIFY_KEY_ID, VERIFY_SECRET)),
        )
        .await
        .expect("listing");
    assert_eq!(listing.items.len(), case.expected(&items).len());
    let requests = server.requests();
    let [request] = requests.as_slice() else {
        panic!("one request expected: {requests:#?}");
    };
    assert_eq!(param(request, "Tag.1.Key"), Some(NASTY_KEY));
    assert_eq!(param(request, "Tag.1.Value"), Some("ops 运维 ~*"));
    assert_eq!(param(request, "Tag.2.Key"), Some("team"));
    assert_eq!(param(request, "Tag.2.Value"), Some(NASTY_VALUE));
    assert_eq!(param(request, "MaxResults"), Some("500"));
    server.stop().await;
}

#[tokio::test]
async fn our_client_with_sts_credentials_is_accepted_by_the_official_sdks_signers() {
    let Some(python) = sdk_python() else {
        return;
    };
    let items = dataset();
    let server = VerifyServer::start(&python, &items).await;
    let creds = provider(Credentials::new(STS_KEY_ID, STS_SECRET).with_security_token(STS_TOKEN));
    let client = client(&server.url);
    for case in cases(&items) {
        server.clear_log();
        let listing = client
            .list_all(&case.filter(), &creds)
            .await
            .unwrap_or_else(|e| panic!("{} with STS: {e}", case.name));
        let got: BTreeSet<String> = listing
            .items
            .iter()
            .map(|i| i.image_pipeline_id.clone())
            .collect();
        assert_eq!(got, case.expected(&items), "{} with STS", case.name);
        let requests = server.requests();
        assert!(!requests.is_empty());
        for r in &requests {
            assert_eq!(r["status"], 200, "{}: {r:#}", case.name);
            assert_eq!(param(r, "AccessKeyId"), Some(STS_KEY_ID));
            assert_eq!(param(r, "SecurityToken"), Some(STS_TOKEN));
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn the_verifying_endpoint_refuses_a_wrong_secret_with_signature_does_not_match() {
    let Some(python) = sdk_python() else {
        return;
    };
    let items = dataset();
    let server = VerifyServer::start(&python, &items).await;
    let case = Case::new("wrong-secret", 7).tag("team", Some(NASTY_VALUE));
    let err = client(&server.url)
        .list_all(
            &case.filter(),
            &provider(Credentials::new(VERIFY_KEY_ID, "not-the-secret")),
        )
        .await
        .expect_err("a wrong secret must be refused");
    match &err.error {
        EcsError::Api(api) => {
            assert_eq!(api.code, "SignatureDoesNotMatch", "{err}");
            assert_eq!(api.status, 400, "{err}");
        }
        other => panic!("expected SignatureDoesNotMatch, got {other}"),
    }
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "a signature error is not retried");
    assert_eq!(requests[0]["code"], "SignatureDoesNotMatch");

    // The same with a wrong STS token: the signature is right, the token is not.
    server.clear_log();
    let err = client(&server.url)
        .list_all(
            &case.filter(),
            &provider(
                Credentials::new(STS_KEY_ID, STS_SECRET).with_security_token("CAIS/other-token"),
            ),
        )
        .await
        .expect_err("a foreign token must be refused");
    assert!(
        matches!(&err.error, EcsError::Api(api) if api.code.starts_with("InvalidSecurityToken")),
        "{err}"
    );
    server.stop().await;
}

// ------------------------------------------------------------------------------------------
// `export` (the binary) against the verifying endpoint

/// `--resource-group-id`, `--name`, `--id`, `--tag KEY[=VALUE]` and `--page-size` for `case`, or
/// `None` when a tag key contains `=` (the flag splits at the first `=`, so such a key cannot be
/// written).
fn export_args(case: &Case) -> Option<Vec<String>> {
    let mut args = vec![
        "export".to_string(),
        "--region".into(),
        case.region.clone(),
        "--page-size".into(),
        case.page_size.to_string(),
        "-o".into(),
        "json".into(),
    ];
    if let Some(g) = &case.group {
        args.extend(["--resource-group-id".into(), g.clone()]);
    }
    if let Some(n) = &case.pipeline_name {
        args.extend(["--name".into(), n.clone()]);
    }
    for id in &case.ids {
        args.extend(["--id".into(), id.clone()]);
    }
    for (key, value) in &case.tags {
        if key.contains('=') {
            return None;
        }
        args.push("--tag".into());
        args.push(match value {
            Some(v) => format!("{key}={v}"),
            None => key.clone(),
        });
    }
    Some(args)
}

/// Runs `imagepipeline-operator export` against `url` with only the given credentials in its
/// environment; returns (success, stdout, stderr).
async fn run_export(
    url: &str,
    args: &[String],
    (key_id, secret, token): (&str, &str, Option<&str>),
) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imagepipeline-operator"));
    cmd.args(args)
        .arg("--endpoint")
        .arg(url)
        .env_clear()
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", key_id)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(token) = token {
        cmd.env("ALIBABA_CLOUD_SECURITY_TOKEN", token);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("export finishes within 2 minutes")
        .expect("run export");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The pipeline IDs of `export -o json`'s `v1` `List`, in order.
fn exported_ids(stdout: &str) -> Vec<String> {
    let list: Value = serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("export -o json printed no JSON ({e}): {stdout}"));
    assert_eq!(list["kind"], "List", "{stdout}");
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|o| o["spec"]["imagePipelineId"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn export_pages_through_an_endpoint_that_verifies_with_the_official_sdks() {
    let Some(python) = sdk_python() else {
        return;
    };
    let items = dataset();
    let server = VerifyServer::start(&python, &items).await;
    let mut exported_cases = 0;
    for case in cases(&items) {
        let Some(args) = export_args(&case) else {
            continue;
        };
        exported_cases += 1;
        server.clear_log();
        let key = (VERIFY_KEY_ID, VERIFY_SECRET, None);
        let (ok, stdout, stderr) = run_export(&server.url, &args, key).await;
        assert!(ok, "{}: export failed: {stderr}", case.name);
        let ids = exported_ids(&stdout);
        let unique: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(unique.len(), ids.len(), "{}: each ID once", case.name);
        assert_eq!(unique, case.expected(&items), "{}", case.name);
        let pages = pages_for(case.expected(&items).len(), case.page_size);
        assert_listing_requests(&case, &server.requests(), pages);
    }
    assert!(exported_cases >= 10, "most cases are expressible as flags");

    // STS credentials from the environment: the token travels and is signed; with the
    // export pacing itself (`--rate-limit 10`, as the operator does) the pages are the same.
    server.clear_log();
    let case = Case::new("export-sts", 3).tag("team", Some(NASTY_VALUE));
    let mut args = export_args(&case).expect("expressible");
    args.extend(["--rate-limit".into(), "10".into()]);
    let key = (STS_KEY_ID, STS_SECRET, Some(STS_TOKEN));
    let (ok, stdout, stderr) = run_export(&server.url, &args, key).await;
    assert!(ok, "export with STS failed: {stderr}");
    let ids: BTreeSet<String> = exported_ids(&stdout).into_iter().collect();
    assert_eq!(ids, case.expected(&items));
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .all(|r| { r["status"] == 200 && param(r, "SecurityToken") == Some(STS_TOKEN) })
    );

    // A wrong secret: refused by the SDKs' signers, reported, and nothing printed.
    let key = (VERIFY_KEY_ID, "not-the-secret", None);
    let (ok, stdout, stderr) = run_export(&server.url, &args, key).await;
    assert!(!ok, "a wrong secret must fail export: {stdout}");
    assert!(stderr.contains("SignatureDoesNotMatch"), "{stderr}");
    assert!(stdout.trim().is_empty(), "{stdout}");
    server.stop().await;
}

// ------------------------------------------------------------------------------------------
// The official SDKs against ecs-sim

/// Every client style of `page_sim.py`: the legacy core (POST as generated, GET, filters in a
/// form body) and the Tea client with v2 (HMAC-SHA1) and V3 (ACS3-HMAC-SHA256) signatures.
const STYLES_V1: &[&str] = &["legacy-post", "legacy-get", "legacy-post-form", "tea-v2"];
const STYLE_V3: &str = "tea-v3";

const SIM_STS_KEY_ID: &str = "STS.NUsimTemporary";
const SIM_STS_SECRET: &str = "sim+sts/secret=";
/// ASCII, as real tokens are (base64): the V3 signature carries it in an HTTP header.
const SIM_STS_TOKEN: &str = "CAIS/sim+token=with&odd*chars~ ==";

async fn start_sim(items: Vec<Value>) -> SimHandle {
    sim::start(SimConfig {
        items,
        credentials: vec![
            Credential::default_test(),
            Credential::new(SIM_STS_KEY_ID, SIM_STS_SECRET).with_security_token(SIM_STS_TOKEN),
        ],
        ..Default::default()
    })
    .await
    .expect("ecs-sim starts")
}

/// Runs `page_sim.py` and returns `{case: {style: {ids, pages, error}}}`.
async fn page_with_sdks(
    python: &Path,
    url: &str,
    (key_id, secret, token): (&str, &str, Option<&str>),
    styles: &[&str],
    cases: &[Case],
) -> Value {
    let spec: serde_json::Map<String, Value> = cases
        .iter()
        .map(|c| (c.name.to_string(), c.sdk_spec()))
        .collect();
    let mut cmd = Command::new(python);
    cmd.arg(script("page_sim.py"))
        .arg("--endpoint")
        .arg(url)
        .arg("--access-key-id")
        .arg(key_id)
        .arg("--access-key-secret")
        .arg(secret)
        .arg("--styles")
        .arg(styles.join(","))
        .arg("--cases")
        .arg(Value::Object(spec).to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(token) = token {
        cmd.arg("--security-token").arg(token);
    }
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("page_sim.py finishes within 5 minutes")
        .expect("run page_sim.py");
    assert!(
        out.status.success(),
        "page_sim.py failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "page_sim.py printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Checks that every style of every case got exactly the expected IDs, each once, in the
/// expected number of pages; returns one line per failure (with the refused request, if any).
fn sdk_failures(results: &Value, cases: &[Case], styles: &[&str], items: &[Value]) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let expected = case.expected(items);
        for style in styles {
            let r = &results[case.name][*style];
            let what = format!("{} / {style}", case.name);
            if !r["error"].is_null() {
                failures.push(format!("{what}: refused: {:#}", r["error"]));
                continue;
            }
            let ids: Vec<String> = r["ids"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let unique: BTreeSet<String> = ids.iter().cloned().collect();
            if unique.len() != ids.len() {
                failures.push(format!("{what}: an ID came twice: {ids:?}"));
            }
            if unique != expected {
                let missing: Vec<_> = expected.difference(&unique).collect();
                let extra: Vec<_> = unique.difference(&expected).collect();
                failures.push(format!("{what}: missing {missing:?}, unexpected {extra:?}"));
            }
            let pages = pages_for(expected.len(), case.page_size);
            if r["pages"].as_u64() != Some(pages as u64) {
                failures.push(format!("{what}: {} pages, expected {pages}", r["pages"]));
            }
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_v1_signed_sdk_clients_page_through_the_sim_with_every_filter() {
    let Some(python) = sdk_python() else {
        return;
    };
    let items = dataset();
    let sim = start_sim(items.clone()).await;
    let cases = cases(&items);
    let key = (
        sim::DEFAULT_ACCESS_KEY_ID,
        sim::DEFAULT_ACCESS_KEY_SECRET,
        None,
    );
    let results = page_with_sdks(&python, &sim.url(), key, STYLES_V1, &cases).await;
    let failures = sdk_failures(&results, &cases, STYLES_V1, &items);
    assert!(
        failures.is_empty(),
        "ecs-sim did not serve the official SDKs:\n{}",
        failures.join("\n")
    );
    let methods: BTreeSet<String> = sim.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(
        methods,
        BTreeSet::from(["GET".to_string(), "POST".to_string()]),
        "the SDKs called with both methods"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_v3_signed_sdk_client_pages_through_the_sim_with_every_filter() {
    let Some(python) = sdk_python() else {
        return;
    };
    let items = dataset();
    let sim = start_sim(items.clone()).await;
    let cases = cases(&items);
    let key = (
        sim::DEFAULT_ACCESS_KEY_ID,
        sim::DEFAULT_ACCESS_KEY_SECRET,
        None,
    );
    let results = page_with_sdks(&python, &sim.url(), key, &[STYLE_V3], &cases).await;
    let failures = sdk_failures(&results, &cases, &[STYLE_V3], &items);
    assert!(
        failures.is_empty(),
        "ecs-sim did not serve the V3-signed official SDK:\n{}",
        failures.join("\n")
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdk_clients_with_sts_credentials_page_through_the_sim() {
    let Some(python) = sdk_python() else {
        return;
    };
    let items = dataset();
    let sim = start_sim(items.clone()).await;
    let cases: Vec<Case> = cases(&items)
        .into_iter()
        .filter(|c| ["region-only", "every-filter"].contains(&c.name))
        .collect();
    let styles: Vec<&str> = STYLES_V1.iter().copied().chain([STYLE_V3]).collect();
    let key = (SIM_STS_KEY_ID, SIM_STS_SECRET, Some(SIM_STS_TOKEN));
    let results = page_with_sdks(&python, &sim.url(), key, &styles, &cases).await;
    let failures = sdk_failures(&results, &cases, &styles, &items);
    assert!(
        failures.is_empty(),
        "ecs-sim did not serve the official SDKs with STS credentials:\n{}",
        failures.join("\n")
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sim_refuses_official_sdk_requests_signed_with_a_wrong_secret() {
    let Some(python) = sdk_python() else {
        return;
    };
    let items = dataset();
    let sim = start_sim(items.clone()).await;
    let cases = vec![Case::new("wrong-secret", 7).tag("team", Some(NASTY_VALUE))];
    let styles: Vec<&str> = STYLES_V1.iter().copied().chain([STYLE_V3]).collect();
    let key = (sim::DEFAULT_ACCESS_KEY_ID, "not-the-secret", None);
    let results = page_with_sdks(&python, &sim.url(), key, &styles, &cases).await;
    for style in &styles {
        let r = &results["wrong-secret"][*style];
        // The legacy core turns a SignatureDoesNotMatch whose "server string to sign" equals
        // its own string to sign into InvalidAccessKeySecret: the sim's canonical string then
        // matched the SDK's byte for byte, and only the key differed.
        let expected = if style.starts_with("legacy") {
            "InvalidAccessKeySecret"
        } else {
            "SignatureDoesNotMatch"
        };
        assert_eq!(
            r["error"]["code"], expected,
            "{style}: a wrong secret must be refused: {r:#}"
        );
        assert_eq!(r["error"]["http_status"], 400, "{style}: {r:#}");
        assert_eq!(r["ids"], json!([]), "{style}");
    }
    sim.shutdown().await;
}
