#!/usr/bin/env bash
# Benchmark (not a test): N pipelines (default 100,000) mirrored by SHARDS queries (default 4,
# N/SHARDS pipelines each, split by resource group) as the chart's Pods on the real node of
# ../shared/k8s, once served by one instance and once spread over SHARDS shards (one query
# per shard, labelled sharding.fluxcd.io/key=shardK). For each: the time from applying the
# queries to every query Ready with the whole set mirrored, and each Pod's memory from its
# container's cgroup (current and peak) with the process's VmRSS/VmHWM, after converging and
# SETTLE seconds later; restarts and OOMKills.
#
#   hack/bench-shards.sh [single] [sharded]      # default: both, single first
#
# Needs root and a running control plane and node with the image loaded (what .ci/run sets
# up; or: ../shared/k8s/start.sh, ../shared/k8s/node/start-node.sh, hack/offline-image.sh
# --load), with K8S_HOME and K8S_API_PORT exported as for those scripts. Environment:
#   N, SHARDS  pipelines and queries/shards (default 100000, 4)
#   IMAGE      the loaded image (default docker.io/local/imagepipeline-operator:e2e)
#   BIN        the operator binary that runs ecs-sim on the host (default: the musl release build)
#   LIMIT      the Pods' memory limit (default 1Gi: one instance holding 100,000 objects needs
#              more than the chart's default 192Mi)
#   SETTLE     seconds to wait after converging before the steady reading (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."

MODES=("$@")
[ "${#MODES[@]}" -gt 0 ] || MODES=(single sharded)
N="${N:-100000}"
SHARDS="${SHARDS:-4}"
IMAGE="${IMAGE:-docker.io/local/imagepipeline-operator:e2e}"
BIN="${BIN:-target/x86_64-unknown-linux-musl/release/imagepipeline-operator}"
LIMIT="${LIMIT:-1Gi}"
SETTLE="${SETTLE:-30}"
: "${K8S_HOME:?export K8S_HOME as for start.sh}"
export KUBECONFIG="${KUBECONFIG:-$K8S_HOME/kubeconfig}"
export PATH="$PWD/.tools/bin:$PATH"
[ "$(id -u)" = 0 ] || { echo "needs root (the cgroup and /proc of the Pods' processes)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "no operator binary at $BIN (set BIN)" >&2; exit 1; }
bridge="${CNI_BRIDGE:-k8slocal0}"
host="$(ip -4 -o addr show "$bridge" | awk '{print $4}' | cut -d/ -f1 | head -n 1)"
[ -n "$host" ] || { echo "no address on $bridge: is the node running?" >&2; exit 1; }
release=imagepipeline-operator
system=ipo-shards-system
ns=bench-shards
log_dir=target/bench-shards
mkdir -p "$log_dir"

# mib, pod_pid, cgroup_memory, proc_kib
. hack/pod-memory.sh

operator_pods() {
  kubectl -n "$system" get pods -l app.kubernetes.io/instance="$release" \
    -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}'
}

readings() { # label
  local total_current=0 total_peak=0
  for pod in $(operator_pods); do
    local pid current peak
    pid="$(pod_pid "$pod")"
    read -r current peak < <(cgroup_memory "$pid")
    total_current=$((total_current + current)); total_peak=$((total_peak + peak))
    printf '  %-26s %-44s cgroup %6s MiB (peak %6s); VmRSS %6s MiB (VmHWM %6s)\n' "$1" "$pod" \
      "$(mib "$current")" "$(mib "$peak")" \
      "$(mib $(( $(proc_kib "$pid" VmRSS) * 1024 )))" "$(mib $(( $(proc_kib "$pid" VmHWM) * 1024 )))"
  done
  printf '  %-26s %-44s cgroup %6s MiB (peaks summed %6s)\n' "$1" "all Pods" "$(mib "$total_current")" "$(mib "$total_peak")"
}

