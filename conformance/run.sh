#!/usr/bin/env bash
# Runs the conformance suite for one pairing of implementations and writes a results file.
#
# Usage: conformance/run.sh [PAIRING...] [-- extra libtest args, e.g. a scenario filter]
#   PAIRING (default spire-rs):
#     reference        reference SPIRE 1.13.3 server and agent (the baseline: all must pass)
#     spire-rs         our server and our agent
#     server-spire-rs  our server, reference agent   (SERVER_SUBJECT=spire-rs AGENT_SUBJECT=reference)
#     agent-spire-rs   reference server, our agent   (SERVER_SUBJECT=reference AGENT_SUBJECT=spire-rs)
#     all              the four above, in that order
#
# Results: conformance/results/<pairing>.tsv (scenario, pass|fail|skip, first failure line)
# and conformance/results/<pairing>.log (the full cargo test output). Turn them into
# docs/COMPATIBILITY.md with conformance/report.sh.
#
# Env:
#   CARGO_TARGET_DIR          where the suite and our binaries are built (default: target/)
#   SPIRE_RS_BIN_DIR          our binaries; when set, run.sh does not build them
#   SPIRE_REF_BIN_DIR         reference binaries (default: conformance/build-reference.sh)
#   SPIRE_RS_GOPLUGINS_DIR    the Go SDK test plugins (default: conformance/goplugins/build.sh)
#   SPIRE_RS_REQUIRE_CLIENTS  1: py-spiffe / go-spiffe unavailable is a failure, not a skip
#   SPIRE_RS_K8S_BIN_DIR      kube-apiserver, kubelet, kubectl (default: conformance/k8s/build.sh)
#   SPIRE_RS_REQUIRE_K8S      1: no Kubernetes cluster is a failure, not a skip
#   SPIRE_RS_REQUIRE_CONTAINERS 1: no dockerd/podman (docker, systemd attestor scenarios) is a failure, not a skip
#   SPIRE_RS_REQUIRE_TPM      1: no swtpm/swtpm_setup or Go (tpm_devid scenarios) is a failure, not a skip
#   SPIRE_RS_REQUIRE_SOFTHSM  1: no SoftHSM2/pkcs11-tool (pkcs11 KeyManager scenarios) is a failure, not a skip
#   CONFORMANCE_THREADS       parallel scenarios (default 4)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
log() { echo "run.sh: $*" >&2; }

pairings=()
extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --) shift; extra=("$@"); break ;;
        all) pairings+=(reference spire-rs server-spire-rs agent-spire-rs) ;;
        reference|spire-rs|server-spire-rs|agent-spire-rs) pairings+=("$1") ;;
        *) echo "unknown pairing $1 (reference|spire-rs|server-spire-rs|agent-spire-rs|all)" >&2; exit 2 ;;
    esac
    shift
