#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for tests: etcd and kube-apiserver (and, with
# `start-node`, containerd and a kubelet), with their own PKI, under one directory.
#
#   conformance/k8s/cluster.sh start DIR        # etcd + kube-apiserver; writes DIR/cluster.env
#   conformance/k8s/cluster.sh start-node DIR   # then containerd + a real kubelet, so pods run
#   conformance/k8s/cluster.sh stop DIR         # stops what DIR's cluster started, by PID
#
# DIR/cluster.env gives K8S_SERVER (https URL), KUBECONFIG (an admin kubeconfig, O=system:masters),
# K8S_CA (the cluster CA, PEM) and the PIDs; start-node adds K8S_KUBELET_PORT (the kubelet's TLS
# port on 127.0.0.1, serving cert signed by K8S_CA) and K8S_CONTAINERD_SOCK. Binaries come from
# conformance/k8s/build.sh (cached per machine); etcd from Debian's etcd-server package; containerd,
# ctr, runc and a static busybox (for the locally built images, see images.py) from Debian's
# containerd, runc and busybox-static packages.
#
# The node: there is no scheduler, controller-manager or CNI, so pods must set spec.nodeName
# ($K8S_NODE_NAME), hostNetwork: true, imagePullPolicy: Never and image docker.io/local/app:1
# (or docker.io/local/pause:1); create the namespace's `default` ServiceAccount by hand and set
# automountServiceAccountToken: false (kube-root-ca.crt is never published). The Node stays
# NotReady (no CNI) and has no addresses (the kubelet refuses a loopback node IP), so
# pod.status.hostIP/podIP stay empty; the kubelet runs the pods anyway. `kubectl logs/exec`
# do not work: use `ctr -a $K8S_CONTAINERD_SOCK -n k8s.io tasks exec` and DIR/pod-logs.
#
# start-node env: K8S_KUBELET_PORT (default 10250 if free, else a free port),
# SPIRE_RS_K8S_IMAGE_CACHE (default ~/.cache/spire-rs/k8s/images), and the lock settings below.
#
# One kubelet per machine: pod cgroups (/sys/fs/cgroup/*/kubepods) and the kubelet's fixed
# /var/lib/kubelet/device-plugins and /var/log/containers are machine-wide, so
# start-node takes an exclusive flock on $SPIRE_RS_KUBELET_LOCK (default
# /tmp/spire-rs-kubelet.lock; it names the holder's DIR), waiting up to
# $SPIRE_RS_KUBELET_LOCK_WAIT seconds (default 600) for another node to stop. A `sleep` process
# (argv[0] "spire-rs-kubelet-lock:DIR", LOCK_PID in DIR/pids) holds the lock until `stop DIR`
# has cleaned the cgroups up. A holder whose owner never ran stop blocks every later node: run
# `cluster.sh stop <the DIR named in the lock file>`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cmd="${1:-}"; dir="${2:-}"
[[ -n "$cmd" && -n "$dir" ]] || { echo "usage: $0 start|start-node|stop DIR" >&2; exit 2; }
lock="${SPIRE_RS_KUBELET_LOCK:-/tmp/spire-rs-kubelet.lock}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

die_log() { # log message: the message and the tail of the failing component's log, then exit
    echo "$2" >&2
    [[ -f "$1" ]] && { echo "--- last lines of $1:" >&2; tail -n 30 "$1" >&2; }
    exit 1
}

