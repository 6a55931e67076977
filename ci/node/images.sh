#!/usr/bin/env bash
# The container images of the local single-node Kubernetes, built here and imported into its containerd
# (no registry can be reached there, so nothing may ever be pulled).
#
#   ci/node/images.sh build [IMAGE...]
#   ci/node/images.sh import --address SOCKET [--namespace NS] [--snapshotter NAME] [IMAGE...]
#   ci/node/images.sh names
#
# IMAGE is one of: worker api pause redis otelcol (default: all of them).
#
#   worker   wp-k8s-service-worker:kind       ci/build-image.sh (the kind job's tag)
#   api      wp-k8s-service-api:kind          ci/kind/build-api-image.sh (needs worker)
#   pause    localhost/wp-k8s-service/pause   ci/node/pause/pause.c, static; containerd's sandbox_image
#   redis    localhost/wp-k8s-service/redis   Debian's redis-server on the local base (ci/node/redis/)
#   otelcol  localhost/wp-k8s-service/otelcol bin/otelcol (ci/tools.sh otelcol) (ci/node/otelcol/)
#
# build: builds with the local Docker engine (started by ci/build-image.sh when none answers).
#   Every build goes through BuildKit's cache, so an up-to-date image costs about a second.
# import: `docker save` | `ctr images import` into the containerd at SOCKET, namespace k8s.io (the
#   one the CRI plugin uses), then checks that containerd lists every image under its normalized
#   name: CRI resolves `wp-k8s-service-worker:kind` to docker.io/library/wp-k8s-service-worker:kind.
# names: the reference of each image and the name containerd stores it under.
#
# Environment: DOCKER (client binary), CTR (ctr binary), BUILD_NETWORK (default: the engine's own),
# CC (default gcc), NO_CACHE=1 (build pause, redis and otelcol without BuildKit's cache: a cold build). Stdout: key=value lines; progress goes to stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

# The references the manifests use. devsupport/wp_devsupport/node_images.py holds the same
# constants (tests/node checks that they agree); the node's containerd config names PAUSE_IMAGE
# as its sandbox_image.
WORKER_IMAGE=wp-k8s-service-worker:kind
API_IMAGE=wp-k8s-service-api:kind
PAUSE_IMAGE=localhost/wp-k8s-service/pause:3.10
REDIS_IMAGE=localhost/wp-k8s-service/redis:7.0-bookworm
OTELCOL_IMAGE=localhost/wp-k8s-service/otelcol:0.161.0
ALL=(worker api pause redis otelcol)

BUILD_NETWORK=${BUILD_NETWORK:-default}
CC=${CC:-gcc}
STATE_DIR=$ROOT/.state

log() { printf '[node-images] %s\n' "$*" >&2; }
die() { printf '[node-images] error: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
mb() { awk -v n="$1" 'BEGIN { printf "%.1f MB", n / 1000000 }'; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

ref_of() {
  case $1 in
    worker) echo "$WORKER_IMAGE" ;;
    api) echo "$API_IMAGE" ;;
    pause) echo "$PAUSE_IMAGE" ;;
    redis) echo "$REDIS_IMAGE" ;;
    otelcol) echo "$OTELCOL_IMAGE" ;;
    *) die "unknown image: $1 (one of: ${ALL[*]})" ;;
  esac
}

# The name containerd (and the CRI plugin) stores a reference under: the Docker normalization.
# No registry part (a first component without '.' or ':' that is not localhost): docker.io, plus
# library/ for a single-component name; no tag: latest.
normalized() {
  local ref=$1 first rest
  first=${ref%%/*}
  if [[ $ref != */* ]] || [[ $first != *.* && $first != *:* && $first != localhost ]]; then
    rest=$ref
    [[ $rest == */* ]] || rest=library/$rest
    ref=docker.io/$rest
  fi
  [[ ${ref##*/} == *:* || $ref == *@* ]] || ref=$ref:latest
  echo "$ref"
}

# --- Docker client (BuildKit), chosen as ci/build-image.sh chooses it (ci/docker-client.sh) -----------
# shellcheck source=/dev/null # ci/docker-client.sh, shellchecked on its own
source "$ROOT/ci/docker-client.sh"
docker_client() { use_docker_client; }
dk() { "$DOCKER_CLI" "$@"; }