done
[[ ${#pairings[@]} -gt 0 ]] || pairings=(spire-rs)

SPIRE_REF_BIN_DIR="${SPIRE_REF_BIN_DIR:-$(conformance/build-reference.sh)}"
export SPIRE_REF_BIN_DIR
GOMODCACHE="${GOMODCACHE:-$(go env GOMODCACHE 2>/dev/null || true)}"
export GOMODCACHE
log "reference SPIRE in $SPIRE_REF_BIN_DIR"

# External plugins built with SPIRE's Go plugin SDK, for external_plugins::*.
SPIRE_RS_GOPLUGINS_DIR="${SPIRE_RS_GOPLUGINS_DIR:-$(conformance/goplugins/build.sh)}"
export SPIRE_RS_GOPLUGINS_DIR

# kube-apiserver and kubelet for k8s_psat::* (built once per machine).
SPIRE_RS_K8S_BIN_DIR="${SPIRE_RS_K8S_BIN_DIR:-$(conformance/k8s/build.sh)}"
export SPIRE_RS_K8S_BIN_DIR

# py-spiffe for the independent-client scenario; go-spiffe is built by the scenario itself.
conformance/pyclient/setup.sh || log "py-spiffe unavailable: clients::py_spiffe will skip (or fail with SPIRE_RS_REQUIRE_CLIENTS=1)"

# PyJWT (a venv built once per machine) for the OIDC discovery provider scenarios.
conformance/oidcclient/setup.sh >/dev/null || log "PyJWT unavailable: oidc::server_api_* will skip (or fail with SPIRE_RS_REQUIRE_CLIENTS=1)"

# pebble, the ACME CA of the provider's acme scenario (built once per machine).
conformance/pebble/build.sh >/dev/null || log "pebble unavailable: oidc::acme_* will skip (or fail with SPIRE_RS_REQUIRE_CLIENTS=1)"

needs_ours=0
for p in "${pairings[@]}"; do [[ "$p" != reference ]] && needs_ours=1; done
if [[ $needs_ours == 1 && -z "${SPIRE_RS_BIN_DIR:-}" ]]; then
    log "building our spire-server and spire-agent"
    cargo build -p spire-server -p spire-agent
    SPIRE_RS_BIN_DIR="${CARGO_TARGET_DIR:-$root/target}/debug"
    [[ "$SPIRE_RS_BIN_DIR" = /* ]] || SPIRE_RS_BIN_DIR="$root/$SPIRE_RS_BIN_DIR"
fi
# The oidc scenarios run our oidc-discovery-provider beside SPIRE's in every pairing.
log "building our oidc-discovery-provider"
cargo build -p spire-oidc-discovery-provider
if [[ -z "${SPIRE_RS_BIN_DIR:-}" ]]; then
    SPIRE_RS_BIN_DIR="${CARGO_TARGET_DIR:-$root/target}/debug"
    [[ "$SPIRE_RS_BIN_DIR" = /* ]] || SPIRE_RS_BIN_DIR="$root/$SPIRE_RS_BIN_DIR"
fi
export SPIRE_RS_BIN_DIR="${SPIRE_RS_BIN_DIR:-}"

# The Rust SDK's example plugins, for external_plugins::rust_sdk_*.
cargo build -p spire-plugin-sdk --examples
SPIRE_RS_SDK_EXAMPLES_DIR="${CARGO_TARGET_DIR:-$root/target}/debug/examples"
[[ "$SPIRE_RS_SDK_EXAMPLES_DIR" = /* ]] || SPIRE_RS_SDK_EXAMPLES_DIR="$root/$SPIRE_RS_SDK_EXAMPLES_DIR"
export SPIRE_RS_SDK_EXAMPLES_DIR

log "building the suite"
cargo test -p spire-conformance --test suite --no-run

mkdir -p conformance/results
status=0
for p in "${pairings[@]}"; do
    case "$p" in
        reference) server=reference; agent=reference ;;
        spire-rs) server=spire-rs; agent=spire-rs ;;
        server-spire-rs) server=spire-rs; agent=reference ;;
        agent-spire-rs) server=reference; agent=spire-rs ;;
    esac
    out="conformance/results/$p"
    skips="$(mktemp)"
    log "pairing $p: server=$server agent=$agent"
    start=$(date +%s)
    set +e
    SUBJECT="$server" SERVER_SUBJECT="$server" AGENT_SUBJECT="$agent" \
        SPIRE_CONFORMANCE_SKIP_FILE="$skips" \
        cargo test -p spire-conformance --test suite -- --include-ignored \
        --test-threads="${CONFORMANCE_THREADS:-4}" "${extra[@]}" >"$out.log" 2>&1
    rc=$?
    set -e
    secs=$(( $(date +%s) - start ))
    [[ $rc == 0 ]] || status=1
    # One line per scenario: name, pass|fail|skip, first line of the failure message.
    {
        printf '# pairing=%s server=%s agent=%s seconds=%s date=%s\n' \
            "$p" "$server" "$agent" "$secs" "$(date -u +%Y-%m-%dT%H:%MZ)"
        awk -v skips="$skips" '
            BEGIN { while ((getline l < skips) > 0) { split(l, f, "\t"); skip[f[1]] = f[2] } }
            /^test [^ ]+ \.\.\. (ok|FAILED|ignored)$/ { name = $2; res[name] = $4; order[++n] = name }
            /^---- [^ ]+ stdout ----$/ { cur = $2; want = 0 }
            cur != "" && /panicked at/ { want = 1; next }
            cur != "" && want == 1 { if (!(cur in why)) why[cur] = substr($0, 1, 240); want = 0 }
            END {
                for (i = 1; i <= n; i++) {
                    t = order[i]; r = res[t]
                    if (r == "ok" && (t in skip)) { print t "\tskip\t" skip[t]; continue }
                    if (r == "ok") print t "\tpass\t"
                    else if (r == "FAILED") print t "\tfail\t" why[t]
                    else print t "\tskip\tignored"
                }
            }' "$out.log" | sort
    } >"$out.tsv"
    rm -f "$skips"
    pass=$(grep -c $'\tpass' "$out.tsv" || true)
    fail=$(grep -c $'\tfail' "$out.tsv" || true)
    skip=$(grep -c $'\tskip' "$out.tsv" || true)
    log "pairing $p: $pass passed, $fail failed, $skip skipped in ${secs}s ($out.tsv)"
    echo "$p: $pass passed, $fail failed, $skip skipped"
done
exit $status
