#!/usr/bin/env bash
# End to end on a kind cluster: the chart installed as users install it, a job enqueued through
# the API, processed by the worker, measured and traced from the API request to the worker.
#
#   ci/kind/kind-e2e.sh                    # or: make kind-e2e
#   KEEP_CLUSTER=1 ci/kind/kind-e2e.sh     # leave the cluster running afterwards, to look around
#   KIND_CLUSTER=wp-k8s-service-e2e ci/kind/kind-e2e.sh   # reuse that cluster when it exists
#   CLUSTER_PROVIDER=local ci/kind/kind-e2e.sh            # or: make node-e2e (the same flow, see below)
#
# Cluster providers (CLUSTER_PROVIDER): `kind` (default, users' CI) or `local`: the single-node
# cluster of host processes (`python -m wp_devsupport.cluster up`, make cluster-up) on a machine
# that cannot pull images. Only two steps differ: how the cluster is created (and deleted), and how
# images reach it (`kind load` vs ci/node/images.sh building the Redis, collector and pause images
# too and importing everything into the node's containerd). The local provider also layers
# ci/node/node-values.yaml (the local Redis image) and gives the collector the local image; every
# other step and assertion is this one script's. A running local node is reused and left running.
#
# Needs, on PATH: kind, kubectl, helm, docker (an engine that answers), curl, python3; and network
# access to pull the kind node image, python:3.12-slim-bookworm, the official Redis and
# OpenTelemetry Collector images, and PyPI. It cannot run on a machine without a container
# registry (such as the development machine of this repository): there, tests/ci checks these
# files statically instead (shellcheck, actionlint, the values rendered and schema-validated).
#
# Steps (each one is named in the output; a failure names the step and dumps the cluster state):
#   1. create the kind cluster from ci/kind/kind-config.yaml (or reuse KIND_CLUSTER if it exists)
#   2. build the worker image (ci/build-image.sh) and the test API image (ci/kind/build-api-image.sh,
#      the README's FastAPI example on top of the worker image), `kind load` both
#   3. install the prometheus-operator CRDs (ServiceMonitor, PrometheusRule) from
#      bin/crd-schemas/crds/, the pinned CRDs `ci/tools.sh crds` makes (not fetched from GitHub),
#      so the chart's ServiceMonitor is validated by a real API server
#   4. deploy the OpenTelemetry Collector (ci/kind/otel-collector.yaml: official image, debug
#      exporter with detailed verbosity, read back with `kubectl logs`)
#   5. `helm dependency build .`, `helm upgrade --install` the root (environment) chart with
#      ci/kind/kind-values.yaml into a namespace that enforces the "restricted" Pod Security Standard,
#      wait for the rollout, `helm test`
#   6. port-forward to the API pod; POST /pings and /clones (+ one /clones/scheduled) through the
#      API; assert with ci/kind/e2e_check.py that the worker's /metrics counted each job exactly once
#      (pings succeed; clones fail for good: no WordPress host is allowed in kind) and that the
#      collector holds, for every job, request (API) -> `send <queue>` -> `process <queue>` in one trace
# The cluster is deleted at the end unless KEEP_CLUSTER=1 or it was reused.
#
# Environment: CLUSTER_PROVIDER (kind | local), NODE_WORKDIR (local: the node's state dir, default
# .state/node), PYTHON (local: an interpreter with wp_devsupport, default python3), KIND_CLUSTER (name; default wp-k8s-service-e2e, reused when it exists and was named
# explicitly), KEEP_CLUSTER (1: keep), NAMESPACE / RELEASE (default wp-k8s-service), SKIP_IMAGE_BUILD
# (1: use the images already in the local engine), E2E_PINGS (3), E2E_CLONES (2), E2E_API_PORT
# (18000), E2E_METRICS_PORT (19191), E2E_WAIT_SECONDS (180), ARTIFACTS_DIR (.state/kind-e2e),
# CRD_DIR (bin/crd-schemas/crds: where monitoring.coreos.com_{servicemonitors,prometheusrules}.yaml are).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

