#!/usr/bin/env bash
# Builds the operator's container image without any container engine, with the same contents as
# the Dockerfile's runtime stage, and optionally loads it into the local node's containerd.
#
#   hack/offline-image.sh [--load] [--binary PATH] [--out FILE.tar] [IMAGE:TAG...]
#
# The binary is the one the Dockerfile builds (the same `cargo build` command, musl, static),
# unless --binary names one. The root filesystem is what gcr.io/distroless/static gives the
# Dockerfile's binary: /etc/passwd and /etc/group with `nonroot` (65532), the Debian CA bundle
# (from this machine's ca-certificates package), /tmp and /home/nonroot, plus the libraries the
# binary links (none for the static musl build). ../shared/k8s/node/mkimage.sh (NODE_KIT)
# writes the tarball; the image config then gets the Dockerfile's USER, CMD, EXPOSE, ENV and
# OCI labels. --load imports it with load-image.sh into the node of $K8S_HOME.
# Every IMAGE:TAG given names the same image (default docker.io/local/imagepipeline-operator:dev).
set -euo pipefail
cd "$(dirname "$0")/.."

# The Dockerfile's runtime stage, restated; tests/release.rs fails when the two differ.
RUNTIME_BASE="gcr.io/distroless/static-debian12:nonroot"
RUNTIME_USER="65532:65532"
RUNTIME_ENTRYPOINT="/usr/local/bin/imagepipeline-operator"
RUNTIME_CMD="run"
RUNTIME_PORT="8080"
RUNTIME_ENV_PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RUNTIME_ENV_SSL_CERT_FILE="/etc/ssl/certs/ca-certificates.crt"

load=0 binary="" out="target/image/imagepipeline-operator.tar" names=()
while [ $# -gt 0 ]; do
  case "$1" in
    --load) load=1 ;;
    --binary) binary="$2"; shift ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) names+=("$1") ;;
  esac
  shift
done
[ "${#names[@]}" -gt 0 ] || names=("docker.io/local/imagepipeline-operator:dev")
NODE_KIT="${NODE_KIT:-$(dirname "$PWD")/shared/k8s/node}"
[ -x "$NODE_KIT/mkimage.sh" ] || { echo "no mkimage.sh in $NODE_KIT (set NODE_KIT)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed to write the image config" >&2; exit 1; }

if [ -z "$binary" ]; then
  # The Dockerfile's build command (tests/chart.rs keeps the Dockerfile and README in step).
  arch="$(uname -m)"
  command -v musl-gcc >/dev/null || { echo "musl-gcc missing: apt-get install musl-tools" >&2; exit 1; }
  rustup target add "$arch-unknown-linux-musl" >/dev/null
  export "CC_${arch}_unknown_linux_musl=musl-gcc"
  cargo build --release --locked --target "$arch-unknown-linux-musl"
  binary="target/$arch-unknown-linux-musl/release/imagepipeline-operator"
fi
[ -f "$binary" ] || { echo "no binary at $binary" >&2; exit 1; }
ca=/etc/ssl/certs/ca-certificates.crt
[ -s "$ca" ] || { echo "no CA bundle at $ca: apt-get install ca-certificates" >&2; exit 1; }

work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/home/nonroot" "$root/tmp"
install -m 0755 "$binary" "$root$RUNTIME_ENTRYPOINT"
install -m 0644 "$ca" "$root$RUNTIME_ENV_SSL_CERT_FILE"
chmod 1777 "$root/tmp"
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
GROUP
# The libraries a dynamically linked binary needs (a glibc build on distroless/cc); none for musl.
if ldd "$binary" >/dev/null 2>&1; then
  ldd "$binary" | { grep -oE '/[^ ]+' || true; } | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
fi

mkdir -p "$(dirname "$out")"
"$NODE_KIT/mkimage.sh" "${names[0]}" "$root" "$work/base.tar" "$RUNTIME_ENTRYPOINT" 2>/dev/null

# mkimage.sh writes Entrypoint and PATH only: add the rest of the Dockerfile's runtime stage.
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
mkdir "$work/image"
tar -C "$work/image" -xf "$work/base.tar"
python3 - "$work/image" "$version" "$revision" "${names[@]}" <<PY
import hashlib, json, os, sys
d, version, revision, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
manifest = json.load(open(os.path.join(d, "manifest.json")))
old = manifest[0]["Config"]
config = json.load(open(os.path.join(d, old)))
c = config["config"]
c["User"] = "$RUNTIME_USER"
c["Entrypoint"] = ["$RUNTIME_ENTRYPOINT"]
c["Cmd"] = ["$RUNTIME_CMD"]
c["ExposedPorts"] = {"$RUNTIME_PORT/tcp": {}}
c["Env"] = ["PATH=$RUNTIME_ENV_PATH", "SSL_CERT_FILE=$RUNTIME_ENV_SSL_CERT_FILE"]
c["WorkingDir"] = "/home/nonroot"
c["Labels"] = {
    "org.opencontainers.image.title": "imagepipeline-operator",
    "org.opencontainers.image.description": "Mirrors Alibaba Cloud ECS image pipelines into Kubernetes",
    "org.opencontainers.image.licenses": "Apache-2.0",
    "org.opencontainers.image.version": version,
    "org.opencontainers.image.revision": revision,
    "org.opencontainers.image.base.name": "$RUNTIME_BASE",
}
body = json.dumps(config, separators=(",", ":"), sort_keys=True).encode()
new = hashlib.sha256(body).hexdigest() + ".json"
os.remove(os.path.join(d, old))
open(os.path.join(d, new), "wb").write(body)
manifest[0]["Config"] = new
manifest[0]["RepoTags"] = names
json.dump(manifest, open(os.path.join(d, "manifest.json"), "w"))
PY
(cd "$work/image" && tar --owner=0 --group=0 --numeric-owner -cf - -- *) > "$out.partial"
mv "$out.partial" "$out"
echo "$out: ${names[*]} ($(du -h "$out" | cut -f1), binary $binary)" >&2

if [ "$load" = 1 ]; then
  "$NODE_KIT/load-image.sh" "$out" >&2
fi
