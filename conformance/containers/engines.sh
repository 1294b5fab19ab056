#!/usr/bin/env bash
# Real container engines on private roots and sockets for the docker and systemd workload
# attestors' tests: Debian's dockerd (docker.io), rootful podman serving its Docker-compatible
# API, and systemd 252 as PID 1 in a docker container.
#
#   conformance/containers/engines.sh docker-start DIR   # dockerd on DIR/docker.sock, image local/busybox:1
#   conformance/containers/engines.sh podman-start DIR   # podman's API on DIR/podman.sock, image localhost/busybox:1
#   conformance/containers/engines.sh systemd-image DIR  # (after docker-start) image local/debian-systemd:12
#   conformance/containers/engines.sh stop DIR           # removes DIR's containers, stops its daemons by PID
#
# DIR/engine.env (shell syntax; values with spaces single-quoted) gives DOCKER_HOST (unix://...; for podman too, whose CLI is then
# "podman $PODMAN_FLAGS"), ENGINE (docker|podman) and the daemon's PID. Every container
# must run with --network none or host (dockerd runs without a bridge or iptables), and
# without --privileged (the VM's capability bounding set lacks CAP_SYS_RESOURCE; podman needs
# the --ulimit flags in PODMAN_RUN_FLAGS for the same reason).
#
# The images: local/busybox:1 is a static busybox (Debian busybox-static) with ENV PATH=/bin and
# LABEL org.example.app=demo, imported with `docker import` (no registry here). The systemd
# image is a debootstrap'd Debian bookworm (minbase + systemd, dbus) kept once per machine as
# a tar under $SPIRE_RS_CONTAINER_CACHE (default ~/.cache/spire-rs/containers).
set -euo pipefail
cmd="${1:-}"; dir="${2:-}"
[[ -n "$cmd" && -n "$dir" ]] || { echo "usage: $0 docker-start|podman-start|systemd-image|stop DIR" >&2; exit 2; }
[[ "$dir" != *[[:space:]\']* ]] || { echo "$0: DIR must not contain spaces or quotes: $dir" >&2; exit 2; }
cache="${SPIRE_RS_CONTAINER_CACHE:-$HOME/.cache/spire-rs/containers}"
PODMAN_RUN_FLAGS="--ulimit nofile=1024:1024 --ulimit nproc=1024:1024"

running() { local st; st="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1; st="${st##*) }"; [[ "${st:0:1}" != Z ]]; }

die_log() { echo "$2" >&2; [[ -f "$1" ]] && { echo "--- last lines of $1:" >&2; tail -n 30 "$1" >&2; }; exit 1; }

wait_up() { # what secs pid log command...
    local what="$1" secs="$2" pid="$3" log="$4"; shift 4
    local end=$(( $(date +%s) + secs ))
    until "$@" >/dev/null 2>&1; do
        running "$pid" || die_log "$log" "$what exited during startup (run: $0 stop $dir)"
        (( $(date +%s) <= end )) || die_log "$log" "$what not ready after ${secs}s (run: $0 stop $dir)"
        sleep 0.2
    done
}

busybox_rootfs() { # out-dir: a static busybox with its applets as symlinks
    local bb=/bin/busybox
    [[ -x $bb ]] && "$bb" --list >/dev/null 2>&1 || { echo "busybox-static is required (Debian: busybox-static)" >&2; exit 1; }
    mkdir -p "$1/bin" "$1/tmp" "$1/etc"
    cp "$bb" "$1/bin/busybox"
    for a in $("$bb" --list); do [[ "$a" == busybox ]] || ln -sf busybox "$1/bin/$a"; done
    echo "root:x:0:0:root:/:/bin/sh" > "$1/etc/passwd"
    echo "root:x:0:" > "$1/etc/group"
}

docker_cli() { DOCKER_HOST="unix://$dir/docker.sock" docker "$@"; }

case "$cmd" in
docker-start)
    for b in dockerd docker containerd runc; do
        command -v "$b" >/dev/null || { echo "docker-start: $b is required (Debian: docker.io)" >&2; exit 1; }
    done
    mkdir -p "$dir"
    [[ ! -f "$dir/engine.env" ]] || { echo "docker-start: $dir already has an engine (run '$0 stop $dir' first)" >&2; exit 1; }
    log="$dir/dockerd.log"
    # Its own data, exec root (the managed containerd's sockets live there), socket and pidfile.
    setsid dockerd --host "unix://$dir/docker.sock" --data-root "$dir/root" --exec-root "$dir/exec" \
        --pidfile "$dir/docker.pid" --iptables=false --ip6tables=false --bridge=none \
        --log-level warn >"$log" 2>&1 </dev/null &
    pid=$!
    { echo "ENGINE=docker"; echo "DOCKER_HOST=unix://$dir/docker.sock"; echo "ENGINE_PID=$pid"; } > "$dir/engine.env"
    wait_up dockerd 60 "$pid" "$log" docker_cli version
    rootfs="$(mktemp -d "$dir/rootfs.XXXXXX")"
    busybox_rootfs "$rootfs"
    tar -C "$rootfs" -c . | docker_cli import -c 'ENV PATH=/bin' -c 'LABEL org.example.app=demo' - local/busybox:1 >/dev/null
    rm -rf "$rootfs"
    ;;
podman-start)
    for b in podman curl; do
        command -v "$b" >/dev/null || { echo "podman-start: $b is required (Debian: podman, curl)" >&2; exit 1; }
    done
    mkdir -p "$dir"
    [[ ! -f "$dir/engine.env" ]] || { echo "podman-start: $dir already has an engine (run '$0 stop $dir' first)" >&2; exit 1; }
    flags="--root $dir/root --runroot $dir/run --cgroup-manager=cgroupfs --events-backend=file --tmpdir $dir/tmp"
    mkdir -p "$dir/tmp"
    log="$dir/podman.log"
    # shellcheck disable=SC2086
    setsid podman $flags system service --time=0 "unix://$dir/podman.sock" >"$log" 2>&1 </dev/null &
    pid=$!
    { echo "ENGINE=podman"; echo "DOCKER_HOST=unix://$dir/podman.sock"; echo "ENGINE_PID=$pid";
      echo "PODMAN_FLAGS='$flags'"; echo "PODMAN_RUN_FLAGS='$PODMAN_RUN_FLAGS'"; } > "$dir/engine.env"
    wait_up "podman system service" 60 "$pid" "$log" curl -sf --unix-socket "$dir/podman.sock" http://d/_ping
    rootfs="$(mktemp -d "$dir/rootfs.XXXXXX")"
    busybox_rootfs "$rootfs"
    # shellcheck disable=SC2086
    tar -C "$rootfs" -c . | podman $flags import -c 'ENV PATH=/bin' -c 'LABEL org.example.app=demo' - localhost/busybox:1 >/dev/null
    rm -rf "$rootfs"
    ;;
systemd-image)
    [[ -f "$dir/engine.env" ]] || { echo "systemd-image: run '$0 docker-start $dir' first" >&2; exit 1; }
    tarball="$cache/debian-systemd-bookworm.tar"
    if [[ ! -s "$tarball" ]]; then
        command -v debootstrap >/dev/null || { echo "systemd-image: debootstrap is required (Debian: debootstrap)" >&2; exit 1; }
        mirror="$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
        mirror="${mirror:-$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)}"
        mirror="${mirror:-http://deb.debian.org/debian}"
        mkdir -p "$cache"
        work="$(mktemp -d "$cache/rootfs.XXXXXX")"
        echo "systemd-image: debootstrap bookworm from $mirror into $work (once per machine)" >&2
        debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm "$work" "$mirror" >"$cache/debootstrap.log" 2>&1 \
            || { rm -rf "$work"; die_log "$cache/debootstrap.log" "systemd-image: debootstrap failed"; }
        tar -C "$work" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf "$work"
    fi
    docker_cli import - local/debian-systemd:12 < "$tarball" >/dev/null
    ;;
stop)
    [[ -f "$dir/engine.env" ]] || exit 0
    # shellcheck disable=SC1091
    . "$dir/engine.env"
    if [[ "$ENGINE" == docker ]]; then
        ids="$(docker_cli ps -aq 2>/dev/null || true)"
        # shellcheck disable=SC2086
        [[ -z "$ids" ]] || docker_cli rm -f $ids >/dev/null 2>&1 || true
    else
        # shellcheck disable=SC2086
        podman $PODMAN_FLAGS rm -af -t 0 >/dev/null 2>&1 || true
    fi
    # The daemon leads its own process group (setsid): TERM it, give it dockerd's own
    # shutdown time, then KILL whatever of the group is left (its containerd, shims).
    kill -TERM "$ENGINE_PID" 2>/dev/null || true
    for _ in $(seq 1 300); do running "$ENGINE_PID" || break; sleep 0.1; done
    kill -KILL -- "-$ENGINE_PID" 2>/dev/null || true
    # podman's conmon processes and the `container cleanup` runs they start name DIR in
    # their arguments and outlive the service (and mount the storage again): end them.
    for _ in 1 2 3; do
        pkill -KILL -f -- "$dir/" 2>/dev/null || true
        sleep 0.2
    done
    # Whatever the daemon left mounted under DIR (overlay layers, shm, netns).
    { grep -F " $dir/" /proc/self/mounts || true; } | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -f "$dir/engine.env"
    ;;
*) echo "usage: $0 docker-start|podman-start|systemd-image|stop DIR" >&2; exit 2 ;;
esac
