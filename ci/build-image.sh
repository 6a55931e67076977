#!/usr/bin/env bash
# Builds the worker image from image/Dockerfile with the repository root as build context.
#
#   ci/build-image.sh [--base-only] [-- EXTRA DOCKER BUILD ARGS...]
#
# - Starts dockerd when no engine answers (log: .state/dockerd.log).
# - Base image: $BASE_IMAGE when set; else the Dockerfile's default (python:X-slim-bookworm) when
#   it is present or can be pulled; else a local Debian bookworm base made once with debootstrap
#   (Debian's python3 + python3-venv + ca-certificates), imported with `docker import` and cached
#   under a tag derived from its inputs.
# - The machine's CA bundle (PIP_CERT / SSL_CERT_FILE) reaches pip inside the build only as a
#   BuildKit secret mount: it is never in the build context, a layer or the image history.
# - Prints the image size, what our layers add over the base, and the build time.
#
# Environment: IMAGE (tag, default wp-k8s-service-worker:dev), BASE_IMAGE, BUILD_NETWORK (default:
# the engine's own build network; `host` works too, see image/README.md), BUILD_CA_BUNDLE,
# DEBIAN_MIRROR, DOCKER (client binary).
# Stdout ends with key=value lines (image, image_id, base_image, sizes, build_seconds); the
# progress goes to stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

IMAGE=${IMAGE:-wp-k8s-service-worker:dev}
BUILD_NETWORK=${BUILD_NETWORK:-default}
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What the local base must hold: python3 (the interpreter), python3-venv (venv + ensurepip and
# the pip/setuptools wheels it installs from), ca-certificates (TLS trust for OTLP/rediss).
BASE_PACKAGES=python3,python3-venv,ca-certificates
# Bump when the recipe below changes in a way the inputs do not show.
BASE_RECIPE=1
STATE_DIR=$ROOT/.state
base_only=false

log() { printf '[image] %s\n' "$*" >&2; }
die() { printf '[image] error: %s\n' "$*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --base-only) base_only=true; shift ;;
    --) shift; break ;;
    *) die "unknown argument: $1 (extra docker build arguments go after --)" ;;
  esac
done
extra_build_args=("$@")

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
mb() { awk -v n="$1" 'BEGIN { printf "%.1f MB", n / 1000000 }'; }

# --- Docker client with BuildKit (ci/docker-client.sh) -------------------------------------------
# shellcheck source=/dev/null # ci/docker-client.sh, shellchecked on its own
source "$ROOT/ci/docker-client.sh"
use_docker_client
dk() { "$DOCKER_CLI" "$@"; }

# --- Engine ---------------------------------------------------------------------------------------
ensure_engine() {
  if dk info >/dev/null 2>&1; then
    return 0
  fi
  command -v dockerd >/dev/null 2>&1 || die "no Docker engine answers and dockerd is not installed (apt-get install docker.io)"
  [[ $(id -u) -eq 0 ]] || die "no Docker engine answers and starting dockerd needs root"
  mkdir -p "$STATE_DIR"
  log "no engine answers: starting dockerd (log: $STATE_DIR/dockerd.log)"
  # setsid: the engine outlives this script (later builds and the image tests reuse it).
  setsid dockerd >>"$STATE_DIR/dockerd.log" 2>&1 </dev/null &
  local i
  for i in $(seq 1 120); do
    if dk info >/dev/null 2>&1; then
      log "dockerd ready after ${i}x0.5 s"
      return 0
    fi
    sleep 0.5
  done
  tail -n 30 "$STATE_DIR/dockerd.log" >&2 || true
  die "dockerd did not become ready within 60 s"
}

# --- Base image -------------------------------------------------------------------------------------
local_base_tag() {
  local digest
  digest=$(printf '%s\n' "$DEBIAN_SUITE" "$DEBIAN_MIRROR" "$BASE_PACKAGES" "$BASE_RECIPE" "$(uname -m)" |
    sha256sum | cut -c1-12)
  echo "wp-k8s-service-base:${DEBIAN_SUITE}-python3-${digest}"
}

