#!/usr/bin/env bash
# Makes py-spiffe (PyPI package `spiffe`) importable by python3; prints nothing on success.
set -euo pipefail
python3 -c 'import spiffe' 2>/dev/null && exit 0
python3 -m pip install --quiet spiffe >&2
python3 -c 'import spiffe'
