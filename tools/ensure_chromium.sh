#!/usr/bin/env bash
# Makes sure a headless Chromium and its WebDriver are installed: the browser test of the dashboard page
# (tests/integration/test_dashboard_page.py) drives them through Selenium. Debian's `chromium` and
# `chromium-driver` packages; nothing when both are present. Needs root (or sudo) for apt-get.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
echo "installing chromium and chromium-driver (the dashboard page's browser test drives them)" >&2
export DEBIAN_FRONTEND=noninteractive
sudo=""; [[ "$(id -u)" == 0 ]] || sudo="sudo"
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
