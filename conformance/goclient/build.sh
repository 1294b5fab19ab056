#!/usr/bin/env bash
# Builds the go-spiffe v2 conformance client once into a cache directory and prints the
# binary's path (conformance/gobuild.sh). Rebuilds when main.go, go.mod or go.sum change.
# Env: SPIRE_RS_GOCLIENT_CACHE (default ~/.cache/spire-rs/goclient)
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/../gobuild.sh" goclient "go-spiffe client" \
    "${SPIRE_RS_GOCLIENT_CACHE:-$HOME/.cache/spire-rs/goclient}"
