#!/usr/bin/env bash
# Creates ./.venv with the pinned, verified dependencies and ofa_tf installed in it.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# The test extra includes torch 2.13.0 (its CPU-only build, see BUILD.md) and OFA's PyTorch code,
# against which tests/test_ofa_interop.py checks the import of OFA's checkpoints.
.venv/bin/python -m pip install -q -e ".[test]"
echo "ofa_tf installed in $(pwd)/.venv"
