#!/usr/bin/env bash
# spire-rs quickstart: builds spire-server and spire-agent, starts a server on embedded
# SQLite and an agent attested with a join token, registers the current user's uid, and
# shows a workload (this shell) receiving its X509-SVID and a JWT-SVID.
#
# Usage: scripts/quickstart.sh [work-dir]   (default: a new temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet -p spire-server -p spire-agent
bin="${CARGO_TARGET_DIR:-target}/debug"
server="$bin/spire-server"
agent="$bin/spire-agent"

work="${1:-$(mktemp -d /tmp/spire-rs-quickstart.XXXXXX)}"
mkdir -p "$work"
sock="$work/server.sock"
wsock="$work/agent.sock"
port=$(( 20000 + RANDOM % 20000 ))
echo "==> working in $work"

cat >"$work/server.conf" <<CONF
server {
    bind_address = "127.0.0.1"
    bind_port = "$port"
    socket_path = "$sock"
    trust_domain = "example.org"
    data_dir = "$work/server-data"
    log_level = "INFO"
}
plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = "$work/server-data/datastore.sqlite3"
        }
    }
    KeyManager "disk" {
        plugin_data {
            keys_path = "$work/server-data/keys.json"
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
}
CONF

cat >"$work/agent.conf" <<CONF
agent {
    data_dir = "$work/agent-data"
    log_level = "INFO"
    server_address = "127.0.0.1"
    server_port = "$port"
    socket_path = "$wsock"
    trust_bundle_path = "$work/bundle.pem"
    trust_domain = "example.org"
}
plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "disk" {
        plugin_data {
            directory = "$work/agent-data"
        }
    }
    WorkloadAttestor "unix" {
        plugin_data {}
    }
}
CONF

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

echo "==> starting spire-server (logs: $work/server.log)"
"$server" run -config "$work/server.conf" >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    "$server" healthcheck -socketPath "$sock" >/dev/null 2>&1 && break
    sleep 0.1
done
"$server" healthcheck -socketPath "$sock"

"$server" bundle show -socketPath "$sock" >"$work/bundle.pem"
token=$("$server" token generate -socketPath "$sock" -ttl 600 | awk '/^Token:/ {print $2}')
echo "==> join token generated"

echo "==> starting spire-agent (logs: $work/agent.log)"
"$agent" run -config "$work/agent.conf" -joinToken "$token" >"$work/agent.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    "$agent" healthcheck -socketPath "$wsock" >/dev/null 2>&1 && break
    sleep 0.1
done
"$agent" healthcheck -socketPath "$wsock"

agent_id="spiffe://example.org/spire/agent/join_token/$token"
echo "==> registering spiffe://example.org/quickstart for uid $(id -u)"
"$server" entry create -socketPath "$sock" \
    -parentID "$agent_id" \
    -spiffeID spiffe://example.org/quickstart \
    -selector "unix:uid:$(id -u)"

echo "==> this shell, as a workload, fetches its X509-SVID"
for _ in $(seq 1 100); do
    "$agent" api fetch x509 -socketPath "$wsock" -write "$work" >/dev/null 2>&1 && break
    sleep 0.1
done
"$agent" api fetch x509 -socketPath "$wsock"
openssl verify -CAfile "$work/bundle.0.pem" "$work/svid.0.pem"

echo "==> and a JWT-SVID for audience 'quickstart'"
"$agent" api fetch jwt -socketPath "$wsock" -audience quickstart
echo "==> done; the SVID, key and bundle are in $work (svid.0.pem, svid.0.key, bundle.0.pem)"
