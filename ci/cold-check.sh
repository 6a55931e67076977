#!/usr/bin/env bash
# `make cold-check`: what a newcomer's first `bash .ci/run` does, on this machine.
# Clones the committed HEAD into a temporary directory and runs .ci/run there with empty,
# temporary Go module, Go build, tool and pip caches, so nothing built or downloaded by an
# earlier run can hide a missing step. Prints .ci/run's stage times (and keeps its log).
# Not part of `make test`: it takes as long as a first setup (tens of minutes on 2 cores).
#
#   COLD_CHECK_DIR=DIR   where the clone, caches and log go (default: a new temporary
#                        directory, removed afterwards unless COLD_CHECK_KEEP=1)
# Debian packages (Redis, Docker, WordPress, ...) are not removed first: uninstalling system
# packages is not this script's business. A machine without them gets them from .ci/run's
# services stage, which is what that stage is for.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -n $(git -C "$repo_root" status --porcelain) ]]; then
  echo "ci/cold-check.sh: note: uncommitted changes are not checked (the clone takes HEAD)" >&2
fi
root=${COLD_CHECK_DIR:-$(mktemp -d -t wp-cold-check.XXXXXX)}
mkdir -p "$root"
# shellcheck disable=SC2317 # called by the EXIT trap below (shellcheck 0.9 sees it as unreachable)
cleanup() {
  [[ ${COLD_CHECK_KEEP:-0} == 1 || -n ${COLD_CHECK_DIR:-} ]] && return
  # The Go module cache is read-only by design; make it removable first.
  chmod -R u+w "$root" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT

git clone --quiet "$repo_root" "$root/clone"
export GOMODCACHE="$root/cache/gomod" GOCACHE="$root/cache/gobuild" \
  WP_TOOLS_CACHE="$root/cache/tools" PIP_CACHE_DIR="$root/cache/pip"
mkdir -p "$GOMODCACHE" "$GOCACHE" "$WP_TOOLS_CACHE" "$PIP_CACHE_DIR"
echo "[cold-check] clone of $(git -C "$repo_root" rev-parse --short HEAD) in $root/clone, caches in $root/cache" >&2
started=$SECONDS
status=0
(cd "$root/clone" && CI=true bash .ci/run </dev/null) 2>&1 | tee "$root/ci-run.log" || status=$?
echo "[cold-check] .ci/run exited $status after $((SECONDS - started))s; log: $root/ci-run.log" >&2
exit "$status"
