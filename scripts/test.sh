#!/usr/bin/env bash
# Runs every test of spire-rs the way CI does: starts PostgreSQL and MariaDB on loopback,
# builds reference SPIRE 1.13.3 (cached) for the differential and interop tests, installs
# py-spiffe for the independent-client tests, then runs the whole workspace's tests.
#
# Usage: scripts/test.sh [extra cargo test args]
# Needs: root on Debian (to apt-get install mariadb-server and sqlite3 the first time),
# Go (for reference SPIRE), Rust 1.95.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "test.sh: $*" >&2; }

# Reference SPIRE binaries for the differential and interop tests.
SPIRE_REF_BIN_DIR="$(conformance/build-reference.sh)"
export SPIRE_REF_BIN_DIR
log "reference SPIRE in $SPIRE_REF_BIN_DIR"

# Real databases, never mocks.
eval "$(scripts/test-databases.sh start)"
export SPIRE_RS_REQUIRE_DBS=1

# py-spiffe, an independent Workload API client.
if python3 -c 'import spiffe' 2>/dev/null || python3 -m pip install --quiet spiffe >&2; then
    export SPIRE_RS_REQUIRE_PY=1
fi

# The Go module cache holds SPIRE's example configs that the config tests read.
GOMODCACHE="${GOMODCACHE:-$(go env GOMODCACHE)}"
export GOMODCACHE

cargo test --workspace --locked "$@"