running() { # pid: whether it exists and is not a zombie
    local st
    st="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    st="${st##*) }"; [[ "${st:0:1}" != Z ]]
}

wait_up() { # what, seconds, pid, log, command...: retries the command (bounded) until it succeeds;
    # gives up at once, with the tail of the log, if the component's pid has died
    local what="$1" secs="$2" pid="$3" log="$4"; shift 4
    local end=$(( $(date +%s) + secs ))
    until "$@" >/dev/null 2>&1; do
        running "$pid" || die_log "$log" "$what exited during startup${dir:+ (run: $0 stop $dir)}"
        (( $(date +%s) <= end )) || die_log "$log" "$what not ready after ${secs}s${dir:+ (run: $0 stop $dir)}"
        sleep 0.2
    done
}

port_free() { python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1])))' "$1" 2>/dev/null; }

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
    ETCD_PORT=$(free_port); ETCD_PEER=$(free_port)
    pki
    etcd --name test --data-dir "$dir/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
        --initial-cluster "test=http://127.0.0.1:$ETCD_PEER" > "$dir/etcd.log" 2>&1 &
    ETCD_PID=$!
    echo "ETCD_PID=$ETCD_PID" > "$dir/pids"
    wait_up etcd 30 "$ETCD_PID" "$dir/etcd.log" curl -sf "http://127.0.0.1:$ETCD_PORT/health"
    # The port is picked just before the apiserver binds it; if another process took it in
    # between (a free port is only free until someone binds it), start again on another.
    local try end
    for try in 1 2 3 4 5; do
        API_PORT=$(free_port)
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
        end=$(( $(date +%s) + 90 ))
        until curl -sf --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key" \
                "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1; do
            if ! running "$API_PID"; then
                if grep -q "address already in use" "$dir/apiserver.log"; then
                    echo "start: port $API_PORT was taken before kube-apiserver bound it; try $try of 5" >&2
                    continue 2
                fi
                die_log "$dir/apiserver.log" "kube-apiserver exited during startup (run: $0 stop $dir)"
            fi
            (( $(date +%s) <= end )) || { echo "API_PID=$API_PID" >> "$dir/pids"; die_log "$dir/apiserver.log" "kube-apiserver not ready after 90s (run: $0 stop $dir)"; }
            sleep 0.2
        done
        break
    done
    running "$API_PID" || die_log "$dir/apiserver.log" "kube-apiserver: every port tried was taken (run: $0 stop $dir)"
    echo "API_PID=$API_PID" >> "$dir/pids"
    kubeconfig "$dir/admin.kubeconfig" admin
    kubeconfig "$dir/node.kubeconfig" node
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

