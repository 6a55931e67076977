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
