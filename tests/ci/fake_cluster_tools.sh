#!/bin/sh
# Fake kind, kubectl, helm and docker for test_ci_kind_script.py (installed as symlinks named after
# each tool): records the call, answers the few questions ci/kind/kind-e2e.sh asks, and hands what needs
# real logic (the collector's log, curl) to fake_cluster_tools.py. Plain sh keeps each call cheap.
# Calls go to $FAKE_STATE/calls.log, one per line, the tool and its arguments separated by \037.
tool=$(basename "$0")
{
  printf '%s' "$tool"
  for arg in "$@"; do printf '\037%s' "$arg"; done
  printf '\n'
} >>"$FAKE_STATE/calls.log"

# The arguments without --context/--kube-context X and -n/--namespace X.
plain=""
skip=0
for arg in "$@"; do
  if [ "$skip" = 1 ]; then
    skip=0
    continue
  fi
  case $arg in
    --context | --kube-context | -n | --namespace) skip=1 ;;
    *) plain="$plain $arg" ;;
  esac
done
plain=${plain# }
first=${plain%% *}

if [ -n "${FAKE_FAIL:-}" ] && [ "$FAKE_FAIL" = "$tool $first" ]; then
  echo "$tool: failing on purpose (FAKE_FAIL)" >&2
  exit 1
fi

case "$tool $plain" in
  "kind version"*) echo "kind v0.33.0 go1.26.8 linux/amd64" ;;
  "kind get clusters"*) printf '%s\n' "${FAKE_EXISTING_CLUSTERS:-}" ;;
  "helm version"*) echo "v4.3.1+gfake" ;;
  "kubectl version"*) echo "Client Version: v1.37.0" ;;
  "kubectl get deployments"*name*) echo "deployment.apps/wp-k8s-service" ;;
  "kubectl get pods"*name*) echo "pod/wp-k8s-service-7d9f-abcde" ;;
  "kubectl create namespace"*) printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n' ;;
  "kubectl apply -f -"*) cat >/dev/null ;;
  "kubectl port-forward"*)
    echo "Forwarding from 127.0.0.1:18000 -> 8000"
    exec sleep 600
    ;;
  "kubectl logs"*otel-collector*) exec "$FAKE_PYTHON" -I -S "$FAKE_PY" collector-log ;;
  curl*) exec "$FAKE_PYTHON" -I -S "$FAKE_PY" curl "$@" ;;
esac
exit 0