start_node() {
    [[ -f "$dir/cluster.env" && -f "$dir/pids" ]] || { echo "start-node: run '$0 start $dir' first" >&2; exit 1; }
    dir="$(cd "$dir" && pwd)"
    # shellcheck disable=SC1091
    source "$dir/cluster.env"
    if grep -qE '^(LOCK|CONTAINERD|KUBELET)_PID=' "$dir/pids"; then echo "start-node: $dir already has a node (run '$0 stop $dir' first)" >&2; exit 1; fi
    export PATH="$PATH:/usr/sbin:/sbin"  # runc lives in /usr/sbin; containerd's shims look it up
    for b in containerd ctr runc containerd-shim-runc-v2 flock python3 curl; do
        command -v "$b" >/dev/null ||
            { echo "start-node: $b is required (Debian: containerd, runc, util-linux, python3)" >&2; exit 1; }
    done
    local kubectl=("$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG") t0

    # Images first (no lock needed): an OCI archive built from busybox-static, cached per content.
    local images
    images="$(python3 "$here/images.py" "${SPIRE_RS_K8S_IMAGE_CACHE:-$HOME/.cache/spire-rs/k8s/images}")"

    # The machine-wide kubelet lock (see the header): taken on fd 9, handed to a holder process
    # that inherits fd 9, then closed here so that containerd, its shims and the kubelet do not
    # inherit it: the holder alone decides when the lock goes.
    local waitsecs="${SPIRE_RS_KUBELET_LOCK_WAIT:-600}"
    exec 9>>"$lock"
    if ! flock -n 9; then
        echo "start-node: another kubelet node holds $lock ($(cat "$lock" 2>/dev/null)); waiting up to ${waitsecs}s" >&2
        flock -w "$waitsecs" 9 || { exec 9>&-; echo "start-node: $lock still held after ${waitsecs}s by: $(cat "$lock" 2>/dev/null) (if that node is gone, run: $0 stop <its DIR>)" >&2; exit 1; }
    fi
    echo "$dir" > "$lock"
    ( exec -a "spire-rs-kubelet-lock:$dir" sleep infinity ) </dev/null >/dev/null 2>&1 &
    echo "LOCK_PID=$!" >> "$dir/pids"
    exec 9>&-
    t0=$SECONDS
    # A previous holder that died without `stop` may have left empty pod cgroups: drop them.
    clean_cgroups

    # containerd, confined to DIR: own root/state/socket (the shims' sockets still go to
    # /run/containerd/s/<hash of our socket path>, hard-coded in containerd 1.6). CAP_SYS_RESOURCE
    # is missing on some VMs, hence restrict_oom_score_adj; cgroupfs to match the kubelet; CNI
    # points at empty dirs (pods use hostNetwork) so the host's /etc/cni is never read.
    local cd="$dir/containerd" sock="$dir/containerd.sock"
    mkdir -p "$cd/root" "$cd/state" "$cd/opt" "$dir/cni/net.d" "$dir/cni/bin" "$dir/pod-logs"
    cat > "$dir/containerd.toml" <<TOML
version = 2
root = "$cd/root"
state = "$cd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "$cd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/local/pause:1"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$dir/cni/bin"
    conf_dir = "$dir/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$cd/runc"
TOML
    containerd --config "$dir/containerd.toml" > "$dir/containerd.log" 2>&1 &
    local cpid=$!
    echo "CONTAINERD_PID=$cpid" >> "$dir/pids"
    wait_up containerd 30 "$cpid" "$dir/containerd.log" ctr -a "$sock" version
    ctr -a "$sock" -n k8s.io images import --snapshotter overlayfs "$images" > "$dir/images-import.log" 2>&1 ||
        die_log "$dir/images-import.log" "start-node: ctr images import $images failed (run: $0 stop $dir)"

    # RBAC before the kubelet: it checks every request with TokenReview/SubjectAccessReview as
    # system:node:$K8S_NODE_NAME, which needs system:auth-delegator (system:node is unbound).
    # kubelet-pods-reader is what a client (e.g. the SPIRE agent's k8s attestor) needs for
    # /pods: nodes/pods with fine-grained kubelet authz, nodes/proxy as the fallback.
    "${kubectl[@]}" apply -f - > "$dir/rbac.log" 2>&1 <<'YAML' || die_log "$dir/rbac.log" "start-node: creating RBAC failed"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: spire-rs-nodes-auth-delegator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:auth-delegator"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:nodes"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: kubelet-pods-reader}
rules: [{apiGroups: [""], resources: [nodes/proxy, nodes/pods], verbs: [get, list]}]
YAML

    # The kubelet: TLS on 127.0.0.1 with the cert pki() made for the node, client certs from the
    # cluster CA or bearer tokens (TokenReview), every request authorized by SubjectAccessReview.
    # Caches are short so RBAC changes and token invalidation show at once. Eviction and image
    # GC are effectively off (a shared disk must not evict test pods); pod logs stay in DIR.
    local port="${K8S_KUBELET_PORT:-}" hport
    if [[ -z "$port" ]]; then port=10250; port_free "$port" || port=$(free_port); fi
    hport=$(free_port)
    cat > "$dir/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $hport
tlsCertFile: $dir/pki/kubelet.crt
tlsPrivateKeyFile: $dir/pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true, cacheTTL: 1s}
  x509: {clientCAFile: $dir/pki/ca.crt}
authorization:
  mode: Webhook
  webhook: {cacheAuthorizedTTL: 1s, cacheUnauthorizedTTL: 1s}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$sock
podLogsDir: $dir/pod-logs
staticPodPath: ""
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
YAML
    "$K8S_BIN/kubelet" --config="$dir/kubelet.yaml" --kubeconfig="$dir/node.kubeconfig" \
        --root-dir="$dir/kubelet" --cert-dir="$dir/kubelet-pki" --volume-plugin-dir="$dir/volume-plugins" \
        --hostname-override="$K8S_NODE_NAME" --node-ip=127.0.0.1 --v=2 > "$dir/kubelet.log" 2>&1 &
    local kpid=$!
    echo "KUBELET_PID=$kpid" >> "$dir/pids"
    cat >> "$dir/cluster.env" <<ENV
