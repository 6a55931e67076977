#!/usr/bin/env bash
# Sourced by ci/build-image.sh, ci/kind/build-api-image.sh and ci/node/images.sh (not run): the
# docker client they build with. BuildKit is needed for the secret mount of the CA bundle: a client
# with the buildx plugin, or one older than 23 with BuildKit built in (DOCKER_BUILDKIT=1), such as
# Debian's docker.io (20.10). DOCKER names a client to try first. The caller defines die().

# pick_client: print the first client that builds with BuildKit; fail when there is none.
pick_client() {
  local candidate version
  for candidate in ${DOCKER:+"$DOCKER"} docker /usr/bin/docker; do
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" buildx version >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
    version=$("$candidate" version --format '{{.Client.Version}}' 2>/dev/null || true)
    if [[ $version =~ ^(1[89]|2[0-2])\. ]]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

# use_docker_client: DOCKER_CLI set to that client and BuildKit on, or die() with what is missing.
use_docker_client() {
  # shellcheck disable=SC2034 # read by the scripts that source this file
  DOCKER_CLI=$(pick_client) ||
    die "no docker client with BuildKit (the buildx plugin, or a docker client older than 23 such as Debian's docker.io)"
  export DOCKER_BUILDKIT=1
}