objects() { # how many ImagePipelines the namespace holds, from one page of one
  kubectl get --raw "/apis/ecs.mirror.io/v1alpha1/namespaces/$ns/imagepipelines?limit=1" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d["items"]) + d["metadata"].get("remainingItemCount", 0))'
}

kubectl apply --server-side -f crds/ >/dev/null
"$BIN" ecs-sim --listen "$host:0" --generate "$N" --seed 7 --credential AK:SECRET \
  > "$log_dir/sim.out" 2> "$log_dir/sim.log" &
sim_pid=$!
trap 'kill $sim_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q '^listening on ' "$log_dir/sim.out" 2>/dev/null && break; sleep 0.2; done
sim_url="$(sed -n 's/^listening on //p' "$log_dir/sim.out" | head -n 1)"
# Every pipeline in one region, in SHARDS resource groups rg-part1..rg-partSHARDS.
curl -sf "$sim_url/_sim/items" | SHARDS="$SHARDS" python3 -c '
import json, os, sys
k = int(os.environ["SHARDS"])
items = json.load(sys.stdin)
for n, i in enumerate(items):
    i["RegionId"] = "cn-hangzhou"
    i["ResourceGroupId"] = "rg-part%d" % (n % k + 1)
json.dump(items, sys.stdout)' > "$log_dir/items.json"
curl -sf -X PUT --data-binary "@$log_dir/items.json" "$sim_url/_sim/items" >/dev/null

for mode in "${MODES[@]}"; do
  echo "== $mode: $N pipelines, $SHARDS queries"
  sets=(--set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}"
    --set image.pullPolicy=Never --set ecs.endpoint="$sim_url" --set replicaCount=1
    --set resources.limits.memory="$LIMIT")
  if [ "$mode" = sharded ]; then
    shards="$(seq -s, -f 'shard%g' 1 "$SHARDS")"
    sets+=(--set "sharding.shards={$shards}")
  fi
  helm install "$release" charts/imagepipeline-operator --namespace "$system" --create-namespace \
    --wait --timeout 4m "${sets[@]}" >/dev/null
  echo "  Pods: $(operator_pods | tr '\n' ' ')(limits.memory $LIMIT)"
  readings "before the queries"

  kubectl create namespace "$ns" >/dev/null
  kubectl -n "$ns" create secret generic ak --from-literal=accessKeyId=AK --from-literal=accessKeySecret=SECRET >/dev/null
  start=$(date +%s.%N)
  for k in $(seq 1 "$SHARDS"); do
    label=""
    [ "$mode" = sharded ] && label="labels: {sharding.fluxcd.io/key: shard$k}"
    kubectl -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: ecs.mirror.io/v1alpha1
kind: ImagePipelineQuery
metadata: {name: part$k, $label}
spec: {regionId: cn-hangzhou, resourceGroupId: rg-part$k, credentials: {secretRef: {name: ak}}}
EOF
  done
  kubectl -n "$ns" wait --for=condition=Ready ipq --all --timeout=60m >/dev/null
  took="$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')"
  echo "  converged: $(objects) objects in $took s"
  kubectl -n "$ns" get ipq -o wide | sed 's/^/    /'
  readings "converged"
  sleep "$SETTLE"
  readings "steady, ${SETTLE}s later"
  kubectl -n "$system" get pods -o jsonpath='{range .items[*]}{.metadata.name} restarts={.status.containerStatuses[0].restartCount} last={.status.containerStatuses[0].lastState.terminated.reason}{"\n"}{end}' | sed 's/^/  pod /'
  kubectl get --raw "/api/v1/namespaces/$system/pods" | grep -q OOMKilled && echo "  OOMKilled!" || echo "  no OOMKill"

  helm uninstall "$release" --namespace "$system" --wait >/dev/null
  gc_start=$(date +%s.%N)
  kubectl delete namespace "$ns" --wait=false >/dev/null
  kubectl wait --for=delete "namespace/$ns" --timeout=60m >/dev/null
  echo "  namespace deleted in $(awk -v s="$gc_start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s"
done
kubectl delete namespace "$system" --wait=false >/dev/null 2>&1 || true