K8S_KUBELET_PORT=$port
K8S_CONTAINERD_SOCK=$sock
CONTAINERD_PID=$cpid
KUBELET_PID=$kpid
ENV
    # Ready = the Node object exists and an authenticated request through the kubelet's
    # webhook authn/authz (admin cert -> SubjectAccessReview to the apiserver) answers /pods.
    wait_up "kubelet (node $K8S_NODE_NAME registration)" 60 "$kpid" "$dir/kubelet.log" \
        "${kubectl[@]}" get node "$K8S_NODE_NAME"
    wait_up "kubelet (https://127.0.0.1:$port/pods)" 30 "$kpid" "$dir/kubelet.log" \
        curl -sf --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key" \
        "https://127.0.0.1:$port/pods"
    echo "start-node: node $K8S_NODE_NAME up in $((SECONDS - t0))s (kubelet https://127.0.0.1:$port)." \
        "Let a service account read /pods with:" \
        "kubectl create clusterrolebinding NAME --clusterrole=kubelet-pods-reader --serviceaccount=NS:SA" >&2
    echo "$dir/cluster.env"
}

alive() { # pid comm: whether pid runs (not a zombie) and is still the program we started (the
    # comm check guards against PID reuse)
    [[ -n "$1" && "$(cat "/proc/$1/comm" 2>/dev/null)" == "$2" ]] && running "$1"
}

kill_ours() { # seconds pid:comm...: TERM them all, wait (bounded), then KILL the rest; a pid is
    # only signalled while alive() holds for it
    local secs="$1" pc left i; shift
    for pc in "$@"; do alive "${pc%%:*}" "${pc#*:}" && { kill "${pc%%:*}" 2>/dev/null || true; }; done
    for i in $(seq $((secs * 10 + 50))); do
        left=0
        for pc in "$@"; do
            alive "${pc%%:*}" "${pc#*:}" || continue
            left=1
            (( i == secs * 10 )) && { kill -9 "${pc%%:*}" 2>/dev/null || true; }
        done
        (( left )) || return 0
        sleep 0.1
    done
    return 0
}

cgroup_roots() { # every kubepods tree the kubelet (cgroupfs driver) can make, v1 hierarchies and v2
    local d
    for d in /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods; do [[ -d "$d" ]] && echo "$d"; done
    return 0
}

clean_cgroups() { # [kill]: rmdir the kubepods trees, deepest first; with "kill", first SIGKILL any
    # process still in them (only done while this DIR holds the machine's kubelet lock, so every
    # pod cgroup on the machine is this node's)
    local root p
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        local left=0
        while read -r root; do
            if [[ "${1:-}" == kill ]]; then
                while read -r p; do [[ -n "$p" ]] && { kill -9 "$p" 2>/dev/null || true; }; done \
                    < <(find "$root" -name cgroup.procs -exec cat {} + 2>/dev/null)
            fi
            find "$root" -depth -type d -exec rmdir {} \; 2>/dev/null || true
            [[ -d "$root" ]] && left=1
        done < <(cgroup_roots)
        (( left )) || return 0
        sleep 0.3
    done
    echo "stop: could not remove: $(cgroup_roots | tr '\n' ' ')" >&2
}

unmount_under() { # path: unmount every mount point at or below path, deepest first (lazily if busy)
    local real m
    real="$(realpath "$1")"
    for _ in 1 2 3 4 5; do
        local mounts
        mounts="$(awk -v d="$real" '$5 == d || index($5, d "/") == 1 { print length($5) " " $5 }' /proc/self/mountinfo \
            | sort -rn | cut -d' ' -f2- | sed 's/\\040/ /g')"
        [[ -n "$mounts" ]] || return 0
        while IFS= read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done <<< "$mounts"
    done
    echo "stop: mounts left under $real" >&2
}

