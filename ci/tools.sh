#!/usr/bin/env bash
# Installs the pinned Go-built tools this project uses into ./bin, the way kubebuilder
# projects do. Each tool is built once per version into a cache outside the checkout
# (WP_TOOLS_CACHE, default ~/.cache/wp-k8s-service/tools/<name>-<version>/) so a second
# run, or a fresh clone on the same machine, only re-links.
#
# Usage: ci/tools.sh [tool ...]   (no argument: all tools)
#
# Everything comes from the Go module proxy (no GitHub release downloads, which this
# machine cannot reach). Tools whose upstream go.mod cannot be used by `go install`
# (kube-apiserver, etcd, prometheus) are built through small wrapper modules under
# ci/gomod/, the collector through the collector builder and ci/gomod/otelcol/manifest.yaml.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin_dir="$repo_root/bin"
cache_root=${WP_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wp-k8s-service/tools}

# Pinned versions. Change a version here and the next run builds it into a new cache
# slot. For the wrapper modules the version is also in their go.mod (checked at build
# time, so the two cannot drift apart silently).
HELM_VERSION=v4.3.1
HELM3_VERSION=v3.22.0
# The minor of the k8s.io/client-go that helm v3.22.0's go.mod requires (v0.37.0): see install_helm.
HELM3_K8S_MINOR=37
KUBECONFORM_VERSION=v0.7.0
ACTIONLINT_VERSION=v1.7.12
# chart-testing: `ct lint` of the chart with every chart/ci/*-values.yaml (its yamllint and yamale
# come from the locked dev requirements).
CHART_TESTING_VERSION=v3.14.0
# Builder and every component in ci/gomod/otelcol/manifest.yaml share this version (the
# manifest explains why it is not the newest release).
OTELCOL_VERSION=v0.161.0
# Prometheus 3.x is published as Go module v0.3xx.y: v0.316.0 is release 3.16.0.
PROMETHEUS_VERSION=v0.316.0
KUBERNETES_VERSION=v1.37.2
# kubelet and kube-proxy of the local node (ci/gomod/kubelet): see build_kubelet for why 1.35.
KUBELET_VERSION=v1.35.4
COREDNS_VERSION=v1.15.0
ETCD_VERSION=v3.6.16

# Static binaries: nothing here needs cgo (upstream builds etcd, kube-apiserver and
# prometheus with CGO_ENABLED=0 too), and they then run on any Linux of this arch.
# -buildvcs=false: the wrapper modules live inside this git checkout, whose state
# must not end up in (or break) the tool builds.
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
mkdir -p "$bin_dir" "$cache_root"

log() { printf '[tools] %s\n' "$*" >&2; }
die() { printf 'ci/tools.sh: %s\n' "$*" >&2; exit 1; }

