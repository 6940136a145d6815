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

fn cargo_version() -> String {
    read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .map(|v| v.trim().trim_matches('"').to_string())
        .expect("Cargo.toml has a version")
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
