# Shared by the shell benchmarks that run on ../shared/k8s (real-server.sh, query-churn.sh,
# refresh-repeat.sh); sourced after ROOT, K8S_DIR and WORK are set. It puts kubectl on PATH
# (installing it when missing), stops every PID in PIDS, the API server (unless KEEP=1) and
# removes WORK on exit, and gives cpu_us.

if ! command -v kubectl >/dev/null; then
  bash "$ROOT/.ci/install-tools" >&2
  export PATH="$ROOT/.tools/bin:$PATH"
fi

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] || "$K8S_DIR/stop.sh" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cpu_us() { # pid -> CPU microseconds of its live threads so far (scheduler time, ns resolution)
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%d", s / 1000 }'
}
