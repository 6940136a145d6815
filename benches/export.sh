#!/usr/bin/env bash
# `imagepipeline-operator export` against the official Python SDK's pagination loop, on the
# same fake endpoint and the same items: CPU (user+sys) and peak RSS of each process, for every
# output format, at several sizes.
#
#   benches/export.sh                          # 4561 and 50000 pipelines in the listed region
#   SIZES="10000 100000" benches/export.sh
#   OPERATOR_BIN=target/x86_64-unknown-linux-musl/release/imagepipeline-operator benches/export.sh
#   SIZES=100000 AB_BINS="/tmp/old /tmp/new" benches/export.sh   # two builds alternated, no SDK
#
# `ecs-sim` serves the pipelines of one region (cn-hangzhou) from a generated data file. The
# SDK side is tests/sdk/page_sim.py (installed by .ci/install-sdks): the Tea client
# (alibabacloud_ecs20140526, ACS3-HMAC-SHA256, the SDK's default) and the legacy AcsClient,
# both paging with MaxResults=500, as `export --page-size 500` does. Figures are from GNU time
# (`%U + %S`, `%M`), best of RUNS (3) runs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIZES="${SIZES:-4561 50000}"
RUNS="${RUNS:-3}"
# `export --rate-limit` values measured: 0 (the default: no pacing of its own, as the SDK's
# loop) and 10 (the export paces itself as the operator does, sleeping about 100 ms before each
# page past the burst).
RATE_LIMITS="${RATE_LIMITS:-0 10}"
AK=LTAI5tSimulatorTestKey01
SK=SimulatorTestSecretDoNotUseInProd
WORK="$(mktemp -d "${TMPDIR:-/tmp}/export-bench.XXXXXX")"
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

if [ -z "${OPERATOR_BIN:-}" ] && [ -z "${AB_BINS:-}" ]; then
  arch="$(uname -m)"
  log "building the image's binary (static musl release)"
  (cd "$ROOT" && rustup target add "$arch-unknown-linux-musl" >/dev/null &&
    env "CC_${arch}_unknown_linux_musl=musl-gcc" \
      cargo build --release --locked --target "$arch-unknown-linux-musl" --bin imagepipeline-operator >&2)
  OPERATOR_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$arch-unknown-linux-musl/release/imagepipeline-operator"
fi
(cd "$ROOT" && cargo build --release --locked -p ecs-sim --bin ecs-sim >&2)
SIM_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/ecs-sim"
bash "$ROOT/.ci/install-sdks" >/dev/null
PY="$ROOT/.tools/sdk-venv/bin/python"

SIM_PID=""
cleanup() {
  [ -z "$SIM_PID" ] || kill "$SIM_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# best-of-RUNS "cpu_seconds peak_kib" of a command (stdout discarded)
measure() {
  local best_cpu="" best_rss="" out
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -f '%U %S %M' -o "$WORK/time" "$@" >/dev/null 2>"$WORK/stderr" ||
      { cat "$WORK/stderr" >&2; return 1; }
    out="$(awk '{ printf "%.2f %d", $1 + $2, $3 }' "$WORK/time")"
    local cpu="${out% *}" rss="${out#* }"
    if [ -z "$best_cpu" ] || awk -v a="$cpu" -v b="$best_cpu" 'BEGIN { exit !(a < b) }'; then best_cpu=$cpu; fi
    if [ -z "$best_rss" ] || [ "$rss" -lt "$best_rss" ]; then best_rss=$rss; fi
  done
  echo "$best_cpu $best_rss"
}

# AB_BINS="OLD NEW ...": instead of the SDK comparison, each build's export run in turn, AB_RUNS
# (10) rounds of every format, one run of each build after the other so that the machine's drift
# falls on all alike; CPU (user + system) median and mean per build and format.
alternate() { # url
  local i format bin
  : > "$WORK/ab"
  for i in $(seq "${AB_RUNS:-10}"); do
    for format in yaml json; do
      for bin in $AB_BINS; do
        /usr/bin/time -f "$bin $format %U %S" -a -o "$WORK/ab" "$bin" export --region cn-hangzhou \
          --endpoint "$1" --page-size 500 -o "$format" >/dev/null 2>"$WORK/stderr" ||
          { cat "$WORK/stderr" >&2; return 1; }
      done
    done
  done
  "$PY" - "$n" "$WORK/ab" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[2]):
    binary, fmt, user, system = line.split()
    runs[(binary, fmt)].append(float(user) + float(system))
for (binary, fmt), cpu in runs.items():
    print(f"| {sys.argv[1]} | {binary} | -o {fmt} | {len(cpu)} | "
          f"{statistics.median(cpu):.3f} | {statistics.mean(cpu):.3f} |")
PY
}

