#!/bin/sh
# Entry point of every image: a fresh folder for prometheus-client's multiprocess files (a
# restarted container must not add its dead processes' samples to the new ones), then the command.
set -eu
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
  rm -rf "$PROMETHEUS_MULTIPROC_DIR"
  mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
fi
exec "$@"
