#!/usr/bin/env bash
# Restarts, repeated, for an A/B of builds: one namespace's query of N pipelines on the real API
# server (../shared/k8s) mirrored once by a first sync (with the first binary), then, for each
# binary given (in turn, ROUNDS times), the operator started again on the objects already there:
# the seconds from its start to the query's next sync, its RSS 10 s after that sync and its peak
# (VmHWM), from /proc.
#
#   benches/restart-repeat.sh BIN [BIN...]
#   N=100000 ROUNDS=2 benches/restart-repeat.sh /tmp/old-build target/release/imagepipeline-operator
#
# real-server.sh measures one restart per size, with the other figures; this one repeats it on
# one API server, so that builds differing only in how they start are compared on the same data.
# Environment: N (100000), ROUNDS (2), K8S_DIR (../shared/k8s beside the repository), K8S_HOME /
# K8S_API_PORT / K8S_ETCD_PORT / K8S_KCM_PORT (default /tmp/k8s-restart, 6743, 2679, 10557),
# ADMIN_PORT (18288), KEEP=1 leaves the API server running.
set -euo pipefail

[ $# -ge 1 ] || { sed -n 2,15p "$0" >&2; exit 2; }
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_DIR="${K8S_DIR:-$ROOT/../shared/k8s}"
[ -x "$K8S_DIR/start.sh" ] || { echo "no API server kit at $K8S_DIR (set K8S_DIR)" >&2; exit 1; }
export K8S_HOME="${K8S_HOME:-/tmp/k8s-restart}" K8S_API_PORT="${K8S_API_PORT:-6743}" \
  K8S_ETCD_PORT="${K8S_ETCD_PORT:-2679}" K8S_KCM_PORT="${K8S_KCM_PORT:-10557}"
N="${N:-100000}"
ROUNDS="${ROUNDS:-2}"
ADMIN_PORT="${ADMIN_PORT:-18288}"
NS=restart
WORK="$(mktemp -d "${TMPDIR:-/tmp}/restart-repeat.XXXXXX")"
# shellcheck source=benches/support/kit.sh
source "$ROOT/benches/support/kit.sh"
# shellcheck source=benches/support/one-query.sh
source "$ROOT/benches/support/one-query.sh"

fresh_api_server "$1"
serve_hangzhou "$1" "$N"
create_query "$NS"

kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

run() { # BIN LABEL -> one start on the namespace, measured
  local last op t0 t1 rss hwm
  last="$(query_field "$NS" '{.status.lastSyncTime}')"
  sleep 1.1 # a new second for lastSyncTime
  t0=$(date +%s%N)
  "$1" run --namespace "$NS" --ecs-endpoint "$SIM_URL" \
    --admin-addr "127.0.0.1:$ADMIN_PORT" >"$WORK/operator.log" 2>&1 &
  op=$!
  until query_synced "$NS" "$N" "$last"; do sleep 0.5; done
  t1=$(date +%s%N)
  sleep 10
  rss=$(kib "$op" VmRSS); hwm=$(kib "$op" VmHWM)
  kill -TERM "$op"; wait "$op" 2>/dev/null || true
  awk -v l="$2" -v s="$(( (t1 - t0) / 1000000 ))" -v r="$rss" -v h="$hwm" 'BEGIN {
    printf "%s: synced %.1f s after its start; RSS %.1f MiB 10 s later, peak %.1f MiB\n",
      l, s / 1000, r / 1024, h / 1024 }'
}

run "$1" "first sync ($1)"
for round in $(seq "$ROUNDS"); do
  for bin in "$@"; do
    run "$bin" "restart ($bin, round $round)"
  done
done