image_id() { dk image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

# --- Builds -------------------------------------------------------------------------------------------
# Each prints its key=value lines; report() adds what every image has.
report() {
  local name=$1 ref=$2 before=$3 started=$4 id size
  id=$(image_id "$ref")
  [[ -n $id ]] || die "$ref is not in the engine after its build"
  size=$(dk image inspect -f '{{.Size}}' "$ref")
  local changed=true
  [[ $id != "$before" ]] || changed=false
  log "$name: $ref $(mb "$size") in $(elapsed "$started") s$([[ $changed == true ]] || echo ' (up to date)')"
  echo "${name}_image=$ref"
  echo "${name}_normalized=$(normalized "$ref")"
  echo "${name}_id=$id"
  echo "${name}_size_bytes=$size"
  echo "${name}_build_seconds=$(elapsed "$started")"
  echo "${name}_changed=$changed"
}

# docker build of DOCKERFILE with CONTEXT as context, tagged REF; log in .state/node-image-NAME.log.
docker_build() {
  local name=$1 ref=$2 dockerfile=$3 context=$4
  shift 4
  local buildlog=$STATE_DIR/node-image-$name.log cache_args=()
  [[ ${NO_CACHE:-0} == 0 ]] || cache_args=(--no-cache)
  if ! dk build "${cache_args[@]}" --file "$dockerfile" --tag "$ref" --progress plain --network "$BUILD_NETWORK" "$@" \
    "$context" >"$buildlog" 2>&1; then
    tail -n 30 "$buildlog" >&2
    die "docker build of $ref failed (log: $buildlog)"
  fi
}

build_worker() {
  local before started
  before=$(image_id "$WORKER_IMAGE"); started=$(now)
  log "worker: ci/build-image.sh (IMAGE=$WORKER_IMAGE)"
  IMAGE=$WORKER_IMAGE DOCKER=$DOCKER_CLI ci/build-image.sh >/dev/null ||
    die "ci/build-image.sh failed (log: $STATE_DIR/image-build.log)"
  report worker "$WORKER_IMAGE" "$before" "$started"
}

build_api() {
  local before started
  before=$(image_id "$API_IMAGE"); started=$(now)
  log "api: ci/kind/build-api-image.sh (IMAGE=$API_IMAGE on $WORKER_IMAGE)"
  IMAGE=$API_IMAGE WORKER_IMAGE=$WORKER_IMAGE DOCKER=$DOCKER_CLI ci/kind/build-api-image.sh >/dev/null ||
    die "ci/kind/build-api-image.sh failed (log: $STATE_DIR/api-image-build.log)"
  report api "$API_IMAGE" "$before" "$started"
}

build_pause() {
  local before started context version
  before=$(image_id "$PAUSE_IMAGE"); started=$(now)
  version=${PAUSE_IMAGE##*:}
  command -v "$CC" >/dev/null 2>&1 || die "no C compiler $CC (apt-get install gcc libc6-dev)"
  context=$WORK/pause
  mkdir -p "$context"
  log "pause: $CC -static -Os ci/node/pause/pause.c"
  "$CC" -static -Os -Wall -Wextra -Werror -DVERSION="\"$version\"" -o "$context/pause" ci/node/pause/pause.c ||
    die "$CC -static failed for ci/node/pause/pause.c (static glibc: apt-get install libc6-dev)"
  strip "$context/pause"
  # A static binary has no program interpreter (PT_INTERP): `file` says "statically linked".
  if command -v file >/dev/null 2>&1; then
    file -b "$context/pause" | grep -q 'statically linked' || die "the pause binary is not static: $(file -b "$context/pause")"
  fi
  docker_build pause "$PAUSE_IMAGE" ci/node/pause/Dockerfile "$context" --build-arg "VERSION=$version"
  report pause "$PAUSE_IMAGE" "$before" "$started"
}

build_redis() {
  local before started base version series
  before=$(image_id "$REDIS_IMAGE"); started=$(now)
  base=$(DOCKER=$DOCKER_CLI ci/build-image.sh --base-only | sed -n 's/^base_image=//p')
  [[ -n $base ]] || die "ci/build-image.sh --base-only printed no base_image"
  log "redis: Debian redis-server on $base"
  docker_build redis "$REDIS_IMAGE" ci/node/redis/Dockerfile ci/node/redis \
    --build-arg "BASE_IMAGE=$base" --build-arg "VERSION=${REDIS_IMAGE##*:}"
  # The tag names the Redis series (7.0-bookworm: 7.0.x): check the package still is that series.
  series=${REDIS_IMAGE##*:}
  series=${series%%-*}
  version=$(dk run --rm --network none --entrypoint redis-server "$REDIS_IMAGE" --version)
  [[ $version == *" v=$series."* ]] || die "$REDIS_IMAGE holds $version, not $series.x: update REDIS_IMAGE's tag"
  report redis "$REDIS_IMAGE" "$before" "$started"
}

build_otelcol() {
  local before started context version want
  before=$(image_id "$OTELCOL_IMAGE"); started=$(now)
  [[ -x bin/otelcol ]] || die "bin/otelcol is missing: run ci/tools.sh otelcol"
  want=${OTELCOL_IMAGE##*:}
  version=$(bin/otelcol --version)
  [[ $version == *" $want" || $version == *" v$want" ]] ||
    die "bin/otelcol is '$version', not $want: update OTELCOL_IMAGE's tag with ci/tools.sh OTELCOL_VERSION"
  file -L bin/otelcol | grep -q 'statically linked' || die "bin/otelcol is not static (the image has no libc)"
  context=$WORK/otelcol
  mkdir -p "$context"
  cp -L bin/otelcol "$context/otelcol"
  log "otelcol: bin/otelcol ($version)"
  docker_build otelcol "$OTELCOL_IMAGE" ci/node/otelcol/Dockerfile "$context" --build-arg "VERSION=$want"
  report otelcol "$OTELCOL_IMAGE" "$before" "$started"
}

cmd_build() {
  local names=("$@") name started
  [[ ${#names[@]} -gt 0 ]] || names=("${ALL[@]}")
  for name in "${names[@]}"; do ref_of "$name" >/dev/null; done
  mkdir -p "$STATE_DIR"
  docker_client
  started=$(now)
  # Starts dockerd when no engine answers, and makes the local base when it is missing.
  DOCKER=$DOCKER_CLI ci/build-image.sh --base-only >/dev/null
  for name in "${names[@]}"; do
    "build_$name"
  done
  echo "build_seconds=$(elapsed "$started")"
}

# --- Import -------------------------------------------------------------------------------------------
cmd_import() {
  local address="" namespace=k8s.io snapshotter="" names=() name ref refs=() missing=() started
  while [[ $# -gt 0 ]]; do
    case $1 in
      --address) [[ $# -ge 2 ]] || die "--address needs a value"; address=$2; shift 2 ;;
      --address=*) address=${1#*=}; shift ;;
      --namespace) [[ $# -ge 2 ]] || die "--namespace needs a value"; namespace=$2; shift 2 ;;
      --snapshotter) [[ $# -ge 2 ]] || die "--snapshotter needs a value"; snapshotter=$2; shift 2 ;;
      -*) die "unknown import option: $1" ;;
      *) names+=("$1"); shift ;;
    esac
  done
  [[ -n $address ]] || die "import needs --address SOCKET (the node's containerd socket)"
  [[ -S $address ]] || die "no containerd socket at $address"
  [[ ${#names[@]} -gt 0 ]] || names=("${ALL[@]}")
  local ctr=${CTR:-ctr}
  command -v "$ctr" >/dev/null 2>&1 || die "no ctr client (Debian package containerd)"
  "$ctr" -a "$address" version >/dev/null 2>&1 || die "containerd at $address does not answer"
  docker_client
  for name in "${names[@]}"; do
    ref=$(ref_of "$name")
    [[ -n $(image_id "$ref") ]] || missing+=("$name")
    refs+=("$ref")
  done
  [[ ${#missing[@]} -eq 0 ]] || die "not built yet: ${missing[*]} (run: ci/node/images.sh build ${missing[*]})"
  started=$(now)
  log "importing ${refs[*]} into $address (namespace $namespace)"
  # One archive for all: layers the images share (worker and api) travel once.
  local import_args=(-a "$address" -n "$namespace" images import)
  [[ -z $snapshotter ]] || import_args+=(--snapshotter "$snapshotter")
  if ! dk save "${refs[@]}" | "$ctr" "${import_args[@]}" - >"$STATE_DIR/node-image-import.log" 2>&1; then
    tail -n 20 "$STATE_DIR/node-image-import.log" >&2
    die "ctr images import failed (log: $STATE_DIR/node-image-import.log)"
  fi
  # What containerd now lists is what the CRI plugin resolves: check every normalized name.
  local listed want
  listed=$("$ctr" -a "$address" -n "$namespace" images ls -q)
  for name in "${names[@]}"; do
    ref=$(ref_of "$name")
    want=$(normalized "$ref")
    grep -qxF "$want" <<<"$listed" ||
      die "containerd does not list $want after the import (it lists: $(tr '\n' ' ' <<<"$listed"))"
    echo "${name}_imported=$want"
  done
  log "imported ${#names[@]} images in $(elapsed "$started") s"
  echo "import_seconds=$(elapsed "$started")"
}

cmd_names() {
  local name ref
  for name in "${ALL[@]}"; do
    ref=$(ref_of "$name")
    echo "${name}_image=$ref"
    echo "${name}_normalized=$(normalized "$ref")"
  done
}

[[ $# -gt 0 ]] || usage
# Build contexts of the images made from host files (the pause binary, bin/otelcol).
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
command=$1
shift
case $command in
  build) cmd_build "$@" ;;
  import) cmd_import "$@" ;;
  names) cmd_names "$@" ;;
  -h | --help | help) usage ;;
  *) die "unknown command: $command (build, import, names)" ;;
esac