PROVIDER=${CLUSTER_PROVIDER:-kind}
CLUSTER=${KIND_CLUSTER:-wp-k8s-service-e2e}
NODE_WORKDIR=${NODE_WORKDIR:-$ROOT/.state/node}
PYTHON=${PYTHON:-python3}
KEEP_CLUSTER=${KEEP_CLUSTER:-0}
NAMESPACE=${NAMESPACE:-wp-k8s-service}
RELEASE=${RELEASE:-wp-k8s-service}
SKIP_IMAGE_BUILD=${SKIP_IMAGE_BUILD:-0}
PINGS=${E2E_PINGS:-3}
CLONES=${E2E_CLONES:-2}
API_PORT=${E2E_API_PORT:-18000}
METRICS_PORT=${E2E_METRICS_PORT:-19191}
WAIT_SECONDS=${E2E_WAIT_SECONDS:-180}
ARTIFACTS=${ARTIFACTS_DIR:-$ROOT/.state/kind-e2e}

# Fixed: ci/kind/kind-values.yaml names these images (tests/ci checks that they agree).
WORKER_IMAGE=wp-k8s-service-worker:kind
API_IMAGE=wp-k8s-service-api:kind
KIND_CONFIG=ci/kind/kind-config.yaml
VALUES=ci/kind/kind-values.yaml
NODE_VALUES=ci/node/node-values.yaml
COLLECTOR_MANIFEST=ci/kind/otel-collector.yaml
COLLECTOR_NAMESPACE=observability
COLLECTOR_DEPLOYMENT=otel-collector
# The API container's port (api.containerPort) and the worker's metrics port (worker.metricsPort).
API_CONTAINER_PORT=8000
METRICS_CONTAINER_PORT=9191
# The kind release whose default node image ci/kind/kind-config.yaml pins.
KIND_VERSION=v0.33.0
CRD_DIR=${CRD_DIR:-$ROOT/bin/crd-schemas/crds}
CRDS=(servicemonitors prometheusrules)

CONTEXT=kind-$CLUSTER
case $PROVIDER in
  kind) ;;
  local)
    CLUSTER="local node ($NODE_WORKDIR)"
    # Written by `python -m wp_devsupport.cluster up`; its context is read once the node is up.
    export KUBECONFIG=$NODE_WORKDIR/kubeconfig
    CONTEXT=""
    ;;
  *)
    printf '[kind-e2e] error: CLUSTER_PROVIDER=%s: expected kind or local\n' "$PROVIDER" >&2
    exit 2
    ;;
esac
node_address=""
current_step="checking the tools"
created_cluster=false
cluster_up=false
port_forward_pid=""
step_names=()
step_seconds=()
step_started=$SECONDS

log() { printf '[kind-e2e] %s\n' "$*" >&2; }
die() {
  printf '[kind-e2e] error: %s\n' "$*" >&2
  exit 1
}

step() {
  finish_step
  current_step=$1
  step_started=$SECONDS
  printf '\n[kind-e2e] ==> %s\n' "$current_step" >&2
}
finish_step() {
  if [[ -n $current_step ]]; then
    step_names+=("$current_step")
    step_seconds+=($((SECONDS - step_started)))
  fi
}

k() { kubectl --context "$CONTEXT" "$@"; }
h() { helm --kube-context "$CONTEXT" "$@"; }

# --- diagnostics and teardown ----------------------------------------------------------------

dump() {
  # dump TITLE COMMAND...: one diagnostic command with a title; its failure is shown, not fatal.
  local title=$1
  shift
  printf '\n----- %s\n' "$title"
  "$@" 2>&1 || true
}

