#!/bin/sh
# Creates .venv with the project and its development tools, on a machine that has only Python.
set -eu
PY="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    # Debian splits venv/ensurepip out of its python3 package.
    ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    apt-get update -q
    apt-get install -y -q "python${ver}-venv" || apt-get install -y -q python3-venv
fi
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e '.[dev]'
