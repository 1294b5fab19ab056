#!/usr/bin/env bash
# Starts throw-away PostgreSQL and MariaDB servers for the spire-datastore tests.
#
# Usage:
#   scripts/test-databases.sh [DIR]        start (or reuse) both servers, data under DIR
#   scripts/test-databases.sh start [DIR]  same
#   scripts/test-databases.sh stop [DIR]   stop both servers (data is kept)
#   scripts/test-databases.sh env [DIR]    print the export lines of running servers
#   scripts/test-databases.sh pg-start DIR PostgreSQL only (for outage tests: started
#                                          again, it comes back on the port it had)
#   scripts/test-databases.sh pg-stop DIR  stop PostgreSQL only
#   scripts/test-databases.sh pg-ha-start DIR   a PostgreSQL primary (DIR/primary) and a
#                                          streaming standby (DIR/standby) for failover
#                                          tests; prints SPIRE_RS_TEST_PG_PRIMARY_PORT,
#                                          SPIRE_RS_TEST_PG_STANDBY_PORT and
#                                          SPIRE_RS_TEST_PG_HA_URL (both hosts,
#                                          target_session_attrs=read-write)
#   scripts/test-databases.sh pg-ha-stop-primary DIR  stop the primary (fast shutdown)
#   scripts/test-databases.sh pg-ha-promote DIR       promote the standby, wait until it
#                                          takes writes
#   scripts/test-databases.sh pg-ha-stop DIR    stop both
#
# DIR defaults to /tmp/spire-rs-dbs. Run as root on Debian: missing packages are
# installed with apt-get (mariadb-server; postgresql when no PostgreSQL binaries
# are found). Both servers listen on 127.0.0.1 on free ports only. The test user
# `spire` (password `spire`) may create databases: every test creates its own.
#
# On success the script prints, on stdout, lines meant for eval:
#   export SPIRE_RS_TEST_POSTGRES_URL=postgres://spire:spire@127.0.0.1:PORT/spire?sslmode=disable
#   export SPIRE_RS_TEST_MYSQL_URL='spire:spire@tcp(127.0.0.1:PORT)/spire?parseTime=true'
# e.g. `eval "$(scripts/test-databases.sh)"`. Progress goes to stderr.
# Running it again reuses running instances (idempotent).

set -euo pipefail

cmd="start"
case "${1:-}" in
start | stop | env | pg-start | pg-stop | pg-ha-start | pg-ha-stop-primary | pg-ha-promote | pg-ha-stop)
    cmd="$1"
    shift
    ;;
esac
DIR="${1:-/tmp/spire-rs-dbs}"

PG_DIR="$DIR/postgres"
MY_DIR="$DIR/mariadb"
PG_USER_OS="postgres"
MY_USER_OS="mysql"

