#!/usr/bin/env bash
# Benchmark (not a test): the chart's Pod at 10,000 and 50,000 mirrored pipelines on the real
# node of ../shared/k8s, with the memory read from the container's cgroup (current and peak)
# against the chart's default limit, and the Pods checked for OOMKills and restarts.
#
#   hack/bench-pod-memory.sh [SIZES...]          # default: 10000 50000
#
# Needs root and a running control plane and node with the image loaded (what .ci/run sets
# up; or: ../shared/k8s/start.sh, ../shared/k8s/node/start-node.sh, hack/offline-image.sh
# --load), with K8S_HOME and K8S_API_PORT exported as for those scripts. Environment:
#   IMAGE      the loaded image (default docker.io/local/imagepipeline-operator:e2e)
#   BIN        the operator binary that runs ecs-sim on the host (default: the musl release build)
#   SETTLE     seconds to wait after the first sync before the steady-state reading (default 60)
#
# For each size: ecs-sim on the node's bridge address with N pipelines in cn-hangzhou (loaded
# through its admin API), the chart installed with its defaults (two replicas) except the image
# and the ECS endpoint, one query in a fresh namespace; it reports the first sync's duration,
# the leader container's cgroup memory (current and peak) after the first sync, after SETTLE
# seconds, and after an unchanged refresh, VmRSS/VmHWM of the process, the limit, and restarts
# or OOMKills of either Pod. Then it uninstalls the release and deletes the namespace, timing
# the garbage collection of the mirrored objects (reported as objects per second).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=("$@")
[ "${#SIZES[@]}" -gt 0 ] || SIZES=(10000 50000)
IMAGE="${IMAGE:-docker.io/local/imagepipeline-operator:e2e}"
BIN="${BIN:-target/x86_64-unknown-linux-musl/release/imagepipeline-operator}"
SETTLE="${SETTLE:-60}"
: "${K8S_HOME:?export K8S_HOME as for start.sh}"
export KUBECONFIG="${KUBECONFIG:-$K8S_HOME/kubeconfig}"
export PATH="$PWD/.tools/bin:$PATH"
[ "$(id -u)" = 0 ] || { echo "needs root (the cgroup and /proc of the Pod's process)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "no operator binary at $BIN (set BIN)" >&2; exit 1; }
bridge="${CNI_BRIDGE:-k8slocal0}"
host="$(ip -4 -o addr show "$bridge" | awk '{print $4}' | cut -d/ -f1 | head -n 1)"
[ -n "$host" ] || { echo "no address on $bridge: is the node running?" >&2; exit 1; }
release=imagepipeline-operator
system=ipo-bench-system
log_dir=target/bench-pod-memory
mkdir -p "$log_dir"

# mib, pod_pid, cgroup_memory, proc_kib
. hack/pod-memory.sh

leader() { kubectl -n "$system" get lease "$release-leader" -o jsonpath='{.spec.holderIdentity}'; }

reading() { # label pid
  read -r current peak < <(cgroup_memory "$2")
  printf '  %-28s cgroup current %6s MiB, peak %6s MiB; VmRSS %6s MiB, VmHWM %6s MiB\n' "$1" \
    "$(mib "$current")" "$(mib "$peak")" \
    "$(mib $(( $(proc_kib "$2" VmRSS) * 1024 )))" "$(mib $(( $(proc_kib "$2" VmHWM) * 1024 )))"
}

pods_report() {
  kubectl -n "$system" get pods -l app.kubernetes.io/name=imagepipeline-operator \
    -o jsonpath='{range .items[*]}{.metadata.name} restarts={.status.containerStatuses[0].restartCount} last={.status.containerStatuses[0].lastState.terminated.reason}{"\n"}{end}'
}

kubectl apply --server-side -f crds/ >/dev/null
for n in "${SIZES[@]}"; do
  ns="bench-pod-$n"
  echo "== $n pipelines"
  "$BIN" ecs-sim --listen "$host:0" --generate "$n" --seed 7 --credential AK:SECRET \
    > "$log_dir/sim-$n.out" 2> "$log_dir/sim-$n.log" &
  sim_pid=$!
  trap 'kill $sim_pid 2>/dev/null || true' EXIT
  for _ in $(seq 50); do grep -q '^listening on ' "$log_dir/sim-$n.out" 2>/dev/null && break; sleep 0.2; done
  sim_url="$(sed -n 's/^listening on //p' "$log_dir/sim-$n.out" | head -n 1)"
  # Every pipeline in one region, loaded back through the admin API.
  curl -sf "$sim_url/_sim/items" | python3 -c '
import json, sys
items = json.load(sys.stdin)
for i in items: i["RegionId"] = "cn-hangzhou"
json.dump(items, sys.stdout)' > "$log_dir/items-$n.json"
  curl -sf -X PUT --data-binary "@$log_dir/items-$n.json" "$sim_url/_sim/items" >/dev/null

  helm install "$release" charts/imagepipeline-operator --namespace "$system" --create-namespace \
    --wait --timeout 4m --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
    --set image.pullPolicy=Never --set ecs.endpoint="$sim_url" >/dev/null
  limit="$(kubectl -n "$system" get deploy "$release" -o jsonpath='{.spec.template.spec.containers[0].resources.limits.memory}')"
  request="$(kubectl -n "$system" get deploy "$release" -o jsonpath='{.spec.template.spec.containers[0].resources.requests.memory}')"
  for _ in $(seq 60); do [ -n "$(leader 2>/dev/null)" ] && break; sleep 1; done
  holder="$(leader)"; pid="$(pod_pid "$holder")"
  echo "  chart defaults: requests.memory $request, limits.memory $limit; leader $holder (pid $pid)"
  reading "before the query" "$pid"

  kubectl create namespace "$ns" >/dev/null
  kubectl -n "$ns" create secret generic ak --from-literal=accessKeyId=AK --from-literal=accessKeySecret=SECRET >/dev/null
  start=$(date +%s.%N)
  kubectl -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: ecs.mirror.io/v1alpha1
kind: ImagePipelineQuery
metadata: {name: all}
spec: {regionId: cn-hangzhou, credentials: {secretRef: {name: ak}}}
EOF
  kubectl -n "$ns" wait --for=condition=Ready ipq/all --timeout=30m >/dev/null
  took="$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')"
  matched="$(kubectl -n "$ns" get ipq all -o jsonpath='{.status.matchedCount}')"
  echo "  first sync: $matched mirrored in $took s"
  reading "after the first sync" "$pid"
  sleep "$SETTLE"
  reading "steady, ${SETTLE}s later" "$pid"
  stamp="$(date +%s%N)"
  kubectl -n "$ns" annotate --overwrite ipq all "ecs.mirror.io/requested-at=$stamp" >/dev/null
  for _ in $(seq 600); do
    [ "$(kubectl -n "$ns" get ipq all -o jsonpath='{.status.lastHandledRequestedAt}')" = "$stamp" ] && break
    sleep 1
  done
  echo "  unchanged refresh: $(kubectl -n "$ns" get ipq all -o jsonpath='{.status.lastSyncResult}')"
  reading "after an unchanged refresh" "$pid"
  pods_report | sed 's/^/  pod /'
  kubectl get --raw "/api/v1/namespaces/$system/pods" | grep -q OOMKilled && echo "  OOMKilled!" || echo "  no OOMKill"

  helm uninstall "$release" --namespace "$system" --wait >/dev/null
  kill "$sim_pid" 2>/dev/null || true
  gc_start=$(date +%s.%N)
  kubectl delete namespace "$ns" --wait=false >/dev/null
  kubectl wait --for=delete "namespace/$ns" --timeout=60m >/dev/null
  gc="$(awk -v s="$gc_start" -v e="$(date +%s.%N)" -v n="$matched" 'BEGIN { printf "%.1f s, %.0f objects/s", e - s, n / (e - s) }')"
  echo "  namespace deletion with $matched ImagePipelines: $gc"
done
kubectl delete namespace "$system" --wait=false >/dev/null 2>&1 || true
