#!/usr/bin/env bash
# Headless Chromium and ChromeDriver from Debian's packages, for the sandbox's browser test.
# Idempotent: does nothing when both are already installed. Never downloads a browser build of
# its own: Selenium is pointed at these two binaries explicitly.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-browser: chromium is missing and installing it needs root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
/usr/bin/chromium --version
