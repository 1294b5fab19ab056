#!/usr/bin/env bash
# Builds a Python venv with PyJWT (and its crypto extra) pinned in requirements.txt, once per
# machine, under ~/.cache/spire-rs/oidcclient-<hash of this directory's sources>, and prints
# the venv's python. The OIDC scenarios verify JWT-SVIDs with it, reading the provider's
# discovery document and keys as a relying party does.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
hash="$(cat "$here/requirements.txt" "$here/setup.sh" | sha256sum | cut -c1-16)"
venv="${SPIRE_RS_CACHE:-$HOME/.cache/spire-rs}/oidcclient-$hash"
if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import jwt, cryptography' 2>/dev/null; then
    echo "$venv/bin/python"
    exit 0
fi
rm -rf "$venv.tmp"
python3 -m venv "$venv.tmp" >&2
"$venv.tmp/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
rm -rf "$venv"
mv "$venv.tmp" "$venv"
# A venv records its own path in its scripts; the python binary itself works after a move.
"$venv/bin/python" -c 'import jwt, cryptography' >&2
echo "$venv/bin/python"
