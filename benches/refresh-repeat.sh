#!/usr/bin/env bash
# Unchanged refreshes, repeated, for an A/B of builds: for each binary given (in turn, ROUNDS
# times), one namespace's query of N pipelines on the real API server (../shared/k8s), the first
# sync, the idle CPU rate, then REFRESHES requested refreshes with nothing changed, each one's
# operator CPU (scheduler time of its threads, ns), minor page faults and context switches, from
# the annotation to a second after the status shows the sync.
#
#   benches/refresh-repeat.sh BIN [BIN...]
#   N=10000 REFRESHES=4 ROUNDS=2 benches/refresh-repeat.sh /tmp/old-build target/.../imagepipeline-operator
#
# real-server.sh measures the first refresh after the first sync once, with the memory figures;
# this one repeats the refresh, since one run of 10-20 ms varies by a few ms.
# Environment: N (10000), REFRESHES (4), ROUNDS (1), K8S_DIR (../shared/k8s beside the
# repository), K8S_HOME / K8S_API_PORT / K8S_ETCD_PORT / K8S_KCM_PORT (default /tmp/k8s-refresh,
# 6643, 2579, 10457), ADMIN_PORT (18188), KEEP=1 leaves the API server running, LOG_DIR=DIR keeps
# each operator's log there (operator-RUN.log), PERF_OUT=PREFIX records the operator during its
# refreshes with `perf record` (PREFIX-RUN.data; PERF_ARGS its options, `-F 20000` by default,
# e.g. `-F 5000 --call-graph dwarf` for call graphs).
set -euo pipefail

[ $# -ge 1 ] || { sed -n 2,16p "$0" >&2; exit 2; }
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_DIR="${K8S_DIR:-$ROOT/../shared/k8s}"
[ -x "$K8S_DIR/start.sh" ] || { echo "no API server kit at $K8S_DIR (set K8S_DIR)" >&2; exit 1; }
export K8S_HOME="${K8S_HOME:-/tmp/k8s-refresh}" K8S_API_PORT="${K8S_API_PORT:-6643}" \
  K8S_ETCD_PORT="${K8S_ETCD_PORT:-2579}" K8S_KCM_PORT="${K8S_KCM_PORT:-10457}"
N="${N:-10000}"
REFRESHES="${REFRESHES:-4}"
ROUNDS="${ROUNDS:-1}"
ADMIN_PORT="${ADMIN_PORT:-18188}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/refresh-repeat.XXXXXX")"
# shellcheck source=benches/support/kit.sh
source "$ROOT/benches/support/kit.sh"
# shellcheck source=benches/support/one-query.sh
source "$ROOT/benches/support/one-query.sh"

fresh_api_server "$1"
serve_hangzhou "$1" "$N"

faults() { awk '{ sub(/^.*\) /, ""); print $8 }' "/proc/$1/stat"; }
switches() { awk '/ctxt_switches/ { s += $2 } END { print s }' /proc/"$1"/task/*/status; }

run=0
for round in $(seq "$ROUNDS"); do
  for bin in "$@"; do
    run=$((run + 1))
    NS="refresh-$run"
    create_query "$NS"
    "$bin" run --namespace "$NS" --ecs-endpoint "$SIM_URL" \
      --admin-addr "127.0.0.1:$ADMIN_PORT" >"$WORK/operator-$run.log" 2>&1 &
    op=$!
    until query_synced "$NS" "$N" none; do sleep 0.3; done
    sleep 5
    c0=$(cpu_us "$op"); sleep 5
    if [ -n "${PERF_OUT:-}" ]; then
      perf record ${PERF_ARGS:--F 20000} -p "$op" -o "$PERF_OUT-$run.data" >/dev/null 2>&1 &
      perf_pid=$!
      sleep 1
    fi
    line="$bin (round $round): idle $(( ($(cpu_us "$op") - c0) / 5 )) us/s; refreshes (us of CPU / faults / switches):"
    for _ in $(seq "$REFRESHES"); do
      last=$(query_field "$NS" '{.status.lastSyncTime}')
      sleep 1.1 # a new second for lastSyncTime
      c0=$(cpu_us "$op"); f0=$(faults "$op"); s0=$(switches "$op")
      kubectl -n "$NS" annotate ipq q --overwrite "ecs.mirror.io/requested-at=$(date +%s%N)" >/dev/null
      until query_synced "$NS" "$N" "$last"; do sleep 0.1; done
      sleep 1 # the drift check after the status change
      line+=" $(( $(cpu_us "$op") - c0 ))/$(( $(faults "$op") - f0 ))/$(( $(switches "$op") - s0 ))"
    done
    if [ -n "${PERF_OUT:-}" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
    kill -TERM "$op"; wait "$op" 2>/dev/null || true
    [ -z "${LOG_DIR:-}" ] || cp "$WORK/operator-$run.log" "$LOG_DIR/"
    echo "$line"
  done
done
