#!/usr/bin/env bash
# The operator on a real API server (../shared/k8s): converge time, memory and writes for N
# pipelines of one query, with `kubectl apply --server-side` of the same objects as the yardstick.
#
#   benches/real-server.sh                      # N = 10000 and 50000
#   BENCH_SIZES=10000 benches/real-server.sh
#
# For every N: a fresh etcd (FRESH=1), the CRDs, `ecs-sim` serving N pipelines of one region,
# one namespace with one query and its Secret, and the release binary run as a process
# (`imagepipeline-operator run --namespace ...`). It prints one table row per N:
#
#   converge       query created -> status Ready/Synced with matchedCount = N
#   rss_steady     VmRSS 10 s after the first sync
#   hwm            VmHWM (peak RSS) of that process
#   writes_refresh ImagePipeline writes of a requested refresh with nothing changed (must be 0)
#   rss_restart    VmRSS 10 s after the first sync of a restarted operator (cache loaded,
#                  nothing to write)
#   kubectl        wall time of `kubectl apply --server-side` of the same N objects (from
#                  `imagepipeline-operator export`) into a second namespace, run as
#                  KUBECTL_PROCS (8) processes each applying every 8th object
#   ratio          converge / kubectl
#   refresh_cpu    operator CPU (scheduler time of its threads, ns resolution) of the requested
#                  refresh with nothing changed, per 1,000 objects: from the annotation to a
#                  second after the status shows the sync (the drift check its status change
#                  triggers included), idle time included (the log gives the idle rate)
#
# Environment: BENCH_SIZES (default 10000,50000), K8S_HOME / K8S_API_PORT / K8S_ETCD_PORT /
# K8S_KCM_PORT (passed to start.sh; defaults /tmp/k8s-bench, 6443, 2379, 10257), K8S_DIR (default
# ../shared/k8s beside the repository), OPERATOR_BIN (default: cargo build --release), RUN_ARGS
# (extra flags of `run`), KUBECTL_PROCS (8), SKIP_KUBECTL=1 (no kubectl yardstick, for the
# largest sizes), PERF_REFRESH=/path/prefix (a `perf record` of the operator during the
# unchanged refresh, one file per size; PERF_FREQ its rate, PERF_CALL_GRAPH=1 with call graphs,
# for a build with frame pointers), KEEP=1 leaves the API server running.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_DIR="${K8S_DIR:-$ROOT/../shared/k8s}"
[ -x "$K8S_DIR/start.sh" ] || { echo "no API server kit at $K8S_DIR (set K8S_DIR)" >&2; exit 1; }
export K8S_HOME="${K8S_HOME:-/tmp/k8s-bench}"
SIZES="${BENCH_SIZES:-10000,50000}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/real-server-bench.XXXXXX")"
AK=LTAI5tSimulatorTestKey01
SK=SimulatorTestSecretDoNotUseInProd
ADMIN_PORT="${ADMIN_PORT:-18088}"

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

if [ -z "${OPERATOR_BIN:-}" ]; then
  log "building the release binary"
  (cd "$ROOT" && cargo build --release --locked --bin imagepipeline-operator >&2)
  OPERATOR_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/imagepipeline-operator"
fi
# shellcheck source=benches/support/kit.sh
source "$ROOT/benches/support/kit.sh"

status_of() { # pid field(VmRSS|VmHWM) -> MiB
  awk -v f="$2:" '$1 == f { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

writes_total() {
  curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" |
    awk '/^imagepipeline_objects_written_total/ { s += $2 } END { print s + 0 }'
}

query_field() { kubectl -n "$NS" get ipq q -o "jsonpath=$1" 2>/dev/null || true; }

wait_until() { # seconds description command...
  local limit=$1 what=$2; shift 2
  local start=$SECONDS
  until "$@"; do
    if (( SECONDS - start > limit )); then log "timed out waiting for $what"; return 1; fi
    sleep 0.2
  done
}

synced() {
  [ "$(query_field '{.status.matchedCount}')" = "$N" ] &&
    [ "$(query_field '{.status.conditions[?(@.type=="Ready")].reason}')" = Synced ] &&
    [ "$(query_field '{.status.lastSyncTime}')" != "${1:-}" ]
}

start_operator() {
  "$OPERATOR_BIN" run --namespace "$NS" --ecs-endpoint "$SIM_URL" \
    --admin-addr "127.0.0.1:$ADMIN_PORT" ${RUN_ARGS:-} >>"$WORK/operator-$N.log" 2>&1 &
  OP_PID=$!
  PIDS+=("$OP_PID")
  wait_until 120 "readiness" curl -fs -o /dev/null "http://127.0.0.1:$ADMIN_PORT/readyz"
}

stop_operator() {
  kill -TERM "$OP_PID"
  wait "$OP_PID" 2>/dev/null || true
}

now_ms() { date +%s%3N; }

cpu_seconds() { # pid -> user+system CPU seconds so far
  awk -v tck="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.1f", ($12 + $13) / tck }' "/proc/$1/stat"
}
cpu_ms() { # pid -> user+system CPU milliseconds so far (clock-tick resolution)
  awk -v tck="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%d", ($12 + $13) * 1000 / tck }' "/proc/$1/stat"
}
KUBECTL_PROCS="${KUBECTL_PROCS:-8}"

