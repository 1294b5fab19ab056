#!/usr/bin/env bash
# Builds the TPM provisioning tool (go-tpm, the version SPIRE 1.13.3 pins) once into a
# cache directory and prints the binary's path (conformance/gobuild.sh). Rebuilds when
# main.go, go.mod or go.sum change.
# Env: SPIRE_RS_TPMPROV_CACHE (default ~/.cache/spire-rs/tpmprov)
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/../gobuild.sh" tpmprov "TPM provisioning tool" \
    "${SPIRE_RS_TPMPROV_CACHE:-$HOME/.cache/spire-rs/tpmprov}"
