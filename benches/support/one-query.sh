# Shared by the benchmarks that measure one query of generated pipelines on a fresh API server
# (refresh-repeat.sh, restart-repeat.sh); sourced after kit.sh. It starts the API server with the
# CRDs, serves N generated pipelines of cn-hangzhou from ecs-sim, creates a namespace with its
# credentials Secret and a query `q`, and tells when that query has synced.

AK=LTAI5tSimulatorTestKey01
SK=SimulatorTestSecretDoNotUseInProd

fresh_api_server() { # BIN -> a fresh API server, its KUBECONFIG exported, BIN's CRDs established
  eval "export $(FRESH=1 "$K8S_DIR/start.sh" | tail -1)"
  "$1" crds | kubectl apply -f - >/dev/null
  kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
}

sim_url_in() { # FILE -> the URL ecs-sim printed there (waiting up to 10 s for it)
  for _ in $(seq 100); do grep -q http "$1" 2>/dev/null && break; sleep 0.1; done
  grep -o 'http://[^ ]*' "$1" | head -1
}

serve_hangzhou() { # BIN N -> ecs-sim serving N generated pipelines, all of cn-hangzhou: sets SIM_URL
  local gen url
  "$1" ecs-sim --generate "$2" >"$WORK/sim0.out" 2>/dev/null &
  gen=$!
  url="$(sim_url_in "$WORK/sim0.out")"
  curl -fsS "$url/_sim/items" | jq -c '[.[] | .RegionId = "cn-hangzhou"]' >"$WORK/items.json"
  kill "$gen"; wait "$gen" 2>/dev/null || true
  "$1" ecs-sim --data "$WORK/items.json" >"$WORK/sim.out" 2>"$WORK/sim.err" &
  PIDS+=($!)
  SIM_URL="$(sim_url_in "$WORK/sim.out")"
}

create_query() { # NS -> the namespace, its Secret `ecs` and the query `q` of cn-hangzhou (refresh 1h)
  kubectl create namespace "$1" >/dev/null
  kubectl -n "$1" create secret generic ecs --from-literal=accessKeyId=$AK \
    --from-literal=accessKeySecret=$SK >/dev/null
  kubectl apply -f - >/dev/null <<QUERY
apiVersion: ecs.mirror.io/v1alpha1
kind: ImagePipelineQuery
metadata: {name: q, namespace: $1}
spec: {regionId: cn-hangzhou, refreshInterval: 1h, credentials: {secretRef: {name: ecs}}}
QUERY
}

query_field() { # NS JSONPATH -> the field of the query `q` ("" when it cannot be read)
  kubectl -n "$1" get ipq q -o "jsonpath=$2" 2>/dev/null || true
}

query_synced() { # NS N LAST_SYNC_TIME -> whether `q` synced all N pipelines after LAST_SYNC_TIME
  [ "$(query_field "$1" '{.status.matchedCount}')" = "$2" ] &&
    [ "$(query_field "$1" '{.status.conditions[?(@.type=="Ready")].reason}')" = Synced ] &&
    [ "$(query_field "$1" '{.status.lastSyncTime}')" != "$3" ]
}
