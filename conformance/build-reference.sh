#!/usr/bin/env bash
# Builds reference SPIRE (spire-server, spire-agent, oidc-discovery-provider) from the Go
# module proxy, once per machine, into a cache directory. Nothing of SPIRE's
# source is kept in this repository: the sources live in the Go module cache only.
#
# Usage: conformance/build-reference.sh            # prints the bin directory on stdout
# Env:   SPIRE_REF_VERSION (default v1.13.3), SPIRE_REF_CACHE (default ~/.cache/spire-rs/reference)
set -euo pipefail

version="${SPIRE_REF_VERSION:-v1.13.3}"
cache="${SPIRE_REF_CACHE:-$HOME/.cache/spire-rs/reference}/$version"
bin="$cache/bin"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

build_oidc() {
    # The OIDC discovery provider joined later: a cache holding the server and the agent
    # gets it added without rebuilding them.
    (
        mkdir -p "$cache/mod" "$bin"
        cd "$cache/mod"
        export GOFLAGS=-mod=mod
        # `go install pkg@version` asks the proxy for the module's version list, which it
        # refuses (403): add the tool to the cache's module and install from there.
        [[ -f go.mod ]] || go mod init spire-rs-reference >/dev/null 2>&1
        go get -tool "github.com/spiffe/spire/support/oidc-discovery-provider@$version"
        GOBIN="$bin" go install github.com/spiffe/spire/support/oidc-discovery-provider
    ) >&2
}

if [[ -x "$bin/spire-server" && -x "$bin/spire-agent" ]]; then
    [[ -x "$bin/oidc-discovery-provider" ]] || build_oidc
    echo "$bin"
    exit 0
fi

command -v go >/dev/null || { echo "go is required to build reference SPIRE" >&2; exit 1; }
mkdir -p "$cache/mod" "$bin"
cd "$cache/mod"
if [[ ! -f go.mod ]]; then
    go mod init spire-rs-reference >/dev/null 2>&1
fi
export GOFLAGS=-mod=mod
{
    go get -tool "github.com/spiffe/spire/cmd/spire-server@$version"
    go get -tool "github.com/spiffe/spire/cmd/spire-agent@$version"
    GOBIN="$bin" go install github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent
} >&2
build_oidc
echo "$bin"
