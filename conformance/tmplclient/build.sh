#!/usr/bin/env bash
# Builds the agent path template renderer (reference SPIRE's agentpathtemplate package) once into a cache directory and prints the
# binary's path (conformance/gobuild.sh). Rebuilds when main.go, go.mod or go.sum change.
# Env: SPIRE_RS_TMPLCLIENT_CACHE (default ~/.cache/spire-rs/tmplclient)
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/../gobuild.sh" tmplclient "agent path template client" \
    "${SPIRE_RS_TMPLCLIENT_CACHE:-$HOME/.cache/spire-rs/tmplclient}"
