#!/usr/bin/env bash
# Strict JSON schemas for the custom resources the chart renders, from pinned upstream CRDs fetched
# through the Go module proxy (no GitHub downloads):
#   - monitoring.coreos.com ServiceMonitor, PrometheusRule  (prometheus-operator)
#   - keda.sh ScaledObject, TriggerAuthentication            (KEDA)
# Each CRD version's openAPIV3Schema is converted by ci/crd_to_jsonschema.py into
# <group>/<kind>_<version>.json. The result is cached per pinned version (and converter revision)
# under <cache_root>/crd-schemas-*, and <bin_dir>/crd-schemas links to it, so a second run only
# re-links. Called by `ci/tools.sh crds` as: ci/crd-schemas.sh <cache_root> <bin_dir>
#
# prometheus-operator: the proxy stopped serving the repository's root module after v0.85.0
# ("403 This module version is not available"), and that module is where the CRD YAML lives
# (example/prometheus-operator-crd). When the root module is unavailable, the CRDs are generated
# from the API types module of the same version (github.com/prometheus-operator/prometheus-operator/
# pkg/apis/monitoring) with controller-gen, the way upstream's `make generate-crds` does
# (`controller-gen crd:crdVersions=v1 paths=./v1/.`). Checked against v0.85.0, where both exist:
# the generated schemas equal the published ones except for descriptions inherited from k8s.io/api.
set -euo pipefail

PROM_OPERATOR_VERSION=v0.95.2
KEDA_VERSION=v2.20.2
CONTROLLER_GEN_VERSION=v0.23.0

PROM_OPERATOR_MODULE=github.com/prometheus-operator/prometheus-operator
PROM_OPERATOR_TYPES_MODULE=$PROM_OPERATOR_MODULE/pkg/apis/monitoring
KEDA_MODULE=github.com/kedacore/keda/v2

if [[ $# -ne 2 ]]; then
  echo "usage: $0 <cache_root> <bin_dir>" >&2
  exit 2
fi
cache_root=$1
bin_dir=$2
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
converter="$repo_root/ci/crd_to_jsonschema.py"

log() { printf '[crds] %s\n' "$*" >&2; }

python=python3
if [[ -x "$repo_root/.venv/bin/python" ]]; then
  python="$repo_root/.venv/bin/python"
fi

converter_rev=$(sha256sum "$converter" | cut -c1-12)
slot="$cache_root/crd-schemas-po$PROM_OPERATOR_VERSION-keda$KEDA_VERSION-$converter_rev"

mkdir -p "$cache_root" "$bin_dir"
# One run at a time builds controller-gen and converts the schemas: two `make test`s (or a test run
# and `make tools`) started together would otherwise delete each other's half-made *.tmp dirs.
exec {lock_fd}>"$cache_root/.crd-schemas.lock"
if ! flock -n "$lock_fd"; then
  log "waiting for another run converting the CRD schemas"
  flock "$lock_fd"
fi

# module_dir MODULE@VERSION: download a module through the proxy; print its directory, or nothing
# (and return 1) when the proxy does not serve it.
module_dir() {
  local info
  info=$(go mod download -json "$1" 2>/dev/null || true)
  "$python" -c 'import json, sys
data = json.loads(sys.stdin.read() or "{}")
if data.get("Error") or not data.get("Dir"):
    sys.exit(1)
print(data["Dir"])' <<<"$info"
}

# controller_gen: path of a cached controller-gen binary (built once per version).
controller_gen() {
  local gen_slot="$cache_root/controller-gen-$CONTROLLER_GEN_VERSION"
  if [[ ! -x "$gen_slot/controller-gen" ]]; then
    log "building controller-gen $CONTROLLER_GEN_VERSION (first run on this machine)"
    rm -rf "$gen_slot.tmp" && mkdir -p "$gen_slot.tmp"
    CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN="$gen_slot.tmp" \
      go install "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_GEN_VERSION" >&2
    rm -rf "$gen_slot" && mv "$gen_slot.tmp" "$gen_slot"
  fi
  printf '%s\n' "$gen_slot/controller-gen"
}

# prometheus_operator_crds DEST: write the ServiceMonitor and PrometheusRule CRDs into DEST and
# print how they were obtained.
prometheus_operator_crds() {
  local dest=$1 dir
  if dir=$(module_dir "$PROM_OPERATOR_MODULE@$PROM_OPERATOR_VERSION"); then
    cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" \
      "$dir/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml" "$dest/"
    printf 'prometheus-operator %s: example/prometheus-operator-crd from module %s\n' \
      "$PROM_OPERATOR_VERSION" "$PROM_OPERATOR_MODULE"
    return
  fi
  log "the proxy does not serve $PROM_OPERATOR_MODULE@$PROM_OPERATOR_VERSION: generating its CRDs from $PROM_OPERATOR_TYPES_MODULE"
  local gen work="$dest/../gen"
  gen=$(controller_gen)
  # A scratch module inside the unfinished slot: a failed run leaves it in $slot.tmp, which the
  # next run wipes.
  mkdir -p "$work"
  cat >"$work/go.mod" <<EOF
module crdgen

go 1.26

require $PROM_OPERATOR_TYPES_MODULE $PROM_OPERATOR_VERSION
EOF
  printf 'package crdgen\n\nimport _ "%s/v1"\n' "$PROM_OPERATOR_TYPES_MODULE" >"$work/crdgen.go"
  (cd "$work" && GOFLAGS=-mod=mod go mod tidy >&2 &&
    "$gen" crd:crdVersions=v1 "paths=$PROM_OPERATOR_TYPES_MODULE/v1" "output:crd:dir=$work/crds" >&2)
  cp "$work/crds/monitoring.coreos.com_servicemonitors.yaml" \
    "$work/crds/monitoring.coreos.com_prometheusrules.yaml" "$dest/"
  rm -rf "$work"
  printf 'prometheus-operator %s: generated from module %s@%s with controller-gen %s\n' \
    "$PROM_OPERATOR_VERSION" "$PROM_OPERATOR_TYPES_MODULE" "$PROM_OPERATOR_VERSION" "$CONTROLLER_GEN_VERSION"
}

keda_crds() {
  local dest=$1 dir
  if ! dir=$(module_dir "$KEDA_MODULE@$KEDA_VERSION"); then
    log "cannot download $KEDA_MODULE@$KEDA_VERSION through the Go module proxy"
    return 1
  fi
  cp "$dir/config/crd/bases/keda.sh_scaledobjects.yaml" \
    "$dir/config/crd/bases/keda.sh_triggerauthentications.yaml" "$dest/"
  printf 'keda %s: config/crd/bases from module %s\n' "$KEDA_VERSION" "$KEDA_MODULE"
}

if [[ ! -f "$slot/SOURCES" ]]; then
  log "converting CRD schemas (prometheus-operator $PROM_OPERATOR_VERSION, KEDA $KEDA_VERSION)"
  started=$SECONDS
  rm -rf "$slot.tmp" && mkdir -p "$slot.tmp/crds"
  {
    prometheus_operator_crds "$slot.tmp/crds"
    keda_crds "$slot.tmp/crds"
  } >"$slot.tmp/SOURCES.tmp"
  "$python" "$converter" "$slot.tmp" "$slot.tmp"/crds/*.yaml >&2
  mv "$slot.tmp/SOURCES.tmp" "$slot.tmp/SOURCES"
  rm -rf "$slot" && mv "$slot.tmp" "$slot"
  log "CRD schemas ready in $((SECONDS - started))s"
fi
ln -sfn "$slot" "$bin_dir/crd-schemas"
