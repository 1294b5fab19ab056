#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for tests: etcd and kube-apiserver (and, with
# `start-node`, containerd and a kubelet), with their own PKI, under one directory.
#
#   conformance/k8s/cluster.sh start DIR        # etcd + kube-apiserver; writes DIR/cluster.env
#   conformance/k8s/cluster.sh stop DIR         # stops what DIR's cluster started, by PID
#
# DIR/cluster.env gives K8S_SERVER (https URL), KUBECONFIG (an admin kubeconfig, O=system:masters),
# K8S_CA (the cluster CA, PEM) and the PIDs. Binaries come from conformance/k8s/build.sh
# (cached per machine); etcd from Debian's etcd-server package.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cmd="${1:-}"; dir="${2:-}"
[[ -n "$cmd" && -n "$dir" ]] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_for() { # what, seconds, command...
    local what="$1" secs="$2"; shift 2
    local end=$(( $(date +%s) + secs ))
    until "$@" >/dev/null 2>&1; do
        if (( $(date +%s) > end )); then echo "$what not ready after ${secs}s" >&2; return 1; fi
        sleep 0.2
    done
}

pki() { # makes the CA, the apiserver's serving cert, an admin client cert, the SA signing key
    local p="$dir/pki"; mkdir -p "$p"; chmod 700 "$p"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=spire-rs-test-k8s-ca" \
        -keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null
    leaf() { # name subj sans(ext or empty) usage
        openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$p/$1.key" -out "$p/$1.csr" 2>/dev/null
        { echo "basicConstraints=CA:FALSE"; echo "keyUsage=digitalSignature,keyEncipherment"; echo "extendedKeyUsage=$4";
          [[ -n "$3" ]] && echo "subjectAltName=$3"; } > "$p/$1.ext"
        openssl x509 -req -in "$p/$1.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial -days 2 \
            -extfile "$p/$1.ext" -out "$p/$1.crt" 2>/dev/null
    }
    leaf apiserver "/CN=kube-apiserver" "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" serverAuth
    leaf admin "/O=system:masters/CN=admin" "" clientAuth
    leaf node "/O=system:nodes/CN=system:node:$NODE_NAME" "" clientAuth
    leaf kubelet "/CN=$NODE_NAME" "IP:127.0.0.1,DNS:localhost,DNS:$NODE_NAME" serverAuth
    openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
    openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
}

kubeconfig() { # file user
    cat > "$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $dir/pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $dir/pki/$2.crt
    client-key: $dir/pki/$2.key
contexts:
- name: test
  context:
    cluster: test
    user: $2
current-context: test
KC
}

start() {
    mkdir -p "$dir"; dir="$(cd "$dir" && pwd)"
    bin="${SPIRE_RS_K8S_BIN_DIR:-$("$here/build.sh")}"
    command -v etcd >/dev/null || { echo "etcd is required (Debian: etcd-server)" >&2; exit 1; }
    NODE_NAME="${K8S_NODE_NAME:-node-1}"
    ETCD_PORT=$(free_port); ETCD_PEER=$(free_port); API_PORT=$(free_port)
    pki
    etcd --name test --data-dir "$dir/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
        --initial-cluster "test=http://127.0.0.1:$ETCD_PEER" > "$dir/etcd.log" 2>&1 &
    ETCD_PID=$!
    echo "ETCD_PID=$ETCD_PID" > "$dir/pids"
    wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"
    "$bin/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
        --bind-address=127.0.0.1 --secure-port="$API_PORT" --advertise-address=127.0.0.1 \
        --cert-dir="$dir/apiserver-certs" \
        --tls-cert-file="$dir/pki/apiserver.crt" --tls-private-key-file="$dir/pki/apiserver.key" \
        --client-ca-file="$dir/pki/ca.crt" \
        --service-account-key-file="$dir/pki/sa.pub" --service-account-signing-key-file="$dir/pki/sa.key" \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --authorization-mode=Node,RBAC --service-cluster-ip-range=10.96.0.0/16 \
        --endpoint-reconciler-type=none --enable-priority-and-fairness=false \
        --kubelet-client-certificate="$dir/pki/admin.crt" --kubelet-client-key="$dir/pki/admin.key" \
        > "$dir/apiserver.log" 2>&1 &
    API_PID=$!
    echo "API_PID=$API_PID" >> "$dir/pids"
    kubeconfig "$dir/admin.kubeconfig" admin
    kubeconfig "$dir/node.kubeconfig" node
    wait_for kube-apiserver 90 curl -sf --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key" \
        "https://127.0.0.1:$API_PORT/readyz"
    cat > "$dir/cluster.env" <<ENV
K8S_SERVER=https://127.0.0.1:$API_PORT
KUBECONFIG=$dir/admin.kubeconfig
K8S_CA=$dir/pki/ca.crt
K8S_NODE_NAME=$NODE_NAME
K8S_BIN=$bin
ETCD_PID=$ETCD_PID
API_PID=$API_PID
ENV
    echo "$dir/cluster.env"
}

stop() {
    [[ -f "$dir/pids" ]] || exit 0
    # shellcheck disable=SC1091
    source "$dir/pids"
    for pid in ${API_PID:-} ${ETCD_PID:-}; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in ${API_PID:-} ${ETCD_PID:-}; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -f "$dir/pids"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
