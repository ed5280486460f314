#!/usr/bin/env bash
# The project's .venv, on a fresh Debian too: installs python3-venv when Python cannot make a venv
# (ensurepip missing, as on a minimal bookworm), and replaces a .venv left half-made by an earlier
# failed attempt (one without a working pip).
#
#   scripts/ensure_venv.sh VENV_DIR [PYTHON]
set -euo pipefail
venv=$1
python=${2:-python3.11}
command -v "$python" >/dev/null || python=python3

"$venv/bin/python" -m pip --version >/dev/null 2>&1 && exit 0

if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  echo "installing python3-venv with apt-get (Python cannot create a virtualenv without it)" >&2
  if [ "$(id -u)" = 0 ]; then as_root=(); else as_root=(sudo); fi
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
if [ -e "$venv" ]; then
  echo "$venv has no working pip (an earlier attempt failed): making it again" >&2
  rm -rf "$venv"
fi
"$python" -m venv "$venv"