diagnostics() {
  local ns pod
  dump "helm status" h status "$RELEASE" -n "$NAMESPACE"
  dump "helm history" h history "$RELEASE" -n "$NAMESPACE"
  dump "objects" k get all,secrets,configmaps,servicemonitors -A -o wide
  dump "events" k get events -A --sort-by=.lastTimestamp
  for ns in "$NAMESPACE" "$COLLECTOR_NAMESPACE"; do
    dump "pods in $ns (describe)" k -n "$ns" describe pods
    for pod in $(k -n "$ns" get pods -o name 2>/dev/null); do
      dump "logs $ns/$pod" k -n "$ns" logs "$pod" --all-containers --prefix --tail=400
      dump "previous logs $ns/$pod" k -n "$ns" logs "$pod" --all-containers --prefix --previous --tail=200
    done
  done
  dump "nodes" k describe nodes
}

on_exit() {
  local status=$? failed_step=$current_step
  set +e
  finish_step
  current_step=""
  if [[ -n $port_forward_pid ]]; then
    kill "$port_forward_pid" 2>/dev/null
    wait "$port_forward_pid" 2>/dev/null
  fi
  if [[ $status -ne 0 ]]; then
    log "FAILED at step: $failed_step (exit status $status)"
    if $cluster_up; then
      mkdir -p "$ARTIFACTS"
      log "cluster state follows (also in $ARTIFACTS/diagnostics.txt)"
      diagnostics 2>&1 | tee "$ARTIFACTS/diagnostics.txt" >&2
    fi
  fi
  if $created_cluster && [[ $PROVIDER == local ]]; then
    if [[ $KEEP_CLUSTER == 1 ]]; then
      log "keeping the $CLUSTER (KUBECONFIG=$KUBECONFIG; stop: make cluster-down)"
    else
      log "stopping the $CLUSTER (KEEP_CLUSTER=1 keeps it)"
      node_cli down >&2
    fi
  elif $created_cluster; then
    if [[ $KEEP_CLUSTER == 1 ]]; then
      log "keeping cluster $CLUSTER (kubectl --context $CONTEXT ...; delete: kind delete cluster --name $CLUSTER)"
    else
      log "deleting cluster $CLUSTER (KEEP_CLUSTER=1 keeps it)"
      kind delete cluster --name "$CLUSTER" >&2
    fi
  elif $cluster_up; then
    log "cluster $CLUSTER was reused: left as it is (release $RELEASE in namespace $NAMESPACE)"
  fi
  if [[ ${#step_names[@]} -gt 0 ]]; then
    log "step timings:"
    local i
    for i in "${!step_names[@]}"; do
      printf '[kind-e2e]   %5ss  %s\n' "${step_seconds[$i]}" "${step_names[$i]}" >&2
    done
  fi
  if [[ $status -eq 0 ]]; then
    log "PASSED"
  else
    log "FAILED at step: $failed_step (exit status $status; the cluster state, if any, is above)"
  fi
  exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers ---------------------------------------------------------------------------------------

# node_cli COMMAND: the local node's command line (wp_devsupport.cluster) on NODE_WORKDIR.
node_cli() {
  "$PYTHON" -m wp_devsupport.cluster "$@" --workdir "$NODE_WORKDIR"
}

# json_field FIELD: one string field of the JSON object on stdin.
json_field() {
  python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# wait_for SECONDS DESCRIPTION COMMAND...: retry COMMAND every 2 s until it succeeds.
wait_for() {
  local seconds=$1 description=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      log "gave up after ${seconds}s waiting for: $description"
      return 1
    fi
    sleep 2
  done
}

# --- 0. tools ----------------------------------------------------------------------------------------

missing=()
required=(kind kubectl helm docker curl python3)
[[ $PROVIDER == kind ]] || required=(kubectl helm docker curl python3 ctr)
for tool in "${required[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  for tool in "${missing[@]}"; do
    case $tool in
      kind) log "kind is not on PATH: go install sigs.k8s.io/kind@$KIND_VERSION (then add \$(go env GOPATH)/bin to PATH)" ;;
      kubectl) log "kubectl is not on PATH: https://kubernetes.io/docs/tasks/tools/" ;;
      helm) log "helm is not on PATH: ci/tools.sh helm builds bin/helm (make kind-e2e puts bin/ on PATH)" ;;
      docker) log "docker is not on PATH: install Docker (the engine must be running)" ;;
      curl | python3) log "$tool is not on PATH: install it (Debian/Ubuntu: apt-get install $tool)" ;;
      ctr) log "ctr is not on PATH: the local node needs containerd (Debian: apt-get install containerd, or make services)" ;;
    esac
  done
  die "missing tools: ${missing[*]}"
