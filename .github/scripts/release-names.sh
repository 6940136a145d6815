#!/usr/bin/env bash
# Where a release publishes, derived from the GitHub owner (lower-cased, as OCI references
# must be), so that a fork publishes to its own registry. Prints `key=value` lines for
# $GITHUB_OUTPUT:
#
#   image=ghcr.io/<owner>/imagepipeline-operator
#   chart_registry=oci://ghcr.io/<owner>/charts
#   chart=oci://ghcr.io/<owner>/charts/imagepipeline-operator
#
# The chart's default image.repository is what this prints for the canonical owner
# (imagepipeline-operator); tests/release.rs checks it.
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: release-names.sh OWNER" >&2
  exit 1
fi
owner="$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')"
[[ "$owner" =~ ^[a-z0-9]([a-z0-9-]*[a-z0-9])?$ ]] || {
  echo "release-names: \"$1\" is not a GitHub owner name" >&2
  exit 1
}
registry="ghcr.io/$owner"
echo "image=$registry/imagepipeline-operator"
echo "chart_registry=oci://$registry/charts"
echo "chart=oci://$registry/charts/imagepipeline-operator"
