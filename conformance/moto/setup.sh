#!/usr/bin/env bash
# Builds a Python venv with moto (AWS API mock server: EC2, IAM, STS, Organizations, EKS, Auto Scaling) once per machine,
# keyed by its version, under ~/.cache/spire-rs/moto-<version>, and prints the venv's
# python. The aws_iid tests start `python -m moto.server -H 127.0.0.1 -p <free port>` and
# point the server's AWS calls at it with AWS_ENDPOINT_URL.
set -euo pipefail
version=5.2.5
venv="${SPIRE_RS_CACHE:-$HOME/.cache/spire-rs}/moto-$version"
# Scenarios run in parallel: one build at a time, the others wait for it and reuse it.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
check() { "$1/bin/python" -c 'import moto.server, moto.ec2, moto.iam, moto.sts, moto.organizations, moto.eks, moto.autoscaling' 2>/dev/null; }
if [[ -x "$venv/bin/python" ]] && check "$venv"; then
    echo "$venv/bin/python"
    exit 0
fi
rm -rf "$venv.tmp"
python3 -m venv "$venv.tmp" >&2
"$venv.tmp/bin/pip" install --quiet --disable-pip-version-check "moto[server,ec2,iam,sts,organizations,eks,autoscaling]==$version" >&2
rm -rf "$venv"
mv "$venv.tmp" "$venv"
# A venv records its own path in its scripts; the python binary itself works after a move.
check "$venv" >&2
echo "$venv/bin/python"