fi
if [[ $PROVIDER == kind ]]; then
  docker info >/dev/null 2>&1 || die "docker is installed but no Docker engine answers (docker info failed)"
  kind_version=$(kind version 2>/dev/null | awk '{print $2}')
  if [[ $kind_version != "$KIND_VERSION" ]]; then
    log "warning: kind $kind_version found; $KIND_CONFIG pins the node image of kind $KIND_VERSION"
  fi
else
  # The image builds start dockerd themselves when no engine answers (ci/build-image.sh).
  "$PYTHON" -c 'import wp_devsupport.cluster' 2>/dev/null ||
    die "$PYTHON cannot import wp_devsupport (the local node's code): run make venv, or make node-e2e"
  kind_version="not used (CLUSTER_PROVIDER=local)"
fi
mkdir -p "$ARTIFACTS"
log "helm: $(helm version --short 2>/dev/null); kubectl: $(kubectl version --client 2>/dev/null | head -n 1); kind: $kind_version"

# --- 1. cluster ------------------------------------------------------------------------------------

if [[ $PROVIDER == kind ]]; then
  step "kind cluster $CLUSTER"
  clusters=$(kind get clusters 2>/dev/null)
  if grep -qxF "$CLUSTER" <<<"$clusters"; then
    [[ -n ${KIND_CLUSTER:-} ]] ||
      die "a kind cluster named $CLUSTER already exists: reuse it with KIND_CLUSTER=$CLUSTER, or delete it (kind delete cluster --name $CLUSTER)"
    log "reusing the existing cluster $CLUSTER"
  else
    created_cluster=true
    kind create cluster --name "$CLUSTER" --config "$KIND_CONFIG" --wait 180s
  fi
else
  step "$CLUSTER"
  if node_env=$(node_cli env 2>/dev/null); then
    log "reusing the running $CLUSTER (left running afterwards)"
  else
    created_cluster=true
    node_cli up >&2
    node_env=$(node_cli env)
  fi
  # KEY=VALUE lines: KUBECONFIG, CONTEXT, CONTAINERD_ADDRESS.
  CONTEXT=$(sed -n 's/^CONTEXT=//p' <<<"$node_env")
  node_address=$(sed -n 's/^CONTAINERD_ADDRESS=//p' <<<"$node_env")
  [[ -n $CONTEXT && -n $node_address ]] || die "python -m wp_devsupport.cluster env gave no CONTEXT or CONTAINERD_ADDRESS"
fi
cluster_up=true
k cluster-info >&2
k wait --for=condition=Ready nodes --all --timeout=180s

# --- 2. images ------------------------------------------------------------------------------------

if [[ $SKIP_IMAGE_BUILD == 1 ]]; then
  step "images (SKIP_IMAGE_BUILD=1: using $WORKER_IMAGE and $API_IMAGE as they are)"
  docker image inspect "$WORKER_IMAGE" "$API_IMAGE" >/dev/null
else
  step "build the worker image $WORKER_IMAGE"
  IMAGE=$WORKER_IMAGE ci/build-image.sh | tee "$ARTIFACTS/worker-image.txt"
  step "build the test API image $API_IMAGE"
  IMAGE=$API_IMAGE WORKER_IMAGE=$WORKER_IMAGE ci/kind/build-api-image.sh | tee "$ARTIFACTS/api-image.txt"