printf '| pipelines | converge (s) | kubectl apply --server-side x%d (s) | ratio | operator CPU to converge (s) | RSS after first sync (MiB) | peak RSS VmHWM (MiB) | RSS after restart (MiB) | writes per unchanged refresh | CPU of an unchanged refresh (ms per 1,000 objects) |\n' "$KUBECTL_PROCS"
printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
declare -A RSS
for N in ${SIZES//,/ }; do
  log "N=$N: fresh API server"
  eval "export $(FRESH=1 "$K8S_DIR/start.sh" | tail -1)"
  "$OPERATOR_BIN" crds | kubectl apply -f - >/dev/null
  kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null

  start_sim() { # ecs-sim flags...
    : >"$WORK/sim.out"
    "$OPERATOR_BIN" ecs-sim "$@" >"$WORK/sim.out" 2>"$WORK/sim.err" &
    SIM_PID=$!
    PIDS+=("$SIM_PID")
    wait_until 30 "ecs-sim" grep -q http "$WORK/sim.out"
    SIM_URL="$(grep -o 'http://[^ ]*' "$WORK/sim.out" | head -1)"
  }
  # N generated pipelines, all in one region so that one query matches all of them.
  start_sim --generate "$N"
  curl -fsS "$SIM_URL/_sim/items" | jq -c '[.[] | .RegionId = "cn-hangzhou"]' >"$WORK/items.json"
  kill "$SIM_PID"
  start_sim --data "$WORK/items.json"

  NS="bench-$N"
  kubectl create namespace "$NS" >/dev/null
  kubectl -n "$NS" create secret generic ecs --from-literal=accessKeyId=$AK \
    --from-literal=accessKeySecret=$SK >/dev/null
  start_operator
  log "N=$N: operator ready (pid $OP_PID), creating the query"
  t0=$(now_ms)
  kubectl apply -f - >/dev/null <<EOF
apiVersion: ecs.mirror.io/v1alpha1
kind: ImagePipelineQuery
metadata: {name: q, namespace: $NS}
spec:
  regionId: cn-hangzhou
  refreshInterval: 1h
  credentials: {secretRef: {name: ecs}}
EOF
  wait_until 1800 "the first sync" synced
  converge=$(( $(now_ms) - t0 ))
  cpu=$(cpu_seconds "$OP_PID")
  log "N=$N: converged in ${converge} ms, operator CPU ${cpu} s"
  sleep 10
  rss=$(status_of "$OP_PID" VmRSS)
  hwm=$(status_of "$OP_PID" VmHWM)
  RSS[$N]=$rss

  idle0=$(cpu_us "$OP_PID")
  sleep 2
  idle_us_per_s=$(( ($(cpu_us "$OP_PID") - idle0) / 2 ))
  before=$(writes_total)
  refresh_cpu0=$(cpu_us "$OP_PID")
  last=$(query_field '{.status.lastSyncTime}')
  sleep 1 # lastSyncTime has one-second resolution
  if [ -n "${PERF_REFRESH:-}" ]; then
    perf record -F ${PERF_FREQ:-2000} ${PERF_CALL_GRAPH:+-g} -p "$OP_PID" -o "$PERF_REFRESH-$N.data" >/dev/null 2>&1 &
    perf_pid=$!
    sleep 0.5
  fi
  kubectl -n "$NS" annotate ipq q --overwrite "ecs.mirror.io/requested-at=$(date +%s%N)" >/dev/null
  wait_until 600 "the requested refresh" synced "$last"
  sleep 1 # the drift check after the status change
  if [ -n "${PERF_REFRESH:-}" ]; then
    kill -INT "$perf_pid"
    wait "$perf_pid" 2>/dev/null || true
    log "N=$N: profile of the refresh in $PERF_REFRESH-$N.data (perf report -i ... --no-children)"
  fi
  refresh_writes=$(( $(writes_total) - before ))
  refresh_cpu_us=$(( $(cpu_us "$OP_PID") - refresh_cpu0 ))
  log "N=$N: unchanged refresh: ${refresh_cpu_us} us of CPU, ${refresh_writes} writes (idle: ${idle_us_per_s} us of CPU per second)"
  log "N=$N: after the refresh: RSS $(status_of "$OP_PID" VmRSS) MiB, peak so far $(status_of "$OP_PID" VmHWM) MiB (after the first sync: RSS $rss, peak $hwm)"

  stop_operator
  last=$(query_field '{.status.lastSyncTime}')
  sleep 1
  start_operator
  wait_until 600 "the first sync after a restart" synced "$last"
  sleep 10
  rss_restart=$(status_of "$OP_PID" VmRSS)
  log "N=$N: after a restart and its first sync: RSS $rss_restart MiB, peak $(status_of "$OP_PID" VmHWM) MiB"
  restart_writes=$(writes_total)
  [ "$restart_writes" = 0 ] || log "WARNING: $restart_writes writes after a restart"
  stop_operator

  if [ "${SKIP_KUBECTL:-0}" = 1 ]; then
    kill "$SIM_PID" 2>/dev/null || true
    printf '| %d | %.1f | – | – | %s | %s | %s | %s | %d | %.1f |\n' "$N" \
      "$(bc -l <<<"$converge / 1000")" "$cpu" "$rss" "$hwm" "$rss_restart" "$refresh_writes" \
      "$(bc -l <<<"$refresh_cpu_us / $N")"
    continue
  fi
  log "N=$N: kubectl apply --server-side of the same objects"
  kubectl create namespace "$NS-kubectl" >/dev/null
  ALIBABA_CLOUD_ACCESS_KEY_ID=$AK ALIBABA_CLOUD_ACCESS_KEY_SECRET=$SK \
    "$OPERATOR_BIN" export --region cn-hangzhou --endpoint "$SIM_URL" \
    --namespace "$NS-kubectl" -o yaml >"$WORK/objects.yaml"
  # KUBECTL_PROCS processes, each applying every KUBECTL_PROCS-th object.
  rm -f "$WORK"/part-*.yaml
  awk -v n="$KUBECTL_PROCS" -v dir="$WORK" '/^---$/ { i++ } { print > (dir "/part-" (i % n) ".yaml") }' "$WORK/objects.yaml"
  t0=$(now_ms)
  kubectl_pids=()
  for part in "$WORK"/part-*.yaml; do
    kubectl apply --server-side -f "$part" >/dev/null &
    kubectl_pids+=("$!")
  done
  for pid in "${kubectl_pids[@]}"; do
    wait "$pid" || log "WARNING: a kubectl apply failed"
  done
  kubectl_ms=$(( $(now_ms) - t0 ))
  kill "$SIM_PID" 2>/dev/null || true

  printf '| %d | %.1f | %.1f | %.2f | %s | %s | %s | %s | %d | %.1f |\n' "$N" \
    "$(bc -l <<<"$converge / 1000")" "$(bc -l <<<"$kubectl_ms / 1000")" \
    "$(bc -l <<<"$converge / $kubectl_ms")" "$cpu" "$rss" "$hwm" "$rss_restart" "$refresh_writes" \
    "$(bc -l <<<"$refresh_cpu_us / $N")"
done
if [ -n "${RSS[10000]:-}" ] && [ -n "${RSS[50000]:-}" ]; then
  printf '\nmarginal RSS per mirrored object (10k -> 50k): %.2f KiB\n' \
    "$(bc -l <<<"(${RSS[50000]} - ${RSS[10000]}) * 1024 / 40000")"
fi
if [ -n "${RSS[10000]:-}" ] && [ -n "${RSS[100000]:-}" ]; then
  printf 'marginal RSS per mirrored object (10k -> 100k): %.2f KiB\n' \
    "$(bc -l <<<"(${RSS[100000]} - ${RSS[10000]}) * 1024 / 90000")"
fi