# Temp build dirs of this run, removed on any exit so an interrupted or failed build
# leaves nothing behind (a killed run's leftovers go with the next build of that slot).
tmp_dirs=()
building=""
cleanup() {
  local rc=$?
  [[ ${#tmp_dirs[@]} -eq 0 ]] || rm -rf "${tmp_dirs[@]}"
  [[ $rc -eq 0 || -z $building ]] ||
    printf 'ci/tools.sh: building %s failed or was interrupted (exit %s); nothing was cached\n' \
      "$building" "$rc" >&2
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ensure NAME VERSION "BINARIES" "INPUT_FILES" BUILD_FN [ARGS...]
# Makes sure cache slot NAME-VERSION holds BINARIES built from the current inputs, then
# links each binary into bin/ (an entry LINK=FILE links bin/LINK to the slot's FILE).
# The slot records a fingerprint of the build recipe (BUILD_FN's code, its ARGS and the
# content of INPUT_FILES, e.g. a wrapper's go.mod/go.sum), so editing a manifest or the
# ldflags rebuilds the tool even though its version did not change.
# BUILD_FN OUT_DIR [ARGS...] must leave the binaries in OUT_DIR. It runs in a fresh temp
# dir that is renamed into place only when complete, under a per-slot lock so that two
# concurrent runs (make test in parallel, say) build a tool once, never half.
ensure() {
  local name=$1 version=$2 binaries=$3 inputs=$4
  shift 4
  local slot="$cache_root/$name-$version"
  local fingerprint
  # shellcheck disable=SC2086 # INPUT_FILES is a space-separated list of paths
  fingerprint=$({ declare -f "$1"; printf '%s\n' "$*"; [[ -z $inputs ]] || cat $inputs; } | sha256sum)
  fingerprint=${fingerprint%% *}

  if [[ ! -f "$slot/.fingerprint" || $(<"$slot/.fingerprint") != "$fingerprint" ]]; then
    local lock_fd
    exec {lock_fd}>"$cache_root/.$name-$version.lock"
    if ! flock -n "$lock_fd"; then
      log "waiting for another run building $name $version"
      flock "$lock_fd"
    fi
    # Re-check under the lock: the other run may just have built it.
    if [[ ! -f "$slot/.fingerprint" || $(<"$slot/.fingerprint") != "$fingerprint" ]]; then
      command -v go >/dev/null || die "go is not on PATH: Go >= 1.26 is needed to build $name"
      rm -rf "$cache_root/.$name-$version.tmp."*   # leftovers of a killed run
      local tmp
      tmp=$(mktemp -d "$cache_root/.$name-$version.tmp.XXXXXX")
      tmp_dirs+=("$tmp")
      chmod 755 "$tmp"   # mktemp makes it private; the slot is a plain shared cache dir
      log "building $name $version (first run on this machine, or its recipe changed)"
      local started=$SECONDS
      # Called plainly, not under `||`, so that set -e stays in force inside BUILD_FN;
      # the EXIT trap reports a failure.
      building="$name $version"
      "$@" "$tmp"
      local binary
      for binary in $binaries; do
        [[ -x "$tmp/${binary#*=}" ]] || die "building $name $version did not produce ${binary#*=}"
      done
      printf '%s\n' "$fingerprint" >"$tmp/.fingerprint"
      # A directory cannot be renamed over a non-empty one: drop the stale slot first.
      # Readers only trust a slot holding .fingerprint, which the rename brings along.
      rm -rf "$slot"
      mv "$tmp" "$slot"
      building=""
      log "built $name $version in $((SECONDS - started))s"
    fi
    exec {lock_fd}>&-
  fi
  local binary
  for binary in $binaries; do
    ln -sfn "$slot/${binary#*=}" "$bin_dir/${binary%%=*}"
  done
}

# module_dir DIR MODULE: the module cache directory of MODULE as resolved by the wrapper
# module in DIR, downloading it first. `go list -m -f '{{.Dir}}'` alone prints nothing
# (and succeeds) when the module's source is not in the cache yet, which is every fresh
# machine: the download makes the directory exist, and an empty answer is an error.
module_dir() {
  local dir
  dir=$(cd "$1" && go mod download "$2" && go list -m -f '{{.Dir}}' "$2")
  [[ -n $dir && -d $dir ]] ||
    die "could not get the source of $2 as pinned by ${1#"$repo_root/"}/go.mod (go mod download gave no directory)"
  printf '%s\n' "$dir"
}

# require_version DIR MODULE VERSION: the wrapper must pin the version tools.sh pins.
require_version() {
  local found
  found=$(cd "$1" && go list -m -f '{{.Version}}' "$2")
  [[ $found == "$3" ]] ||
    die "${1#"$repo_root/"}/go.mod has $2 $found but ci/tools.sh pins $3; make them agree"
}

# --- go install for tools whose upstream module installs as is -----------------------

# gobin_install PKG@VERSION LDFLAGS OUT_DIR
gobin_install() {
  GOBIN="$3" go install -trimpath ${2:+-ldflags "$2"} "$1"
}

install_helm() {
  # Without the version ldflags `helm version` prints a vague development version.
  ensure helm "$HELM_VERSION" helm "" gobin_install \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" \
    "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
  # Helm 3 is still what many users run: the chart is linted and rendered with both.
  # Its binary is also called helm, so it is linked as bin/helm3.
  # Helm 3's Makefile also stamps the Kubernetes version of its client-go (v0.37.0 in 3.22.0, so
  # 1.37) as the default cluster version of `helm template`/`lint`; without it Helm 3 assumes 1.20
  # and refuses charts whose kubeVersion is newer. Helm 4 reads it from its build info.
  local k8s=helm.sh/helm/v3/pkg
  ensure helm3 "$HELM3_VERSION" helm3=helm "" gobin_install \
    "helm.sh/helm/v3/cmd/helm@$HELM3_VERSION" \
    "-X helm.sh/helm/v3/internal/version.version=$HELM3_VERSION -X $k8s/lint/rules.k8sVersionMajor=1 -X $k8s/lint/rules.k8sVersionMinor=$HELM3_K8S_MINOR -X $k8s/chartutil.k8sVersionMajor=1 -X $k8s/chartutil.k8sVersionMinor=$HELM3_K8S_MINOR"
}

install_kubeconform() {
  ensure kubeconform "$KUBECONFORM_VERSION" kubeconform "" gobin_install \
    "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" \
    "-X main.version=$KUBECONFORM_VERSION"
}

install_actionlint() {
  # actionlint reads its version from the module build info, so no ldflags needed.
  ensure actionlint "$ACTIONLINT_VERSION" actionlint "" gobin_install \
    "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" ""
}

build_chart_testing() {
  local out=$1 mod="$repo_root/ci/gomod/chart-testing" module=github.com/helm/chart-testing/v3 src
  require_version "$mod" "$module" "$CHART_TESTING_VERSION"
  (cd "$mod" && go build -trimpath -ldflags "-X $module/ct/cmd.Version=$CHART_TESTING_VERSION" \
    -o "$out/ct" "$module/ct")
  # ct reads its Chart.yaml schema and yamllint rules from files its releases ship next to the
  # binary (etc/ in the module); keep them in the slot, linked as bin/ct-etc, and pass them explicitly.
  src=$(module_dir "$mod" "$module")
  mkdir -p "$out/etc"
  cp "$src/etc/chart_schema.yaml" "$src/etc/lintconf.yaml" "$out/etc/"
}

install_chart_testing() {
  ensure chart-testing "$CHART_TESTING_VERSION" "ct ct-etc=etc" \
    "$repo_root/ci/gomod/chart-testing/go.mod $repo_root/ci/gomod/chart-testing/go.sum" build_chart_testing
}

# --- OpenTelemetry Collector, assembled by the collector builder (ocb) ---------------

build_otelcol() {
  local out=$1 manifest="$repo_root/ci/gomod/otelcol/manifest.yaml"
  # The builder refuses mismatched versions only partly; check the pin up front so a
  # half-bumped manifest fails with a clear message instead of a resolution error.
  local stray
  stray=$(sed 's/#.*//' "$manifest" | grep -oE 'v0\.[0-9]+\.[0-9]+' | sort -u |
    grep -vxF "$OTELCOL_VERSION" || true)
  [[ -z $stray ]] ||
    die "ci/gomod/otelcol/manifest.yaml has versions $(echo "$stray" | tr '\n' ' ')but OTELCOL_VERSION is $OTELCOL_VERSION"
  GOBIN="$out/.builder" go install -trimpath \
    "go.opentelemetry.io/collector/cmd/builder@$OTELCOL_VERSION"
  # The output dir goes into a copy of the manifest (the --output-path flag is
  # deprecated). The copy and the generated sources (src/) stay in the slot to show
  # exactly what was compiled. --skip-strict-versioning=false: fail if Go's module
  # resolution moved any component away from its pinned version.
  sed "s|^dist:\$|dist:\n  output_path: $out/src|" "$manifest" >"$out/manifest.yaml"
  "$out/.builder/builder" --config "$out/manifest.yaml" --skip-strict-versioning=false
  mv "$out/src/otelcol" "$out/otelcol"
  rm -rf "$out/.builder"
}

install_otelcol() {
  ensure otelcol "$OTELCOL_VERSION" otelcol "$repo_root/ci/gomod/otelcol/manifest.yaml" \
    build_otelcol
}

# --- Prometheus server and promtool, through ci/gomod/prometheus --------------------

build_prometheus() {
  local out=$1 mod="$repo_root/ci/gomod/prometheus"
  require_version "$mod" github.com/prometheus/prometheus "$PROMETHEUS_VERSION"
  local src version build_date
  # The release number (3.16.0) is upstream's VERSION file, which is what promu uses.
  src=$(module_dir "$mod" github.com/prometheus/prometheus)
  version=$(<"$src/VERSION")
  # The module's publication time stands in for the build date, so rebuilding the same
  # version gives the same binary. Revision and Branch stay unset: the module proxy
  # does not record the commit.
  build_date=$(cd "$mod" && go list -m -f '{{.Time.UTC.Format "20060102-15:04:05"}}' \
    github.com/prometheus/prometheus)
  local v=github.com/prometheus/common/version
  # Upstream's .promu.yml ldflags, and its netgo tag. Not its builtinassets tag: the
  # embedded web UI is generated by an npm build and is not in the Go module, and the
  # tests only need the HTTP API (the UI pages answer 404-style errors).
  (cd "$mod" && go build -trimpath -tags netgo -o "$out/" \
    -ldflags "-X $v.Version=$version -X $v.BuildUser=wp-k8s-service-ci-tools -X $v.BuildDate=$build_date" \
    github.com/prometheus/prometheus/cmd/prometheus \
    github.com/prometheus/prometheus/cmd/promtool)
}

install_prometheus() {
  ensure prometheus "$PROMETHEUS_VERSION" "prometheus promtool" \
    "$repo_root/ci/gomod/prometheus/go.mod $repo_root/ci/gomod/prometheus/go.sum" \
    build_prometheus
}

# --- The Kubernetes control plane and etcd: chart tests and the local node -----------

# k8s_ldflags VERSION MODULE_DIR: the ldflags of hack/lib/version.sh (kube::version::ldflags), set in
# both version packages. gitCommit/gitTreeState stay unset: the proxy does not record the commit, and
# Kubernetes itself only sets them when it knows it. -s -w as in release builds. The build date is
# the module's publication time, so rebuilding the same version gives the same binaries.
k8s_ldflags() {
  local version=$1 mod=$2 minor build_date kv ldflags="-s -w"
  minor=${version#v1.}
  minor=${minor%%.*}
  build_date=$(cd "$mod" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' \
    k8s.io/kubernetes)
  for kv in "gitVersion=$version" gitMajor=1 "gitMinor=$minor" "buildDate=$build_date"; do
    ldflags+=" -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
  done
  printf '%s\n' "$ldflags"
}

# require_staging DIR VERSION: every staging module must be replaced by the release matching
# Kubernetes itself (v1.37.2 -> v0.37.2): mixing minors compiles, maybe, and fails at run time.
require_staging() {
  local mod=$1 staging=v0.${2#v1.} stray
  stray=$(grep -E '^\s*k8s\.io/\S+ => ' "$mod/go.mod" | grep -v " $staging\$" || true)
  [[ -z $stray ]] || die "${mod#"$repo_root/"}/go.mod: replace lines not at $staging: $stray"
}

# The control plane: kube-apiserver, kube-controller-manager, kube-scheduler and kubectl in one
# `go build` of one wrapper module, so the packages they share (most of k8s.io/kubernetes) compile
# once. The slot is named kubernetes-<version> (not kube-apiserver-<version>, which older checkouts
# sharing this cache fill with kube-apiserver alone: the two would rebuild each other's slot).
build_kube_apiserver() {
  local out=$1 mod="$repo_root/ci/gomod/kube-apiserver"
  require_version "$mod" k8s.io/kubernetes "$KUBERNETES_VERSION"
  require_staging "$mod" "$KUBERNETES_VERSION"
  local ldflags
  ldflags=$(k8s_ldflags "$KUBERNETES_VERSION" "$mod")
  (cd "$mod" && go build -trimpath -ldflags "$ldflags" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl)
}

install_kube_apiserver() {
  ensure kubernetes "$KUBERNETES_VERSION" \
    "kube-apiserver kube-controller-manager kube-scheduler kubectl" \
    "$repo_root/ci/gomod/kube-apiserver/go.mod $repo_root/ci/gomod/kube-apiserver/go.sum" \
    build_kube_apiserver
}

# The node: kubelet and kube-proxy, one minor line older than the control plane. Kubernetes 1.35 is
# the last release whose kubelet still works with containerd 1.x (Debian bookworm has 1.6) and the
# version skew policy lets a kubelet and kube-proxy be up to three minors older than kube-apiserver.
# Static like upstream's release builds (CGO_ENABLED=0, as everywhere here).
build_kubelet() {
  local out=$1 mod="$repo_root/ci/gomod/kubelet"
  require_version "$mod" k8s.io/kubernetes "$KUBELET_VERSION"
  require_staging "$mod" "$KUBELET_VERSION"
  local ldflags
  ldflags=$(k8s_ldflags "$KUBELET_VERSION" "$mod")
  (cd "$mod" && go build -trimpath -ldflags "$ldflags" -o "$out/" \
    k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-proxy)
}

install_kubelet() {
  ensure kubelet "$KUBELET_VERSION" "kubelet kube-proxy" \
    "$repo_root/ci/gomod/kubelet/go.mod $repo_root/ci/gomod/kubelet/go.sum" build_kubelet
}

# CoreDNS, the cluster DNS of the local node (cluster.local only).
build_coredns() {
  local out=$1 mod="$repo_root/ci/gomod/coredns" module=github.com/coredns/coredns
  require_version "$mod" "$module" "$COREDNS_VERSION"
  # Upstream's Makefile sets only the git commit, which the module proxy does not record; the
  # version is a constant in coremain.
  (cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$out/coredns" "$module")
}

install_coredns() {
  ensure coredns "$COREDNS_VERSION" coredns \
    "$repo_root/ci/gomod/coredns/go.mod $repo_root/ci/gomod/coredns/go.sum" build_coredns
}

build_etcd() {
  local out=$1 mod="$repo_root/ci/gomod/etcd"
  require_version "$mod" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
  # etcd's only version ldflag is api/v3/version.GitSHA, a commit the module proxy does
  # not record; the version itself (3.6.16) is a constant in the api module.
  (cd "$mod" && go build -trimpath -o "$out/etcd" go.etcd.io/etcd/server/v3)
}

install_etcd() {
  ensure etcd "$ETCD_VERSION" etcd \
    "$repo_root/ci/gomod/etcd/go.mod $repo_root/ci/gomod/etcd/go.sum" build_etcd
}

# --- command line --------------------------------------------------------------------

main() {
  # Cheap and often-used tools first; the Kubernetes builds (long first builds) last.
  all_tools=(helm kubeconform crds actionlint ct otelcol prometheus etcd coredns kube-apiserver kubelet)

  local started=$SECONDS tool
  local -a requested=("$@")
  [[ ${#requested[@]} -gt 0 ]] || requested=("${all_tools[@]}")
  # Check every name before building anything, so a typo fails at once, not after a build.
  for tool in "${requested[@]}"; do
    case "$tool" in
      helm | helm3 | kubeconform | crds | actionlint | ct | otelcol | prometheus | promtool | etcd) ;;
      coredns | kube-apiserver | kube-controller-manager | kube-scheduler | kubectl | kubelet | kube-proxy) ;;
      *) die "unknown tool '$tool' (known: ${all_tools[*]}; helm3, promtool, kube-proxy and kube-controller-manager, kube-scheduler, kubectl come with helm, prometheus, kubelet and kube-apiserver)" ;;
    esac
  done
  for tool in "${requested[@]}"; do
    case "$tool" in
      helm | helm3) install_helm ;;
      kubeconform) install_kubeconform ;;
      crds) "$repo_root/ci/crd-schemas.sh" "$cache_root" "$bin_dir" ;;
      actionlint) install_actionlint ;;
      ct) install_chart_testing ;;
      otelcol) install_otelcol ;;
      prometheus | promtool) install_prometheus ;;
      etcd) install_etcd ;;
      coredns) install_coredns ;;
      kube-apiserver | kube-controller-manager | kube-scheduler | kubectl) install_kube_apiserver ;;
      kubelet | kube-proxy) install_kubelet ;;
    esac
  done
  log "ready in bin/ ($((SECONDS - started))s): ${requested[*]}"
}

# Sourced (the tests of the recipes' resolution steps do), it only defines the functions.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