log() { echo "test-databases: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

as_user() {
    # as_user USER CMD...: run a command as USER (no login shell needed).
    local user="$1"
    shift
    if [ "$(id -un)" = "$user" ]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u "$user" -- "$@"
    else
        su -s /bin/sh "$user" -c "$(printf '%q ' "$@")"
    fi
}

port_in_use() {
    # Succeeds when something listens on 127.0.0.1:$1.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
    # Picks a free TCP port, starting from a pseudo-random offset.
    local start=$((20000 + (RANDOM % 20000)))
    local p
    for ((p = start; p < start + 2000; p++)); do
        if ! port_in_use "$p"; then
            echo "$p"
            return 0
        fi
    done
    die "no free port found"
}

find_pg_bin() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        if [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

need_root_for_install() {
    [ "$(id -u)" = "0" ] || die "$1 is missing and installing it needs root"
}

ensure_packages() {
    local apt_updated=0
    if ! find_pg_bin >/dev/null; then
        need_root_for_install "PostgreSQL"
        log "installing postgresql"
        apt-get update -qq >&2 && apt_updated=1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    fi
    if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
        need_root_for_install "MariaDB"
        log "installing mariadb-server"
        [ "$apt_updated" = 1 ] || apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >&2
    fi
}

ensure_os_user() {
    local user="$1"
    if ! id "$user" >/dev/null 2>&1; then
        [ "$(id -u)" = "0" ] || die "OS user $user is missing"
        useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
    fi
}

# ---------------------------------------------------------------- PostgreSQL

pg_running() {
    local bin="$1"
    [ -f "$PG_DIR/data/PG_VERSION" ] && [ -f "$PG_DIR/port" ] &&
        as_user "$PG_USER_OS" "$bin/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1
}

pg_start() {
    local bin
    bin="$(find_pg_bin)" || die "PostgreSQL binaries not found"
    ensure_os_user "$PG_USER_OS"
    mkdir -p "$PG_DIR"
    chown "$PG_USER_OS" "$PG_DIR"
    if pg_running "$bin"; then
        log "PostgreSQL already running on port $(cat "$PG_DIR/port")"
        return 0
    fi
    if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
        log "initialising PostgreSQL cluster in $PG_DIR/data"
        as_user "$PG_USER_OS" "$bin/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 ||
            { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
    fi
    local port
    if [ -f "$PG_DIR/port" ] && ! port_in_use "$(cat "$PG_DIR/port")"; then
        port="$(cat "$PG_DIR/port")"
    else
        port="$(free_port)"
    fi
    echo "$port" >"$PG_DIR/port"
    mkdir -p "$PG_DIR/run"
    chown "$PG_USER_OS" "$PG_DIR/run"
    log "starting PostgreSQL on 127.0.0.1:$port"
    as_user "$PG_USER_OS" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_DIR/run -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >&2 || { tail -20 "$PG_DIR/postgres.log" >&2; die "PostgreSQL did not start"; }
    local psql=("$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 -qAt)
    if [ "$("${psql[@]}" -d postgres -c "SELECT 1 FROM pg_roles WHERE rolname='spire'")" != "1" ]; then
        "${psql[@]}" -d postgres -c "CREATE ROLE spire LOGIN SUPERUSER PASSWORD 'spire'" >&2
    fi
    if [ "$("${psql[@]}" -d postgres -c "SELECT 1 FROM pg_database WHERE datname='spire'")" != "1" ]; then
        "${psql[@]}" -d postgres -c "CREATE DATABASE spire OWNER spire" >&2
    fi
}

pg_stop() {
    local bin
    bin="$(find_pg_bin)" || return 0
    if pg_running "$bin"; then
        log "stopping PostgreSQL"
        as_user "$PG_USER_OS" "$bin/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >&2 || true
    fi
}

# ------------------------------------------------- PostgreSQL primary + standby

ha_psql() {
    # ha_psql PORT SQL: one statement as postgres, unaligned output.
    "$1"/psql -h 127.0.0.1 -p "$2" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt -c "$3"
}

ha_node_running() {
    # ha_node_running BIN NAME
    [ -f "$DIR/$2/PG_VERSION" ] && as_user "$PG_USER_OS" "$1/pg_ctl" -D "$DIR/$2" status >/dev/null 2>&1
}

ha_node_start() {
    # ha_node_start BIN NAME: starts DIR/NAME on the port in DIR/NAME.port.
    local bin="$1" name="$2"
    as_user "$PG_USER_OS" "$bin/pg_ctl" -D "$DIR/$name" -l "$DIR/$name.log" -w -t 60 start >&2 ||
        { tail -20 "$DIR/$name.log" >&2; die "PostgreSQL $name did not start"; }
}

ha_port() {
    # ha_port NAME: the port kept for DIR/NAME, or a free one (kept from now on).
    local f="$DIR/$1.port"
    if [ ! -f "$f" ]; then
        free_port >"$f"
    fi
    cat "$f"
}

pg_ha_start() {
    local bin p s i
    bin="$(find_pg_bin)" || die "PostgreSQL binaries not found"
    ensure_os_user "$PG_USER_OS"
    mkdir -p "$DIR"
    # The clusters run as postgres, which must reach DIR.
    chmod 755 "$DIR"
    p="$(ha_port primary)"
    if [ ! -f "$DIR/primary/PG_VERSION" ]; then
        log "initialising the primary in $DIR/primary"
        install -d -o "$PG_USER_OS" -m 700 "$DIR/primary"
        as_user "$PG_USER_OS" "$bin/initdb" -D "$DIR/primary" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
            >"$DIR/primary.initdb.log" 2>&1 || { cat "$DIR/primary.initdb.log" >&2; die "initdb failed"; }
        cat >>"$DIR/primary/postgresql.conf" <<CONF
port = $p
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
wal_level = replica
max_wal_senders = 5
hot_standby = on
max_connections = 200
CONF
        echo "host replication all 127.0.0.1/32 trust" >>"$DIR/primary/pg_hba.conf"
    fi
    touch "$DIR/primary.log" "$DIR/standby.log"
    chown "$PG_USER_OS" "$DIR" "$DIR/primary.log" "$DIR/standby.log"
    if ! ha_node_running "$bin" primary; then
        log "starting the primary on 127.0.0.1:$p"
        ha_node_start "$bin" primary
    fi
    if [ "$(ha_psql "$bin" "$p" "SELECT 1 FROM pg_roles WHERE rolname='spire'")" != "1" ]; then
        ha_psql "$bin" "$p" "CREATE ROLE spire LOGIN SUPERUSER PASSWORD 'spire'" >&2
    fi
    if [ "$(ha_psql "$bin" "$p" "SELECT 1 FROM pg_database WHERE datname='spire'")" != "1" ]; then
        ha_psql "$bin" "$p" "CREATE DATABASE spire OWNER spire" >&2
    fi
    s="$(ha_port standby)"
    if [ ! -f "$DIR/standby/PG_VERSION" ]; then
        # -c fast: a spread checkpoint would hold the copy up for a minute and more.
        log "copying the primary into the standby in $DIR/standby"
        install -d -o "$PG_USER_OS" -m 700 "$DIR/standby"
        as_user "$PG_USER_OS" "$bin/pg_basebackup" -h 127.0.0.1 -p "$p" -U postgres -D "$DIR/standby" -R -X stream -c fast >&2 ||
            die "pg_basebackup failed"
        echo "port = $s" >>"$DIR/standby/postgresql.conf"
    fi
    if ! ha_node_running "$bin" standby; then
        log "starting the standby on 127.0.0.1:$s"
        ha_node_start "$bin" standby
    fi
    # Ready once the standby is in recovery and has replayed the role and database.
    for ((i = 0; i < 120; i++)); do
        if [ "$(ha_psql "$bin" "$s" "SELECT pg_is_in_recovery()::text || (SELECT count(*) FROM pg_database WHERE datname='spire')" 2>/dev/null)" = "true1" ]; then
            break
        fi
        sleep 0.25
    done
    [ "$(ha_psql "$bin" "$s" "SELECT pg_is_in_recovery()::text" 2>/dev/null)" = "true" ] ||
        die "the standby is not replicating"
    echo "export SPIRE_RS_TEST_PG_PRIMARY_PORT=$p"
    echo "export SPIRE_RS_TEST_PG_STANDBY_PORT=$s"
    echo "export SPIRE_RS_TEST_PG_HA_URL='postgres://spire:spire@127.0.0.1:$p,127.0.0.1:$s/spire?sslmode=disable&target_session_attrs=read-write'"
}

pg_ha_stop_node() {
    # pg_ha_stop_node NAME
    local bin
    bin="$(find_pg_bin)" || return 0
    if ha_node_running "$bin" "$1"; then
        log "stopping PostgreSQL $1"
        as_user "$PG_USER_OS" "$bin/pg_ctl" -D "$DIR/$1" -m fast -w stop >&2 || true
    fi
}

pg_ha_promote() {
    local bin s i
    bin="$(find_pg_bin)" || die "PostgreSQL binaries not found"
    s="$(cat "$DIR/standby.port")"
    log "promoting the standby on 127.0.0.1:$s"
    as_user "$PG_USER_OS" "$bin/pg_ctl" -D "$DIR/standby" -w -t 60 promote >&2 || die "promotion failed"
    for ((i = 0; i < 240; i++)); do
        if [ "$(ha_psql "$bin" "$s" "SELECT pg_is_in_recovery()::text" 2>/dev/null)" = "false" ]; then
            return 0
        fi
        sleep 0.05
    done
    die "the standby is still in recovery"
}

# ---------------------------------------------------------------- MariaDB

mariadbd_bin() {
    if command -v mariadbd >/dev/null 2>&1; then
        command -v mariadbd
    else
        echo /usr/sbin/mariadbd
    fi
}

mysql_client() {
    if command -v mariadb >/dev/null 2>&1; then command -v mariadb; else command -v mysql; fi
}

my_running() {
    [ -f "$MY_DIR/mariadbd.pid" ] && [ -f "$MY_DIR/port" ] &&
        kill -0 "$(cat "$MY_DIR/mariadbd.pid")" 2>/dev/null
}

my_start() {
    ensure_os_user "$MY_USER_OS"
    mkdir -p "$MY_DIR"
    chown "$MY_USER_OS" "$MY_DIR"
    if my_running; then
        log "MariaDB already running on port $(cat "$MY_DIR/port")"
        return 0
    fi
    if [ ! -d "$MY_DIR/data/mysql" ]; then
        log "initialising MariaDB in $MY_DIR/data"
        local install
        install="$(command -v mariadb-install-db || command -v mysql_install_db)" || die "mariadb-install-db not found"
        "$install" --no-defaults --datadir="$MY_DIR/data" --user="$MY_USER_OS" --auth-root-authentication-method=normal \
            --skip-test-db >"$MY_DIR/install.log" 2>&1 || { cat "$MY_DIR/install.log" >&2; die "mariadb-install-db failed"; }
    fi
    local port
    port="$(free_port)"
    echo "$port" >"$MY_DIR/port"
    log "starting MariaDB on 127.0.0.1:$port"
    # setsid: the server must outlive this script and its caller's terminal.
    setsid "$(mariadbd_bin)" --no-defaults --user="$MY_USER_OS" --datadir="$MY_DIR/data" \
        --bind-address=127.0.0.1 --port="$port" --socket="$MY_DIR/mariadbd.sock" \
        --pid-file="$MY_DIR/mariadbd.pid" --log-error="$MY_DIR/mariadbd.err" \
        --max-connections=500 --innodb-flush-log-at-trx-commit=0 --skip-name-resolve \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
        </dev/null >/dev/null 2>&1 &
    local client i
    client="$(mysql_client)" || die "mariadb client not found"
    for ((i = 0; i < 120; i++)); do
        if "$client" --no-defaults --protocol=socket -S "$MY_DIR/mariadbd.sock" -uroot -e "SELECT 1" >/dev/null 2>&1; then
            break
        fi
        sleep 0.5
    done
    "$client" --no-defaults --protocol=socket -S "$MY_DIR/mariadbd.sock" -uroot -e "SELECT 1" >/dev/null 2>&1 ||
        { tail -20 "$MY_DIR/mariadbd.err" >&2; die "MariaDB did not start"; }
    "$client" --no-defaults --protocol=socket -S "$MY_DIR/mariadbd.sock" -uroot <<'SQL'
CREATE USER IF NOT EXISTS 'spire'@'%' IDENTIFIED BY 'spire';
CREATE USER IF NOT EXISTS 'spire'@'localhost' IDENTIFIED BY 'spire';
GRANT ALL PRIVILEGES ON *.* TO 'spire'@'%' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'spire'@'localhost' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS spire;
FLUSH PRIVILEGES;
SQL
}

my_stop() {
    if my_running; then
        log "stopping MariaDB"
        local pid
        pid="$(cat "$MY_DIR/mariadbd.pid")"
        kill "$pid" 2>/dev/null || true
        local i
        for ((i = 0; i < 120; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
    fi
}

print_env() {
    if [ -f "$PG_DIR/port" ]; then
        echo "export SPIRE_RS_TEST_POSTGRES_URL=postgres://spire:spire@127.0.0.1:$(cat "$PG_DIR/port")/spire?sslmode=disable"
    fi
    if [ -f "$MY_DIR/port" ]; then
        echo "export SPIRE_RS_TEST_MYSQL_URL='spire:spire@tcp(127.0.0.1:$(cat "$MY_DIR/port"))/spire?parseTime=true'"
    fi
}

case "$cmd" in
start)
    mkdir -p "$DIR"
    ensure_packages
    pg_start
    my_start
    print_env
    ;;
stop)
    pg_stop
    my_stop
    ;;
env)
    print_env
    ;;
pg-start)
    mkdir -p "$DIR"
    ensure_packages
    pg_start
    echo "export SPIRE_RS_TEST_POSTGRES_URL=postgres://spire:spire@127.0.0.1:$(cat "$PG_DIR/port")/spire?sslmode=disable"
    ;;
pg-stop)
    pg_stop
    ;;
pg-ha-start)
    ensure_packages
    pg_ha_start
    ;;
pg-ha-stop-primary)
    pg_ha_stop_node primary
    ;;
pg-ha-promote)
    pg_ha_promote
    ;;
pg-ha-stop)
    pg_ha_stop_node standby
    pg_ha_stop_node primary
    ;;
esac
