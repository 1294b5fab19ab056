#!/usr/bin/env bash
# Runs every test of spire-rs the way CI does: starts PostgreSQL and MariaDB on loopback,
# builds reference SPIRE 1.13.3 and its oidc-discovery-provider (cached) for the differential and interop tests, installs
# py-spiffe for the independent-client tests, then runs the whole workspace's tests and
# the conformance suite (reference, spire-rs and both mixed pairs).
#
# Usage: scripts/test.sh [extra cargo test args]   (passed to the workspace's cargo test)
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

# toxiproxy (Go, built once per machine) for the database latency and cut tests.
scripts/toxiproxy.sh >/dev/null

# py-spiffe and go-spiffe, independent Workload API clients: required, not skipped.
conformance/pyclient/setup.sh
export SPIRE_RS_REQUIRE_PY=1 SPIRE_RS_REQUIRE_CLIENTS=1

# PyJWT, the OIDC relying party of the oidc-discovery-provider scenarios (a venv).
conformance/oidcclient/setup.sh >/dev/null

# pebble (Let's Encrypt's test ACME CA, Go, built once per machine) for the provider's acme
# scenario: required, not skipped.
conformance/pebble/build.sh >/dev/null

# External plugins built with SPIRE's plugin SDK (Go), loaded by both implementations.
SPIRE_RS_GOPLUGINS_DIR="$(conformance/goplugins/build.sh)"
export SPIRE_RS_GOPLUGINS_DIR

# A real Kubernetes control plane (kube-apiserver built once per machine; etcd from Debian)
# for the k8s plugins' tests and scenarios: required, not skipped.
SPIRE_RS_K8S_BIN_DIR="$(conformance/k8s/build.sh)"
export SPIRE_RS_K8S_BIN_DIR SPIRE_RS_REQUIRE_K8S=1

# Real container engines (dockerd, podman, systemd in a container) for the docker and systemd
# workload attestors' tests and scenarios: required, not skipped (.ci/run installs docker.io,
# podman and debootstrap; conformance/containers/engines.sh starts them on private roots).
export SPIRE_RS_REQUIRE_CONTAINERS=1

# A software TPM (swtpm, swtpm_setup from Debian; .ci/run installs them) for the tpm_devid
# scenarios, provisioned by conformance/tpmprov (Go): required, not skipped.
export SPIRE_RS_REQUIRE_TPM=1
# SoftHSM2 (and OpenSC's pkcs11-tool) for the pkcs11 KeyManager's tests and scenarios:
# required, not skipped (.ci/run installs softhsm2 and opensc; every test makes its own token
# directory and SOFTHSM2_CONF).
export SPIRE_RS_REQUIRE_SOFTHSM=1

# moto (AWS API mock server, a venv built once per machine) for the aws_iid server half's
# EC2/IAM calls and scenario: required, not skipped.
conformance/moto/setup.sh >/dev/null
export SPIRE_RS_REQUIRE_AWS=1

# The Go module cache holds SPIRE's example configs that the config tests read.
GOMODCACHE="${GOMODCACHE:-$(go env GOMODCACHE)}"
export GOMODCACHE

# Unit, integration and differential tests of every crate, the ignored ones included: a
# plain `cargo test` ignores (and lists) the tests that need reference SPIRE, the databases,
# root or the Go module cache, which this script provides. The conformance scenarios run
# below, once per pairing.
cargo test --workspace --exclude spire-conformance --locked "$@" -- --include-ignored

# The conformance suite: reference SPIRE (keeps the scenarios honest), then our server and
# agent together and each of them paired with the reference other half.
cargo build --locked -p spire-server -p spire-agent -p spire-oidc-discovery-provider
SPIRE_RS_BIN_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug"
export SPIRE_RS_BIN_DIR
conformance/run.sh all

