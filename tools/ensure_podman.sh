#!/usr/bin/env bash
# Makes sure podman (and mmdebstrap, which builds the images' base without a registry) is installed: the
# k8s tier proves the images by running pods from them. About 25 s from Debian's packages when missing;
# nothing when present. Needs root (or sudo) for apt-get.
set -euo pipefail
if command -v podman >/dev/null 2>&1 && command -v mmdebstrap >/dev/null 2>&1; then
    exit 0
fi
echo "installing podman and mmdebstrap (the k8s tier runs pods from the images with them)" >&2
export DEBIAN_FRONTEND=noninteractive
sudo=""; [[ "$(id -u)" == 0 ]] || sudo="sudo"
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends \
    podman buildah runc uidmap fuse-overlayfs slirp4netns mmdebstrap ca-certificates >/dev/null
