#!/usr/bin/env bash
# Makes sure podman (and mmdebstrap, which builds the images' base without a registry) is installed: the
# k8s tier proves the images by running pods from them. About 25 s from Debian's packages when missing;
# nothing when present. Needs root (or sudo) for apt-get.
set -euo pipefail
if command -v podman >/dev/null 2>&1 && command -v mmdebstrap >/dev/null 2>&1; then
    exit 0
fi
source "$(dirname "$0")/apt_install.sh"
apt_install "the k8s tier runs pods from the images with them" \
    podman buildah runc uidmap fuse-overlayfs slirp4netns mmdebstrap ca-certificates
