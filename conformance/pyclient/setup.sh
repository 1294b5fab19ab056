#!/usr/bin/env bash
# Makes py-spiffe (PyPI package `spiffe`) importable by python3; prints nothing on success.
# A Debian system python refuses plain `pip install` (PEP 668); then install for the user.
set -euo pipefail
python3 -c 'import spiffe' 2>/dev/null && exit 0
python3 -m pip install --quiet spiffe >&2 ||
    python3 -m pip install --quiet --user --break-system-packages spiffe >&2
python3 -c 'import spiffe'
