#!/usr/bin/env bash
# Builds a real kube-apiserver, kubelet and kubectl from the Go module proxy, once per machine, into a
# cache directory keyed by version (like conformance/build-reference.sh does for SPIRE).
# k8s.io/kubernetes replaces its staging modules with local paths, so `go install` refuses it;
# a wrapper module pins every staging module to its published v0.x twin instead.
#
# Usage: conformance/k8s/build.sh        # prints the bin directory on stdout
# Env:   SPIRE_RS_K8S_VERSION (default v1.37.2), SPIRE_RS_K8S_CACHE (default ~/.cache/spire-rs/k8s)
set -euo pipefail

version="${SPIRE_RS_K8S_VERSION:-v1.37.2}"
cache="${SPIRE_RS_K8S_CACHE:-$HOME/.cache/spire-rs/k8s}/$version"
# Scenarios run in parallel: one build at a time, the others wait for it.
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
bin="$cache/bin"

if [[ -x "$bin/kube-apiserver" && -x "$bin/kubelet" && -x "$bin/kubectl" ]]; then
    echo "$bin"
    exit 0
fi

command -v go >/dev/null || { echo "go is required to build kube-apiserver and kubelet" >&2; exit 1; }
minor="${version#v1.}"; minor="${minor%%.*}"
patch="${version##*.}"
staging="v0.${minor}.${patch}"
mkdir -p "$cache/mod" "$bin"
cd "$cache/mod"
{
    go mod download -json "k8s.io/kubernetes@$version" >/dev/null
    modfile="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$version.mod"
    {
        echo "module spire-rs-k8s"
        echo
        echo "go $(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/').0"
        echo
        echo "require k8s.io/kubernetes $version"
        echo
        echo "replace ("
        grep -E '^\s+k8s.io/[a-z0-9-]+ => \./staging' "$modfile" | awk -v v="$staging" '{print "\t"$1" => "$1" "v}'
        echo ")"
    } > go.mod
    export GOFLAGS=-mod=mod
    go get "k8s.io/kubernetes/cmd/kube-apiserver@$version" "k8s.io/kubernetes/cmd/kubelet@$version" \
        "k8s.io/kubernetes/cmd/kubectl@$version"
    ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
    for cmd in kube-apiserver kubelet kubectl; do
        [[ -x "$bin/$cmd" ]] && continue
        go build -o "$bin/$cmd.tmp" -ldflags "$ldflags" "k8s.io/kubernetes/cmd/$cmd"
        mv "$bin/$cmd.tmp" "$bin/$cmd"
    done
} >&2
echo "$bin"