fi
if [[ $PROVIDER == kind ]]; then
  step "kind load docker-image"
  kind load docker-image --name "$CLUSTER" "$WORKER_IMAGE" "$API_IMAGE"
else
  # The worker and API images were built above; the local node also needs its own pause, Redis and
  # collector images, since it can pull nothing.
  step "build the local node's pause, Redis and collector images (ci/node/images.sh)"
  ci/node/images.sh build pause redis otelcol | tee "$ARTIFACTS/node-images.txt"
  step "import the images into the node's containerd"
  ci/node/images.sh import --address "$node_address" | tee -a "$ARTIFACTS/node-images.txt"
fi

# --- 3. CRDs ---------------------------------------------------------------------------------------

step "prometheus-operator CRDs (from bin/crd-schemas/crds)"
crd_files=()
for crd in "${CRDS[@]}"; do
  crd_files+=("$CRD_DIR/monitoring.coreos.com_$crd.yaml")
done
if [[ ! -f ${crd_files[0]} ]]; then
  command -v go >/dev/null 2>&1 ||
    die "$CRD_DIR is missing and go is not on PATH to make it: run ci/tools.sh crds (Go >= 1.26)"
  ci/tools.sh crds
fi
for file in "${crd_files[@]}"; do
  [[ -f $file ]] || die "$file is missing (ci/tools.sh crds should have made it)"
  # Server-side apply: these CRDs are too large for the last-applied annotation of a client-side apply.
  k apply --server-side --force-conflicts -f "$file"
done
for crd in "${CRDS[@]}"; do
  k wait --for=condition=Established --timeout=60s "crd/$crd.monitoring.coreos.com"
done

# --- 4. collector ------------------------------------------------------------------------------------

step "OpenTelemetry Collector ($COLLECTOR_MANIFEST)"
if [[ $PROVIDER == kind ]]; then
  k apply -f "$COLLECTOR_MANIFEST"
else
  # The same manifest with the locally built collector image (only image and pull policy differ).
  "$PYTHON" -m wp_devsupport.node_images collector-manifest | k apply -f -
fi
k -n "$COLLECTOR_NAMESPACE" rollout status "deployment/$COLLECTOR_DEPLOYMENT" --timeout=240s

# --- 5. chart ---------------------------------------------------------------------------------------

step "helm dependency build ."
helm dependency build "$ROOT"

step "helm upgrade --install $RELEASE . -f $VALUES"
k create namespace "$NAMESPACE" --dry-run=client -o yaml | k apply -f -
# The chart's pods must pass the "restricted" Pod Security Standard: make the namespace enforce it.
k label --overwrite namespace "$NAMESPACE" \
  pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted
values_args=(--values "$VALUES")
[[ $PROVIDER == kind ]] || values_args+=(--values "$NODE_VALUES")
h upgrade --install "$RELEASE" "$ROOT" --namespace "$NAMESPACE" "${values_args[@]}" --wait --timeout 6m

step "rollout"
deployments=$(k -n "$NAMESPACE" get deployments -l "app.kubernetes.io/instance=$RELEASE" -o name)
[[ -n $deployments ]] || die "the release has no Deployment"
for deployment in $deployments; do
  k -n "$NAMESPACE" rollout status "$deployment" --timeout=300s
done
k -n "$NAMESPACE" get pods -o wide >&2

step "helm test $RELEASE"
h test "$RELEASE" --namespace "$NAMESPACE" --timeout 5m --logs

# --- 6. jobs through the API ---------------------------------------------------------------------