stop_node() { # pods, kubelet, containers, containerd, shims, cgroups, mounts, then the lock
    local sock="${K8S_CONTAINERD_SOCK:-$dir/containerd.sock}" t
    local ctr=(timeout 20 ctr -a "$sock" -n k8s.io)
    # Delete every pod while the apiserver is up and give the kubelet a bounded chance to stop
    # its containers and unmount its volumes the ordinary way.
    if alive "${KUBELET_PID:-}" kubelet && [[ -n "${K8S_BIN:-}" ]] &&
        curl -sf -m 2 --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key" \
            "${K8S_SERVER:-none}/readyz" >/dev/null 2>&1; then
        timeout 20 "$K8S_BIN/kubectl" --kubeconfig "$dir/admin.kubeconfig" delete pods --all --all-namespaces \
            --force --grace-period=0 --wait=false >/dev/null 2>&1 || true
        if alive "${CONTAINERD_PID:-}" containerd; then
            for _ in $(seq 75); do
                [[ -z "$("${ctr[@]}" tasks ls -q 2>/dev/null)" ]] && break
                sleep 0.2
            done
        fi
    fi
    kill_ours 10 "${KUBELET_PID:-}:kubelet"
    # Whatever is left: kill and delete the tasks (their shims then unmount the rootfs and exit).
    if alive "${CONTAINERD_PID:-}" containerd; then
        for t in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
            "${ctr[@]}" tasks kill -a -s SIGKILL "$t" >/dev/null 2>&1 || true
        done
        for t in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
            "${ctr[@]}" tasks rm -f "$t" >/dev/null 2>&1 || true
        done
        for t in $("${ctr[@]}" containers ls -q 2>/dev/null); do
            "${ctr[@]}" containers rm "$t" >/dev/null 2>&1 || true
        done
    fi
    kill_ours 10 "${CONTAINERD_PID:-}:containerd"
    # Shims outlive containerd (they are reparented); ours name our socket on their command line.
    # A killed shim leaves its socket, /run/containerd/s/<sha256 of "$sock/<ns>/<id>">, behind.
    local p args ns id
    for p in $(pgrep -f -- "containerd-shim.* -address $sock( |\$)" 2>/dev/null); do
        args="$(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null)" || continue
        ns="$(sed -nE 's/.* -namespace ([^ ]+).*/\1/p' <<< "$args")"; id="$(sed -nE 's/.* -id ([^ ]+).*/\1/p' <<< "$args")"
        kill -9 "$p" 2>/dev/null || true
        [[ -n "$ns" && -n "$id" ]] &&
            rm -f "/run/containerd/s/$(printf '%s' "$sock/$ns/$id" | sha256sum | cut -d' ' -f1)"
    done
    if [[ -n "${LOCK_PID:-}" ]]; then clean_cgroups kill; fi
    unmount_under "$dir"
    # The kubelet links container logs from the fixed /var/log/containers; drop links into DIR.
    if [[ -d /var/log/containers ]]; then
        find /var/log/containers -maxdepth 1 -type l -lname "$dir/*" -delete 2>/dev/null || true
    fi
    # Fixed host paths the kubelet and the shims use whatever their configuration says: drop the
    # kubelet's device-plugin socket (ours while we hold the lock) and then only empty dirs.
    if [[ -n "${LOCK_PID:-}" ]]; then rm -f /var/lib/kubelet/device-plugins/kubelet.sock; fi
    rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet /var/log/containers /run/containerd/s /run/containerd/fifo \
        /run/containerd 2>/dev/null || true
    if alive "${LOCK_PID:-}" sleep; then
        [[ "$(cat "$lock" 2>/dev/null)" == "$dir" ]] && : > "$lock"
        kill_ours 1 "$LOCK_PID:sleep"
    fi
}

stop() {
    [[ -d "$dir" && -f "$dir/pids" ]] || exit 0
    dir="$(cd "$dir" && pwd)"
    # shellcheck disable=SC1091
    [[ -f "$dir/cluster.env" ]] && source "$dir/cluster.env"
    # shellcheck disable=SC1091
    source "$dir/pids"
    if [[ -n "${KUBELET_PID:-}${CONTAINERD_PID:-}${LOCK_PID:-}" ]]; then stop_node; fi
    kill_ours 5 "${API_PID:-}:kube-apiserver" "${ETCD_PID:-}:etcd"
    rm -f "$dir/pids"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    start-node) start_node ;;
    *) echo "usage: $0 start|start-node|stop DIR" >&2; exit 2 ;;
esac
