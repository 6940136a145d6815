# Shared by the Pod benchmarks (hack/bench-pod-memory.sh, hack/bench-shards.sh); sourced, not
# run. Reads a Pod's operator process and its memory cgroup from the host (root). Expects
# $system, the namespace of the operator's Pods.

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# The operator's process in Pod $1 (by the Pod's UID in its cgroup path).
pod_pid() {
  local uid; uid="$(kubectl -n "$system" get pod "$1" -o jsonpath='{.metadata.uid}')"
  for p in /proc/[0-9]*; do
    if grep -q "pod$uid" "$p/cgroup" 2>/dev/null && grep -q '^imagepipeline' "$p/comm" 2>/dev/null; then
      basename "$p"; return 0
    fi
  done
  return 1
}

# "current peak" of the memory cgroup of process $1 (cgroup v1 or v2), in bytes.
cgroup_memory() {
  local path
  if path="$(awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3 }' "/proc/$1/cgroup")" && [ -n "$path" ]; then
    local d="/sys/fs/cgroup/memory$path"
    echo "$(cat "$d/memory.usage_in_bytes") $(cat "$d/memory.max_usage_in_bytes")"
  else
    path="$(awk -F: '$1 == "0" { print $3 }' "/proc/$1/cgroup")"
    local d="/sys/fs/cgroup$path"
    echo "$(cat "$d/memory.current") $(cat "$d/memory.peak" 2>/dev/null || echo 0)"
  fi
}

# Field $2 (e.g. VmRSS) of /proc/$1/status, in KiB.
proc_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
