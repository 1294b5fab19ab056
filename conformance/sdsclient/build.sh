#!/usr/bin/env bash
# Builds the Envoy SDS conformance client (go-control-plane) once into a cache directory and
# prints the binary's path (conformance/gobuild.sh). Rebuilds when main.go, go.mod or go.sum
# change.
# Env: SPIRE_RS_SDSCLIENT_CACHE (default ~/.cache/spire-rs/sdsclient)
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/../gobuild.sh" sdsclient "SDS client" \
    "${SPIRE_RS_SDSCLIENT_CACHE:-$HOME/.cache/spire-rs/sdsclient}"
