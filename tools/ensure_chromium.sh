#!/usr/bin/env bash
# Makes sure a headless Chromium and its WebDriver are installed: the browser test of the dashboard page
# (tests/integration/test_dashboard_page.py) drives them through Selenium. Debian's `chromium` and
# `chromium-driver` packages; nothing when both are present. Needs root (or sudo) for apt-get.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
source "$(dirname "$0")/apt_install.sh"
apt_install "the dashboard page's browser test drives them" chromium chromium-driver
