#!/usr/bin/env bash
# Queries created and deleted by the hundred on a real API server (../shared/k8s): the
# operator's resident memory must stay flat, because nothing is kept for a query that is gone.
#
#   benches/query-churn.sh                        # 200 cycles of a 2,000-pipeline query
#   CYCLES=50 PIPELINES=5000 benches/query-churn.sh
#
# One namespace, `ecs-sim` serving PIPELINES pipelines of one region, the release binary run as
# a process. Each cycle creates a new query matching all of them, waits until it is
# Ready/Synced, and deletes it (the next query adopts the objects before the garbage collector
# gets to them, so every cycle lists PIPELINES pipelines and rewrites their owner references).
# It prints VmRSS every REPORT_EVERY cycles and, at the end, the growth from the first report.
#
# Environment: CYCLES (200), PIPELINES (2000), REPORT_EVERY (20), K8S_HOME / K8S_API_PORT /
# K8S_ETCD_PORT / K8S_KCM_PORT (for start.sh; default K8S_HOME /tmp/k8s-churn), K8S_DIR,
# OPERATOR_BIN (default: cargo build --release), KEEP=1 leaves the API server running.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_DIR="${K8S_DIR:-$ROOT/../shared/k8s}"
[ -x "$K8S_DIR/start.sh" ] || { echo "no API server kit at $K8S_DIR (set K8S_DIR)" >&2; exit 1; }
export K8S_HOME="${K8S_HOME:-/tmp/k8s-churn}"
CYCLES="${CYCLES:-200}"
PIPELINES="${PIPELINES:-2000}"
REPORT_EVERY="${REPORT_EVERY:-20}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/query-churn.XXXXXX")"
AK=LTAI5tSimulatorTestKey01
SK=SimulatorTestSecretDoNotUseInProd
ADMIN_PORT="${ADMIN_PORT:-18089}"
NS=churn

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

if [ -z "${OPERATOR_BIN:-}" ]; then
  log "building the release binary"
  (cd "$ROOT" && cargo build --release --locked --bin imagepipeline-operator >&2)
  OPERATOR_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/imagepipeline-operator"
fi
# shellcheck source=benches/support/kit.sh
source "$ROOT/benches/support/kit.sh"

rss_mib() { awk '$1 == "VmRSS:" { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

wait_until() { # seconds description command...
  local limit=$1 what=$2; shift 2
  local start=$SECONDS
  until "$@"; do
    if (( SECONDS - start > limit )); then log "timed out waiting for $what"; return 1; fi
    sleep 0.2
  done
}

synced() { # query
  [ "$(kubectl -n "$NS" get ipq "$1" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].reason}/{.status.matchedCount}' 2>/dev/null)" = "Synced/$PIPELINES" ]
}

log "fresh API server"
eval "export $(FRESH=1 "$K8S_DIR/start.sh" | tail -1)"
"$OPERATOR_BIN" crds | kubectl apply -f - >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null

"$OPERATOR_BIN" ecs-sim --generate "$PIPELINES" >"$WORK/sim.out" 2>"$WORK/sim.err" &
PIDS+=("$!")
wait_until 30 "ecs-sim" grep -q http "$WORK/sim.out"
SIM_URL="$(grep -o 'http://[^ ]*' "$WORK/sim.out" | head -1)"
curl -fsS "$SIM_URL/_sim/items" | jq -c '[.[] | .RegionId = "cn-hangzhou"]' >"$WORK/items.json"
curl -fsS -X PUT --data-binary @"$WORK/items.json" "$SIM_URL/_sim/items" >/dev/null

kubectl create namespace "$NS" >/dev/null
kubectl -n "$NS" create secret generic ecs --from-literal=accessKeyId=$AK \
  --from-literal=accessKeySecret=$SK >/dev/null
"$OPERATOR_BIN" run --namespace "$NS" --ecs-endpoint "$SIM_URL" \
  --admin-addr "127.0.0.1:$ADMIN_PORT" >"$WORK/operator.log" 2>&1 &
OP_PID=$!
PIDS+=("$OP_PID")
wait_until 120 "readiness" curl -fs -o /dev/null "http://127.0.0.1:$ADMIN_PORT/readyz"

printf '| cycle | operator VmRSS (MiB) |\n|---:|---:|\n'
first=""
for (( i = 1; i <= CYCLES; i++ )); do
  q="q$i"
  kubectl apply -f - >/dev/null <<EOF
apiVersion: ecs.mirror.io/v1alpha1
kind: ImagePipelineQuery
metadata: {name: $q, namespace: $NS}
spec:
  regionId: cn-hangzhou
  refreshInterval: 1h
  credentials: {secretRef: {name: ecs}}
EOF
  wait_until 600 "query $q to sync" synced "$q"
  kubectl -n "$NS" delete ipq "$q" --wait=false >/dev/null
  if (( i % REPORT_EVERY == 0 )); then
    sleep 2
    rss=$(rss_mib "$OP_PID")
    [ -n "$first" ] || first=$rss
    printf '| %d | %s |\n' "$i" "$rss"
  fi
done
# Past the operator's sweep of forgotten queries.
sleep 65
rss=$(rss_mib "$OP_PID")
printf '| %d + 65 s | %s |\n' "$CYCLES" "$rss"
printf '\nRSS growth from cycle %d to the end: %.1f MiB over %d cycles of %d pipelines\n' \
  "$REPORT_EVERY" "$(bc -l <<<"$rss - $first")" "$CYCLES" "$PIPELINES"