make_local_base() {
  local tag=$1 rootfs started
  command -v debootstrap >/dev/null 2>&1 || die "debootstrap is not installed (apt-get install debootstrap)"
  started=$(now)
  rootfs=$(mktemp -d /var/tmp/wp-k8s-base.XXXXXX)
  # shellcheck disable=SC2064  # expand now: the path is fixed
  trap "rm -rf '$rootfs'" EXIT
  log "making local base $tag: debootstrap --variant=minbase $DEBIAN_SUITE ($BASE_PACKAGES)"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" \
    >"$STATE_DIR/debootstrap.log" 2>&1 || {
    tail -n 30 "$STATE_DIR/debootstrap.log" >&2
    die "debootstrap failed (log: $STATE_DIR/debootstrap.log)"
  }
  # Nothing of the machine that made it: no apt lists or downloaded .debs, logs, host identity.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/* \
    "$rootfs"/var/cache/debconf/*-old "$rootfs"/etc/hostname "$rootfs"/etc/resolv.conf \
    "$rootfs"/tmp/* "$rootfs"/root/.cache
  printf '' >"$rootfs"/etc/machine-id
  chroot "$rootfs" python3 -c 'import ensurepip, venv, ssl' ||
    die "the local base has no working python3 venv"
  tar --numeric-owner --xattrs -C "$rootfs" -c . |
    dk import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["python3"]' \
      --message "debootstrap --variant=minbase --include=$BASE_PACKAGES $DEBIAN_SUITE $DEBIAN_MIRROR" \
      - "$tag" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  log "local base $tag ready in $(elapsed "$started") s ($(mb "$(dk image inspect -f '{{.Size}}' "$tag")"))"
}

pick_base() {
  local default tag
  if [[ -n ${BASE_IMAGE:-} ]]; then
    dk image inspect "$BASE_IMAGE" >/dev/null 2>&1 || dk pull "$BASE_IMAGE" >&2 ||
      die "BASE_IMAGE=$BASE_IMAGE is neither present nor pullable"
    echo "$BASE_IMAGE"; return 0
  fi
  default=$(sed -n 's/^ARG BASE_IMAGE=//p' image/Dockerfile | head -n 1)
  [[ -n $default ]] || die "image/Dockerfile has no 'ARG BASE_IMAGE=' default"
  if dk image inspect "$default" >/dev/null 2>&1; then
    echo "$default"; return 0
  fi
  if timeout 60 "$DOCKER_CLI" pull -q "$default" >/dev/null 2>&1; then
    echo "$default"; return 0
  fi
  tag=$(local_base_tag)
  if ! dk image inspect "$tag" >/dev/null 2>&1; then
    log "$default cannot be pulled here: using a local Debian $DEBIAN_SUITE base"
    make_local_base "$tag"
  fi
  echo "$tag"
}

# --- Build ----------------------------------------------------------------------------------------
mkdir -p "$STATE_DIR"
ensure_engine
base=$(pick_base)
log "base image: $base"
if $base_only; then
  echo "base_image=$base"
  exit 0
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)
source_url=$(sed -n 's/^Source = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)
if revision=$(git rev-parse --verify -q HEAD 2>/dev/null); then
  [[ -z $(git status --porcelain --untracked-files=no 2>/dev/null) ]] || revision="$revision-dirty"
  created=$(TZ=UTC git log -1 --date=iso-strict-local --format=%cd HEAD)
else
  revision=unknown
  created=""
fi
if [[ -n ${SOURCE_DATE_EPOCH:-} ]]; then
  created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
fi
[[ -n $created ]] || created=$(date -u +%Y-%m-%dT%H:%M:%SZ)

secret_args=()
ca_bundle=${BUILD_CA_BUNDLE:-${PIP_CERT:-${SSL_CERT_FILE:-}}}
if [[ -n $ca_bundle && -s $ca_bundle ]]; then
  secret_args=(--secret "id=ca_bundle,src=$ca_bundle")
fi

iidfile=$(mktemp)
buildlog=$STATE_DIR/image-build.log
started=$(now)
log "building $IMAGE (network: $BUILD_NETWORK, client: $DOCKER_CLI; log: $buildlog)"
if ! dk build \
  --file image/Dockerfile \
  --tag "$IMAGE" \
  --iidfile "$iidfile" \
  --progress plain \
  --network "$BUILD_NETWORK" \
  --build-arg "BASE_IMAGE=$base" \
  --build-arg "VERSION=$version" \
  --build-arg "REVISION=$revision" \
  --build-arg "CREATED=$created" \
  --build-arg "SOURCE=$source_url" \
  "${secret_args[@]}" \
  "${extra_build_args[@]}" \
  . >"$buildlog" 2>&1; then
  tail -n 40 "$buildlog" >&2
  rm -f "$iidfile"
  die "docker build failed (log: $buildlog)"
fi
build_seconds=$(elapsed "$started")
image_id=$(cat "$iidfile")
rm -f "$iidfile"

# --- Report ---------------------------------------------------------------------------------------
image_size=$(dk image inspect -f '{{.Size}}' "$image_id")
base_size=$(dk image inspect -f '{{.Size}}' "$base")
added=$((image_size - base_size))
ours=$(($(dk history -q "$image_id" | wc -l) - $(dk history -q "$base" | wc -l)))
log "built $IMAGE ($image_id) in $build_seconds s"
log "image size $(mb "$image_size"); base $(mb "$base_size"); our layers add $(mb "$added")"
log "our layers (newest first):"
dk history --no-trunc --format '{{.Size}}\t{{.CreatedBy}}' "$image_id" | head -n "$ours" | cut -c1-150 |
  sed 's/^/[image]   /' >&2
echo "image=$IMAGE"
echo "image_id=$image_id"
echo "base_image=$base"
echo "image_size_bytes=$image_size"
echo "base_size_bytes=$base_size"
echo "added_size_bytes=$added"
echo "build_seconds=$build_seconds"
