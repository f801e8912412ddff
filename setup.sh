#!/usr/bin/env bash
# Creates ./.venv with the pinned, verified dependencies and ofa_tf installed in it.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
echo "ofa_tf installed in $(pwd)/.venv"
