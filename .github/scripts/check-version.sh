#!/usr/bin/env bash
# Checks that a release tag and every place that names the version agree, and prints the
# version. The tag is the one source of a release's version; a tag that disagrees with
# Cargo.toml, Cargo.lock or the chart's version/appVersion fails the release before anything
# is built.
#
#   .github/scripts/check-version.sh v0.2.0     # prints 0.2.0, or names every mismatch and fails
#
# Environment: ROOT, the checkout to check (default: this repository).
set -euo pipefail

ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
CHART="$ROOT/charts/imagepipeline-operator/Chart.yaml"

fail() {
  printf 'check-version: %s\n' "$*" >&2
  exit 1
}

[ $# -eq 1 ] || fail "usage: check-version.sh vMAJOR.MINOR.PATCH[-PRERELEASE]"
tag="$1"
semver='^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$'
[[ "$tag" =~ $semver ]] || fail "tag \"$tag\" is not v<semver> (e.g. v1.2.3 or v1.2.3-rc.1)"
version="${tag#v}"

# The first `version = "..."` of [package] in Cargo.toml.
cargo_version="$(sed -n '/^\[package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n 1)"
# The version locked for the package itself (`cargo build --locked` refuses a stale Cargo.lock).
lock_version="$(awk '/^name = "imagepipeline-operator"$/ { getline; gsub(/^version = "|"$/, ""); print; exit }' "$ROOT/Cargo.lock")"
# Top-level `version:` and `appVersion:` of Chart.yaml, quoted or not.
chart_field() {
  sed -n "s/^$1:[[:space:]]*\"\{0,1\}\([^\"[:space:]]*\)\"\{0,1\}[[:space:]]*\$/\1/p" "$CHART" | head -n 1
}
chart_version="$(chart_field version)"
app_version="$(chart_field appVersion)"

mismatches=()
check() {
  [ "$2" = "$version" ] || mismatches+=("$1 says \"${2:-<missing>}\"")
}
check "Cargo.toml [package] version" "$cargo_version"
check "Cargo.lock (imagepipeline-operator)" "$lock_version"
check "charts/imagepipeline-operator/Chart.yaml version" "$chart_version"
check "charts/imagepipeline-operator/Chart.yaml appVersion" "$app_version"

if [ ${#mismatches[@]} -gt 0 ]; then
  printf 'check-version: tag %s means version %s, but:\n' "$tag" "$version" >&2
  printf '  %s\n' "${mismatches[@]}" >&2
  fail "bump them together (and README's install version), commit, and tag again"
fi
echo "$version"
