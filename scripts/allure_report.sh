#!/usr/bin/env bash
# Builds the Allure HTML report of the last test run as ONE self-contained file that opens straight
# from disk: var/allure-report/index.html. Allure comes from npm (pinned here, installed once under
# var/tools; no lock file, so no registry address is committed) and runs on the machine's Java.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ALLURE_VERSION=2.46.1
TOOLS=$ROOT/var/tools
RESULTS=${1:-$ROOT/var/allure-results}
REPORT=$ROOT/var/allure-report
ALLURE=$TOOLS/node_modules/.bin/allure

if [ ! -x "$ALLURE" ] || ! "$ALLURE" --version 2>/dev/null | grep -qx "$ALLURE_VERSION"; then
  mkdir -p "$TOOLS"
  npm install --prefix "$TOOLS" --no-save --no-package-lock --no-audit --no-fund --silent \
    "allure-commandline@$ALLURE_VERSION"
fi
if ! command -v java >/dev/null; then
  echo "Allure needs Java (apt-get install default-jre-headless)" >&2
  exit 1
fi
"$ALLURE" generate --single-file --clean -o "$REPORT" "$RESULTS" >/dev/null
echo "Allure report: $REPORT/index.html"
