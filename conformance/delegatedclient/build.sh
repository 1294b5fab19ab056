#!/usr/bin/env bash
# Builds the Delegated Identity API client (spire-api-sdk's Go stubs at the version SPIRE
# 1.13.3 requires, plus go-spiffe for verification) once into a cache directory and prints
# the binary's path (conformance/gobuild.sh). Rebuilds when main.go, go.mod or go.sum change.
# Env: SPIRE_RS_DELEGATEDCLIENT_CACHE (default ~/.cache/spire-rs/delegatedclient)
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/../gobuild.sh" delegatedclient "delegated identity client" \
    "${SPIRE_RS_DELEGATEDCLIENT_CACHE:-$HOME/.cache/spire-rs/delegatedclient}"
