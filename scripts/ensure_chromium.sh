#!/usr/bin/env bash
# The end-to-end test drives Debian's Chromium (no browser can be downloaded by Playwright here).
# Installs it with apt when missing and we are root; otherwise says what to install and lets the test skip.
set -uo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing Debian's chromium for the browser test"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "setup: could not install chromium; the browser test will be skipped" >&2
else
  echo "setup: chromium not found (apt-get install chromium); the browser test will be skipped" >&2
fi
exit 0
