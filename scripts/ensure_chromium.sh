#!/usr/bin/env bash
# The browser tests drive Debian's Chromium (never a browser downloaded at test time): install it
# with apt-get when it is missing.
set -euo pipefail
command -v "${CHROMIUM_PATH:-/usr/bin/chromium}" >/dev/null 2>&1 && exit 0
echo "installing Debian's chromium for the browser tests" >&2
if [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
