#!/usr/bin/env bash
# Builds a Python venv with the OpenTelemetry protocol's own Python bindings
# (opentelemetry-proto) and grpcio once per machine, keyed by version, under
# ~/.cache/spire-rs/otlp-<version>, and prints the venv's python. The OpenTelemetry
# scenario runs receiver.py in it as an independent OTLP/gRPC collector.
set -euo pipefail
version=1.38.0
venv="${SPIRE_RS_CACHE:-$HOME/.cache/spire-rs}/otlp-$version"
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
check() { "$1/bin/python" -c 'import grpc; from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2' 2>/dev/null; }
if [[ -x "$venv/bin/python" ]] && check "$venv"; then
    echo "$venv/bin/python"
    exit 0
fi
rm -rf "$venv.tmp"
python3 -m venv "$venv.tmp" >&2
"$venv.tmp/bin/pip" install --quiet --disable-pip-version-check "opentelemetry-proto==$version" grpcio >&2
rm -rf "$venv"
mv "$venv.tmp" "$venv"
check "$venv" >&2
echo "$venv/bin/python"
