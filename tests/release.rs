//! The release pipeline (`.github/`): its scripts behave, and what users install agrees with
//! what it publishes: the chart's default image is the image the release pushes for the
//! canonical owner, the README installs the released chart version, and every version is the
//! tag's. The workflows themselves are linted by actionlint in `.ci/run` (`.ci/lint-workflows`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_yaml::Value;

/// The GitHub owner the project publishes under.
const CANONICAL_OWNER: &str = "imagepipeline-operator";
const CHART: &str = "charts/imagepipeline-operator";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    let full = root().join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn script(name: &str, args: &[&str], checkout: Option<&Path>) -> Output {
    let mut command = Command::new("bash");
    command
        .arg(root().join(".github/scripts").join(name))
        .args(args);
    if let Some(dir) = checkout {
        command.env("ROOT", dir);
    }
    command.output().expect("run bash")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `key=value` lines of release-names.sh for `owner`.
fn release_names(owner: &str) -> Vec<(String, String)> {
    let out = script("release-names.sh", &[owner], None);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn release_name(owner: &str, key: &str) -> String {
    release_names(owner)
        .into_iter()
        .find_map(|(k, v)| (k == key).then_some(v))
        .unwrap_or_else(|| panic!("release-names.sh prints no {key}"))
}

/// The (unquoted) value of the first line of `path` that starts with `prefix`, such as
/// `version = ` in Cargo.toml.
fn assignment(path: &str, prefix: &str) -> Option<String> {
    read(path)
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map(|v| v.trim().trim_matches('"').to_string())
}

fn cargo_version() -> String {
    assignment("Cargo.toml", "version = ").expect("Cargo.toml has a version")
}

fn chart_version() -> String {
    yaml(&format!("{CHART}/Chart.yaml"))["version"]
        .as_str()
        .expect("Chart.yaml has a version")
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// names

#[test]
fn the_charts_default_image_is_what_the_release_pushes_for_the_canonical_owner() {
    let values = yaml(&format!("{CHART}/values.yaml"));
    assert_eq!(
        values["image"]["repository"].as_str(),
        Some(release_name(CANONICAL_OWNER, "image").as_str())
    );
    assert_eq!(
        release_name(CANONICAL_OWNER, "image"),
        "ghcr.io/imagepipeline-operator/imagepipeline-operator"
    );
    assert_eq!(
        release_name(CANONICAL_OWNER, "chart"),
        "oci://ghcr.io/imagepipeline-operator/charts/imagepipeline-operator"
    );
}

#[test]
fn a_fork_publishes_to_its_own_lower_cased_registry() {
    assert_eq!(
        release_names("Some-Fork"),
        [
            ("image", "ghcr.io/some-fork/imagepipeline-operator"),
            ("chart_registry", "oci://ghcr.io/some-fork/charts"),
            (
                "chart",
                "oci://ghcr.io/some-fork/charts/imagepipeline-operator"
            ),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    for bad in ["", "a/b", "-x", "x y"] {
        let out = script("release-names.sh", &[bad], None);
        assert!(!out.status.success(), "{bad:?} accepted: {}", stdout(&out));
    }
}

#[test]
fn readme_installs_the_released_chart_and_keeps_the_local_path_for_development() {
    let readme = read("README.md");
    let section = readme
        .split_once("## Install with Helm")
        .and_then(|(_, rest)| rest.split_once("\n## "))
        .map(|(section, _)| section)
        .expect("README has an Install with Helm section");
    let chart = release_name(CANONICAL_OWNER, "chart");
    let released = format!(
        "helm install imagepipeline-operator {chart} --version {}",
        chart_version()
    );
    assert!(
        section.contains(&released),
        "the install section lacks `{released}`"
    );
    assert!(
        section.contains("helm install imagepipeline-operator charts/imagepipeline-operator"),
        "the local chart path for development is gone"
    );
}

// ---------------------------------------------------------------------------------------------
// versions

#[test]
fn the_current_versions_agree_with_a_tag_of_the_crate_version() {
    let version = cargo_version();
    assert_eq!(chart_version(), version);
    let out = script("check-version.sh", &[&format!("v{version}")], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), version);
}

/// A copy of the files check-version.sh reads, with `edit` applied to them.
fn checkout_with(edit: impl Fn(&str, String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "charts/imagepipeline-operator/Chart.yaml",
    ] {
        let target = dir.path().join(file);
        std::fs::create_dir_all(target.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&target, edit(file, read(file))).expect("write");
    }
    dir
}

#[test]
fn a_tag_that_disagrees_with_any_version_fails_naming_each_file() {
    let version = cargo_version();
    let out = script("check-version.sh", &["v99.0.0"], None);
    assert!(!out.status.success());
    let err = stderr(&out);
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "Chart.yaml version",
        "Chart.yaml appVersion",
    ] {
        assert!(err.contains(file), "{file} not named:\n{err}");
    }

    // Only the chart's appVersion lags behind: only it is named.
    let stale = checkout_with(|file, text| {
        if file.ends_with("Chart.yaml") {
            text.replace(
                &format!("appVersion: \"{version}\""),
                "appVersion: \"0.0.1\"",
            )
        } else {
            text
        }
    });
    let out = script(
        "check-version.sh",
        &[&format!("v{version}")],
        Some(stale.path()),
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("appVersion says \"0.0.1\""), "{err}");
    assert!(!err.contains("Cargo.toml"), "{err}");

    // All bumped together: the new tag passes.
    let bumped = checkout_with(|_, text| text.replace(&version, "1.2.3-rc.1"));
    let out = script("check-version.sh", &["v1.2.3-rc.1"], Some(bumped.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "1.2.3-rc.1");
}

#[test]
fn tags_that_are_not_v_semver_are_refused() {
    for tag in ["0.1.0", "v0.1", "v0.1.0.0", "release-0.1.0", "v01.0.0"] {
        let out = script("check-version.sh", &[tag], None);
        assert!(!out.status.success(), "{tag} accepted");
        assert!(stderr(&out).contains("not v<semver>"), "{}", stderr(&out));
    }
}

// ---------------------------------------------------------------------------------------------
// the workflows' wiring (their syntax is actionlint's job)

fn steps_text(job: &Value) -> String {
    serde_yaml::to_string(&job["steps"]).expect("serializable")
}

#[test]
fn release_runs_on_tags_checks_versions_first_and_publishes_signed_multi_arch_artifacts() {
    let release = yaml(".github/workflows/release.yml");
    assert_eq!(
        release["on"]["push"]["tags"],
        serde_yaml::from_str::<Value>("[\"v*\"]").expect("yaml")
    );
    let jobs = &release["jobs"];
    let prepare = steps_text(&jobs["prepare"]);
    assert!(prepare.contains(r#"check-version.sh "$GITHUB_REF_NAME""#));
    assert!(prepare.contains(r#"release-names.sh "$GITHUB_REPOSITORY_OWNER""#));
    assert_eq!(
        jobs["ci"]["uses"].as_str(),
        Some("./.github/workflows/ci.yml"),
        "nothing is published that CI rejects"
    );

    let arches: Vec<&str> = jobs["image"]["strategy"]["matrix"]["include"]
        .as_sequence()
        .expect("a platform matrix")
        .iter()
        .filter_map(|m| m["arch"].as_str())
        .collect();
    assert_eq!(arches, ["amd64", "arm64"]);
    let build = jobs["image"]["steps"]
        .as_sequence()
        .expect("steps")
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("docker/build-push-action@"))
        })
        .expect("a buildx build");
    assert_eq!(
        build["with"]["context"].as_str(),
        Some("."),
        "the Dockerfile"
    );
    assert_eq!(build["with"]["sbom"].as_bool(), Some(true));
    assert_eq!(build["with"]["provenance"].as_str(), Some("mode=max"));

    let image = steps_text(&jobs["publish-image"]);
    assert!(image.contains(r#"--tag "$IMAGE:$VERSION""#), "{image}");
    assert!(
        image.contains(r#"cosign sign --yes "$IMAGE@$DIGEST""#),
        "{image}"
    );
    assert_eq!(
        jobs["publish-image"]["permissions"]["id-token"].as_str(),
        Some("write"),
        "keyless signing needs the OIDC token"
    );

    let chart = steps_text(&jobs["chart"]);
    assert!(
        chart.contains(r#"--version "$VERSION" --app-version "$VERSION""#),
        "{chart}"
    );
    assert!(
        chart.contains(r#"helm push "dist/imagepipeline-operator-$VERSION.tgz" "$CHART_REGISTRY""#)
    );
    assert!(chart.contains("cosign sign --yes"));

    let github = steps_text(&jobs["github-release"]);
    assert!(github.contains("cp crds/imagepipeline-operator.yaml dist/crds.yaml"));
    assert!(github.contains("dist/crds.yaml"));
    assert!(github.contains("gh release create"));
}

#[test]
fn ci_runs_the_ci_script_and_the_end_to_end_suite_on_kind() {
    let ci = yaml(".github/workflows/ci.yml");
    assert!(ci["on"]["pull_request"].is_null() && ci["on"].get("pull_request").is_some());
    assert!(
        ci["on"].get("workflow_call").is_some(),
        "release.yml calls it"
    );
    assert!(steps_text(&ci["jobs"]["checks"]).contains("bash .ci/run"));
    let e2e = &ci["jobs"]["e2e"];
    let steps = steps_text(e2e);
    assert!(steps.contains("helm/kind-action@"), "{steps}");
    assert!(
        steps.contains("cargo test --locked --test e2e -- --test-threads=1"),
        "{steps}"
    );
    assert!(steps.contains("E2E_KUBECONFIG="), "{steps}");
    assert!(
        steps.contains("E2E_REQUIRE_CLUSTER: '1'") || steps.contains("E2E_REQUIRE_CLUSTER: \"1\""),
        "{steps}"
    );
}

// ---------------------------------------------------------------------------------------------
// the image: one toolchain, the Dockerfile and the offline image script agree

/// The Dockerfile's runtime stage (the last `FROM`): base, and the value of each instruction.
struct RuntimeStage {
    base: String,
    user: String,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    port: String,
}

fn dockerfile_runtime_stage() -> RuntimeStage {
    let dockerfile = read("Dockerfile");
    let stage = dockerfile
        .rsplit_once("\nFROM ")
        .map(|(_, stage)| stage)
        .expect("a FROM line");
    let instruction = |name: &str| -> String {
        let values: Vec<&str> = stage
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{name} ")))
            .collect();
        assert_eq!(values.len(), 1, "one {name} in the runtime stage");
        values[0].trim().to_string()
    };
    let json_list = |name: &str| -> Vec<String> {
        serde_json::from_str(&instruction(name))
            .unwrap_or_else(|e| panic!("{name} in exec (JSON) form: {e}"))
    };
    RuntimeStage {
        base: stage.lines().next().unwrap_or_default().trim().to_string(),
        user: instruction("USER"),
        entrypoint: json_list("ENTRYPOINT"),
        cmd: json_list("CMD"),
        port: instruction("EXPOSE"),
    }
}

/// `NAME="value"` assignments at the top of hack/offline-image.sh.
fn offline_script_definition(name: &str) -> String {
    assignment("hack/offline-image.sh", &format!("{name}="))
        .unwrap_or_else(|| panic!("hack/offline-image.sh defines no {name}"))
}

fn toolchain_channel() -> String {
    assignment("rust-toolchain.toml", "channel = ").expect("rust-toolchain.toml names a channel")
}

#[test]
fn one_pinned_toolchain_builds_locally_in_the_dockerfile_and_in_ci() {
    let channel = toolchain_channel();
    assert!(
        channel.split('.').count() == 3 && channel.split('.').all(|p| p.parse::<u32>().is_ok()),
        "a pinned release, not {channel:?}"
    );
    let dockerfile = read("Dockerfile");
    assert!(
        dockerfile.contains(&format!("ARG RUST_VERSION={channel}\n")),
        "the Dockerfile's build stage uses rust:{channel}"
    );
    assert!(dockerfile.contains("FROM rust:${RUST_VERSION} AS build"));
    for workflow in [".github/workflows/ci.yml", ".github/workflows/release.yml"] {
        let text = read(workflow);
        assert!(
            !text.contains("rust-toolchain@stable") && !text.contains("toolchain: stable"),
            "{workflow} installs another toolchain than rust-toolchain.toml's"
        );
    }
    let ci = read(".github/workflows/ci.yml");
    assert!(
        ci.contains("rust-toolchain.toml"),
        "ci.yml installs the toolchain of rust-toolchain.toml"
    );
}

#[test]
fn the_offline_image_script_restates_the_dockerfiles_runtime_stage() {
    let stage = dockerfile_runtime_stage();
    assert_eq!(offline_script_definition("RUNTIME_BASE"), stage.base);
    assert_eq!(offline_script_definition("RUNTIME_USER"), stage.user);
    assert_eq!(
        vec![offline_script_definition("RUNTIME_ENTRYPOINT")],
        stage.entrypoint
    );
    assert_eq!(vec![offline_script_definition("RUNTIME_CMD")], stage.cmd);
    assert_eq!(offline_script_definition("RUNTIME_PORT"), stage.port);
    assert!(
        stage.base.starts_with("gcr.io/distroless/static"),
        "a static binary needs no libc in the image: {}",
        stage.base
    );
}

/// The node kit's `mkimage.sh` (beside the checkout, or `NODE_KIT`), when present.
fn node_kit() -> Option<PathBuf> {
    let kit = std::env::var_os("NODE_KIT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            root()
                .parent()
                .map(|p| p.join("shared/k8s/node"))
                .unwrap_or_default()
        });
    kit.join("mkimage.sh").exists().then_some(kit)
}

#[test]
fn the_offline_image_has_the_dockerfiles_user_entrypoint_command_port_and_files() {
    let Some(kit) = node_kit() else {
        assert!(
            std::env::var("REQUIRE_NODE_KIT").as_deref() != Ok("1"),
            "REQUIRE_NODE_KIT=1 but no mkimage.sh beside the checkout (or in NODE_KIT)"
        );
        eprintln!("SKIPPED: no ../shared/k8s/node/mkimage.sh (set NODE_KIT)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // Any file stands in for the binary: what is compared is where it lands and how it runs.
    let binary = dir.path().join("imagepipeline-operator");
    std::fs::write(&binary, "#!/bin/sh\n").expect("stub binary");
    let tarball = dir.path().join("image.tar");
    let out = Command::new("bash")
        .arg(root().join("hack/offline-image.sh"))
        .arg("--binary")
        .arg(&binary)
        .arg("--out")
        .arg(&tarball)
        .arg("docker.io/local/imagepipeline-operator:test")
        .env("NODE_KIT", &kit)
        .output()
        .expect("run hack/offline-image.sh");
    assert!(out.status.success(), "{}", stderr(&out));

    let unpacked = dir.path().join("image");
    std::fs::create_dir(&unpacked).expect("mkdir");
    let tar = |archive: &Path, into: &Path| {
        let out = Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(into)
            .output()
            .expect("tar");
        assert!(out.status.success(), "{}", stderr(&out));
    };
    tar(&tarball, &unpacked);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(unpacked.join("manifest.json")).unwrap())
            .expect("manifest.json");
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["docker.io/local/imagepipeline-operator:test"])
    );
    let config_file = manifest[0]["Config"].as_str().expect("Config");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(unpacked.join(config_file)).unwrap())
            .expect("config JSON");
    let c = &config["config"];
    let stage = dockerfile_runtime_stage();
    assert_eq!(c["User"].as_str(), Some(stage.user.as_str()));
    assert_eq!(c["Entrypoint"], serde_json::json!(stage.entrypoint));
    assert_eq!(c["Cmd"], serde_json::json!(stage.cmd));
    assert!(
        c["ExposedPorts"]
            .get(format!("{}/tcp", stage.port))
            .is_some(),
        "{c}"
    );
    assert_eq!(
        c["Labels"]["org.opencontainers.image.version"].as_str(),
        Some(cargo_version().as_str())
    );
    assert_eq!(
        c["Labels"]["org.opencontainers.image.licenses"].as_str(),
        Some("Apache-2.0")
    );

    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).expect("mkdir");
    let layer = manifest[0]["Layers"][0].as_str().expect("one layer");
    tar(&unpacked.join(layer), &rootfs);
    let entrypoint = rootfs.join(stage.entrypoint[0].trim_start_matches('/'));
    assert_eq!(
        std::fs::read_to_string(&entrypoint).ok().as_deref(),
        Some("#!/bin/sh\n"),
        "the binary is the entrypoint"
    );
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).expect("/etc/passwd");
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
    let certs = std::fs::read_to_string(rootfs.join("etc/ssl/certs/ca-certificates.crt"))
        .expect("the CA bundle");
    assert!(certs.contains("BEGIN CERTIFICATE"));
    assert!(rootfs.join("tmp").is_dir());
}

// ---------------------------------------------------------------------------------------------
// workflows: what they must do, beyond actionlint

/// Every `uses:` of a workflow with its line.
fn uses(workflow: &str) -> Vec<String> {
    read(workflow)
        .lines()
        .filter_map(|l| l.trim().trim_start_matches("- ").strip_prefix("uses: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn third_party_actions_are_pinned_by_commit_and_cosign_by_version() {
    for workflow in [".github/workflows/ci.yml", ".github/workflows/release.yml"] {
        for action in uses(workflow) {
            if action.starts_with("./") {
                continue;
            }
            let reference = action
                .split_once('@')
                .map(|(_, r)| r.split_whitespace().next().unwrap_or_default())
                .unwrap_or_default();
            assert!(
                reference.len() == 40 && reference.chars().all(|c| c.is_ascii_hexdigit()),
                "{workflow}: {action} is not pinned by a commit SHA"
            );
            assert!(
                action.contains(" # v"),
                "{workflow}: {action} names no tag in a comment"
            );
        }
    }
    let release = yaml(".github/workflows/release.yml");
    for job in ["publish-image", "chart"] {
        let installer = release["jobs"][job]["steps"]
            .as_sequence()
            .expect("steps")
            .iter()
            .find(|s| {
                s["uses"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("sigstore/cosign-installer@"))
            })
            .unwrap_or_else(|| panic!("{job} installs cosign"));
        let version = installer["with"]["cosign-release"].as_str().unwrap_or("");
        assert!(
            version.starts_with('v') && version.split('.').count() == 3,
            "{job}: cosign version pinned, not {version:?}"
        );
    }
}

#[test]
fn a_failing_version_check_fails_and_every_signature_is_verified_right_after_signing() {
    let release = yaml(".github/workflows/release.yml");
    let jobs = &release["jobs"];
    let prepare = steps_text(&jobs["prepare"]);
    assert!(
        !prepare.contains(r#"echo "version=$(bash"#),
        "a command substitution inside echo hides the check's exit status"
    );
    assert!(
        prepare
            .contains(r#"version="$(bash .github/scripts/check-version.sh "$GITHUB_REF_NAME")""#)
    );
    // The check itself fails on a disagreeing tag (bash -e stops at the assignment).
    let out = Command::new("bash")
        .args(["-e", "-c"])
        .arg(format!(
            r#"version="$(bash {} v9.9.9)"; echo "version=$version""#,
            root().join(".github/scripts/check-version.sh").display()
        ))
        .output()
        .expect("bash");
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        !stdout(&out).contains("version="),
        "nothing reached the output"
    );

    for (job, signed) in [
        ("publish-image", r#""$IMAGE@$DIGEST""#),
        (
            "chart",
            r#""${CHART_REGISTRY#oci://}/imagepipeline-operator@$DIGEST""#,
        ),
    ] {
        let steps = jobs[job]["steps"].as_sequence().expect("steps");
        let text = |s: &Value| s["run"].as_str().unwrap_or_default().to_string();
        let sign = steps
            .iter()
            .position(|s| text(s).contains(&format!("cosign sign --yes {signed}")))
            .unwrap_or_else(|| panic!("{job} signs {signed}"));
        let verify = steps
            .get(sign + 1)
            .map(text)
            .unwrap_or_else(|| panic!("{job}: a step after signing"));
        assert!(
            verify.contains(&format!("cosign verify {signed}")),
            "{verify}"
        );
        assert!(
            verify.contains(r#"--certificate-identity "$GITHUB_SERVER_URL/$GITHUB_WORKFLOW_REF""#),
            "{verify}"
        );
        assert!(
            verify
                .contains("--certificate-oidc-issuer https://token.actions.githubusercontent.com")
        );
    }
}

#[test]
fn ci_starts_the_dockerfiles_image_as_the_charts_pods_on_kind_and_the_release_publishes_only_started_images()
 {
    let ci = yaml(".github/workflows/ci.yml");
    let e2e = &ci["jobs"]["e2e"];
    let steps = steps_text(e2e);
    for expected in [
        "docker/build-push-action@",
        "context: .",
        "load: true",
        "kind load docker-image",
        "helm install imagepipeline-operator charts/imagepipeline-operator",
        "--wait",
        "rollout status deployment/imagepipeline-operator",
        "E2E_IMAGE=",
        "E2E_POD_SIM_HOST",
        "E2E_REQUIRE_PODS: '1'",
        "lua5.4",
    ] {
        assert!(
            steps.contains(expected),
            "ci e2e lacks {expected}:\n{steps}"
        );
    }

    // kubectl within one minor version of the kind node.
    let kind = e2e["steps"]
        .as_sequence()
        .expect("steps")
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("helm/kind-action@"))
        })
        .expect("a kind cluster");
    let minor = |v: &str| -> u32 {
        v.trim_start_matches('v')
            .split('.')
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("no minor version in {v}"))
    };
    let node = kind["with"]["node_image"]
        .as_str()
        .and_then(|i| i.split_once(':'))
        .map(|(_, tag)| tag.split('@').next().unwrap_or_default().to_string())
        .expect("a pinned node image");
    let kubectl = kind["with"]["kubectl_version"]
        .as_str()
        .expect("kubectl_version");
    assert!(
        minor(&node).abs_diff(minor(kubectl)) <= 1,
        "{node} vs {kubectl}"
    );
    let tools = read(".ci/install-tools");
    let layer = tools
        .split("lambda-layer-kubectl-v")
        .nth(1)
        .and_then(|rest| rest.get(..2))
        .expect("the kubectl layer's version");
    assert!(
        minor(&node).abs_diff(layer.parse::<u32>().expect("minor")) <= 1,
        "the suite's kubectl (1.{layer}) vs the kind node {node}"
    );

    let release = yaml(".github/workflows/release.yml");
    let jobs = &release["jobs"];
    let publish_needs = serde_yaml::to_string(&jobs["publish-image"]["needs"]).unwrap_or_default();
    assert!(
        publish_needs.contains("image-e2e"),
        "the multi-arch tag waits for the pushed image's Pod tests"
    );
    let image_e2e = steps_text(&jobs["image-e2e"]);
    assert!(
        image_e2e.contains(r#"docker pull "$IMAGE@$digest""#),
        "{image_e2e}"
    );
    assert!(
        image_e2e.contains("cargo test --locked --test e2e pods"),
        "{image_e2e}"
    );
    let image = steps_text(&jobs["image"]);
    assert!(image.contains(r#""$IMAGE@$DIGEST" demo"#), "{image}");
    let tag = steps_text(&jobs["publish-image"]);
    for key in ["source", "version", "revision", "licenses"] {
        assert!(
            tag.contains(&format!(
                "--annotation \"index:org.opencontainers.image.{key}="
            )),
            "the index lacks the {key} annotation"
        );
    }
}