step "port-forward to the API pod"
api_deployment=$(k -n "$NAMESPACE" get deployments \
  -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=api" -o name)
[[ $(wc -w <<<"$api_deployment") -eq 1 ]] || die "expected one API Deployment, found: ${api_deployment:-none}"
# One API pod (api.replicaCount: 1) that also runs the worker (sidecar mode): both ports of it.
# kubectl itself in the background (not through k()), so $! is its pid and the exit trap stops it.
kubectl --context "$CONTEXT" -n "$NAMESPACE" port-forward "$api_deployment" \
  "$API_PORT:$API_CONTAINER_PORT" "$METRICS_PORT:$METRICS_CONTAINER_PORT" >"$ARTIFACTS/port-forward.log" 2>&1 &
port_forward_pid=$!
api=http://127.0.0.1:$API_PORT
metrics=http://127.0.0.1:$METRICS_PORT/metrics
wait_for 60 "the API's /healthz through the port-forward" curl -fsS -o /dev/null "$api/healthz"
wait_for 60 "the worker's /metrics through the port-forward" curl -fsS -o /dev/null "$metrics"

step "enqueue $PINGS pings and $((CLONES + 1)) clones through the API"
curl -fsS "$metrics" >"$ARTIFACTS/metrics-before.txt"
jobs=()
for i in $(seq 1 "$PINGS"); do
  job_id=$(curl -fsS -X POST "$api/pings" | json_field job_id)
  log "POST /pings -> job $job_id"
  jobs+=("ping=$job_id")
done
# No WordPress host is allowed in kind (worker.clone.allowedHosts is empty), so each clone fails
# for good at once: processed with outcome `failed`, dead-lettered, traced with status ERROR.
for i in $(seq 1 "$CLONES"); do
  job_id=$(curl -fsS -X POST "$api/clones?source_url=https://source-$i.example&target_url=https://target-$i.example" |
    json_field job_id)
  log "POST /clones -> job $job_id"
  jobs+=("clone-queue=$job_id")
done
job_id=$(curl -fsS -X POST \
  "$api/clones/scheduled?source_url=https://source.example&target_url=https://target.example&delay_seconds=2" |
  json_field job_id)
log "POST /clones/scheduled (2 s delay) -> job $job_id"
jobs+=("clone-queue=$job_id")
printf '%s\n' "${jobs[@]}" >"$ARTIFACTS/jobs.txt"

step "every job processed exactly once (worker /metrics)"
check_metrics() {
  curl -fsS "$metrics" >"$ARTIFACTS/metrics-after.txt" &&
    python3 ci/kind/e2e_check.py metrics \
      --baseline "$ARTIFACTS/metrics-before.txt" --current "$ARTIFACTS/metrics-after.txt" \
      --expect "ping,ping,success=$PINGS" \
      --expect "clone-queue,clone_wordpress,failed=$((CLONES + 1))" >"$ARTIFACTS/metrics-report.txt"
}
if ! wait_for "$WAIT_SECONDS" "the jobs in the worker's metrics" check_metrics; then
  cat "$ARTIFACTS/metrics-report.txt" >&2 || true
  die "the worker did not process every job exactly once (report above; scrape: $ARTIFACTS/metrics-after.txt)"
fi
cat "$ARTIFACTS/metrics-report.txt" >&2

step "every job traced: API request -> send -> process (collector output)"
job_args=()
for job in "${jobs[@]}"; do
  job_args+=(--job "$job")
done
check_traces() {
  k -n "$COLLECTOR_NAMESPACE" logs "deployment/$COLLECTOR_DEPLOYMENT" --tail=-1 >"$ARTIFACTS/collector.log" &&
    python3 ci/kind/e2e_check.py traces --log "$ARTIFACTS/collector.log" "${job_args[@]}" \
      >"$ARTIFACTS/traces-report.txt"
}
if ! wait_for "$WAIT_SECONDS" "the jobs' spans in the collector output" check_traces; then
  cat "$ARTIFACTS/traces-report.txt" >&2 || true
  die "not every job was traced from the API request to the worker (report above; log: $ARTIFACTS/collector.log)"
fi
cat "$ARTIFACTS/traces-report.txt" >&2
