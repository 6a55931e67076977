#!/usr/bin/env bash
# Installs the real services the tests and the demo start as processes of their own.
# Only Debian packages are used; nothing is started here.
set -euo pipefail

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v shellcheck >/dev/null || missing+=(shellcheck)
# The live-API-server tests make their CA and certificates with openssl.
command -v openssl >/dev/null || missing+=(openssl)
# The image tests build and run the worker image: a Docker engine, and debootstrap for a local
# base image (no registry can be reached to pull one).
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
# The local single-node cluster (make cluster-up, devsupport/wp_devsupport/cluster/node.py): its own
# containerd and runc (from docker.io above), the CNI plugins, kube-proxy's iptables and conntrack,
# dig to check the cluster DNS, and a static busybox for the node tests' throwaway images.
[[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
command -v iptables >/dev/null || missing+=(iptables)
command -v conntrack >/dev/null || missing+=(conntrack)
command -v dig >/dev/null || missing+=(dnsutils)
[[ -x /bin/busybox ]] || missing+=(busybox-static)

if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "ci/services.sh: missing ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "[services] installing ${missing[*]} from Debian" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian package starts a system redis on 6379; the tests use their own instances on free ports.
