#!/usr/bin/env bash
# Sourced by the tools/ensure_*.sh scripts: `apt_install REASON PACKAGE...` installs Debian packages
# quietly (apt-get, with sudo when not root), saying why on stderr.
apt_install() {
    local reason=$1
    shift
    echo "installing $* ($reason)" >&2
    export DEBIAN_FRONTEND=noninteractive
    local sudo=""
    [[ "$(id -u)" == 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
