#!/usr/bin/env bash
# Builds the kind job's test API image (ci/kind/api/Dockerfile) on top of a worker image that is
# already in the local Docker engine (build it first: IMAGE=wp-k8s-service-worker:kind ci/build-image.sh).
#
#   ci/kind/build-api-image.sh [-- EXTRA DOCKER BUILD ARGS...]
#
# Environment: IMAGE (default wp-k8s-service-api:kind), WORKER_IMAGE (default
# wp-k8s-service-worker:kind), DOCKER (client binary), BUILD_NETWORK (default: the engine's own),
# BUILD_CA_BUNDLE / PIP_CERT / SSL_CERT_FILE (a CA bundle for PyPI, passed as a BuildKit secret,
# only where TLS needs a private CA).
# Stdout ends with key=value lines (image, image_id, worker_image); progress goes to stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

IMAGE=${IMAGE:-wp-k8s-service-api:kind}
WORKER_IMAGE=${WORKER_IMAGE:-wp-k8s-service-worker:kind}
BUILD_NETWORK=${BUILD_NETWORK:-default}

log() { printf '[api-image] %s\n' "$*" >&2; }
die() { printf '[api-image] error: %s\n' "$*" >&2; exit 1; }

if [[ ${1:-} == -- ]]; then
  shift
elif [[ $# -gt 0 ]]; then
  die "unknown argument: $1 (extra docker build arguments go after --)"
fi
extra_build_args=("$@")

# The docker client with BuildKit (for the secret mount), chosen as ci/build-image.sh chooses it.
# shellcheck source=/dev/null # ci/docker-client.sh, shellchecked on its own
source "$ROOT/ci/docker-client.sh"
use_docker_client

"$DOCKER_CLI" image inspect "$WORKER_IMAGE" >/dev/null 2>&1 ||
  die "worker image $WORKER_IMAGE is not in the local engine: build it first (IMAGE=$WORKER_IMAGE ci/build-image.sh)"

secret_args=()
ca_bundle=${BUILD_CA_BUNDLE:-${PIP_CERT:-${SSL_CERT_FILE:-}}}
if [[ -n $ca_bundle && -s $ca_bundle ]]; then
  secret_args=(--secret "id=ca_bundle,src=$ca_bundle")
fi

mkdir -p "$ROOT/.state"
buildlog=$ROOT/.state/api-image-build.log
iidfile=$(mktemp)
trap 'rm -f "$iidfile"' EXIT
started=$SECONDS
log "building $IMAGE from $WORKER_IMAGE (client: $DOCKER_CLI; log: $buildlog)"
if ! "$DOCKER_CLI" build \
  --file ci/kind/api/Dockerfile \
  --tag "$IMAGE" \
  --iidfile "$iidfile" \
  --progress plain \
  --network "$BUILD_NETWORK" \
  --build-arg "WORKER_IMAGE=$WORKER_IMAGE" \
  "${secret_args[@]}" \
  "${extra_build_args[@]}" \
  ci/kind/api >"$buildlog" 2>&1; then
  tail -n 40 "$buildlog" >&2
  die "docker build failed (log: $buildlog)"
fi
log "built $IMAGE in $((SECONDS - started)) s"
echo "image=$IMAGE"
echo "image_id=$(cat "$iidfile")"
echo "worker_image=$WORKER_IMAGE"