if [ -n "${AB_BINS:-}" ]; then
  printf '| pipelines | build | format | runs | CPU median (s) | CPU mean (s) |\n|---|---|---|---|---|---|\n'
else
  printf '| pipelines | client | CPU (s) | peak RSS (MiB) | CPU vs SDK (Tea) |\n|---|---|---|---|---|\n'
fi
for n in $SIZES; do
  "$PY" - "$n" > "$WORK/items.json" <<'PY'
import json, sys
n = int(sys.argv[1])
items = []
for i in range(n):
    items.append({
        "RegionId": "cn-hangzhou",
        "ImagePipelineId": f"ip-bench{i:08d}",
        "Name": f"pipeline-{i}",
        "Description": "nightly golden image for the payments team",
        "BaseImageType": "IMAGE",
        "BaseImage": "aliyun_3_x64_20G_alibase_20240819.vhd",
        "ImageName": f"golden-{i}",
        "InstanceType": "ecs.g7.large",
        "InternetMaxBandwidthOut": 5,
        "SystemDiskSize": 40,
        "VSwitchId": "vsw-bp1s5fnvk4gn2tws03624",
        "ResourceGroupId": "rg-acfmxazb4ph6aiy",
        "DeleteInstanceOnFailure": True,
        "BuildContent": "RUN yum update -y\nRUN yum install -y nginx",
        "CreationTime": "2024-08-19T08:00:00Z",
        "ToRegionIds": {"ToRegionId": ["cn-shanghai", "cn-beijing"]},
        "AddAccounts": {"AddAccount": ["1234567890123456"]},
        "Tags": {"Tag": [{"TagKey": "team", "TagValue": "payments"},
                          {"TagKey": "env", "TagValue": "prod"}]},
    })
json.dump(items, sys.stdout)
PY
  "$SIM_BIN" --data "$WORK/items.json" --credential "$AK:$SK" > "$WORK/sim.out" 2>"$WORK/sim.err" &
  SIM_PID=$!
  for _ in $(seq 100); do [ -s "$WORK/sim.out" ] && break; sleep 0.1; done
  url="$(head -n 1 "$WORK/sim.out" | grep -o 'http://[0-9.:]*' | head -n 1)"
  [ -n "$url" ] || { cat "$WORK/sim.err" >&2; exit 1; }
  export ALIBABA_CLOUD_ACCESS_KEY_ID=$AK ALIBABA_CLOUD_ACCESS_KEY_SECRET=$SK
  if [ -n "${AB_BINS:-}" ]; then
    alternate "$url"
    kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true; SIM_PID=""
    continue
  fi
  cases="{\"all\": {\"RegionId\": \"cn-hangzhou\", \"MaxResults\": 500}}"
  read -r tea_cpu tea_rss < <(measure "$PY" "$ROOT/tests/sdk/page_sim.py" --endpoint "$url" \
    --access-key-id "$AK" --access-key-secret "$SK" --styles tea-v3 --cases "$cases")
  read -r legacy_cpu legacy_rss < <(measure "$PY" "$ROOT/tests/sdk/page_sim.py" --endpoint "$url" \
    --access-key-id "$AK" --access-key-secret "$SK" --styles legacy-post --cases "$cases")
  row() { # name cpu rss
    printf '| %s | %s | %s | %.1f | %s |\n' "$n" "$1" "$2" "$(awk -v k="$3" 'BEGIN { print k / 1024 }')" \
      "$(awk -v a="$2" -v b="$tea_cpu" 'BEGIN { printf "%.3fx", a / b }')"
  }
  row "Python SDK, Tea client (tea-v3)" "$tea_cpu" "$tea_rss"
  row "Python SDK, legacy AcsClient" "$legacy_cpu" "$legacy_rss"
  for format in json yaml; do
    for rate in $RATE_LIMITS; do
      read -r cpu rss < <(measure "$OPERATOR_BIN" export --region cn-hangzhou --endpoint "$url" \
        --page-size 500 -o "$format" --rate-limit "$rate")
      if [ "$rate" = 0 ]; then row "export -o $format" "$cpu" "$rss"; else
        row "export -o $format --rate-limit $rate" "$cpu" "$rss"; fi
    done
  done
  kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true; SIM_PID=""
done
