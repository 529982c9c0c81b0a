# Shared by scripts/serve, scripts/test and scripts/bench. Source it; do not run it.
# Installs what is missing, and starts/stops a throwaway PostgreSQL cluster on loopback.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# A PostgreSQL server started from here must not inherit the caller's descriptors (a test
# harness's pipes): it would hold them open for its whole life, and whoever waits for EOF on
# them (or for this script to finish) would wait forever.
close_inherited_fds() {
    local fd
    for fd in $(ls /proc/$$/fd 2>/dev/null); do
        [ "$fd" -gt 2 ] 2>/dev/null && [ "$fd" != 255 ] && eval "exec $fd>&-" 2>/dev/null || true
    done
}
close_inherited_fds

log() { printf '%s %s\n' "[$(date +%H:%M:%S)]" "$*" >&2; }
die() { log "error: $*"; exit 1; }

apt_updated=0
# apt_update_once: refreshes Debian's package lists, once per script (root or sudo needed).
apt_update_once() {
    [ "$apt_updated" = 0 ] || return 0
    apt_updated=1
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq >/dev/null || true
    return 0
}

apt_install() {
    # apt_install PACKAGE...: installs Debian packages when missing (root or sudo needed).
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    apt_update_once
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# apt_unpack PACKAGE DIR: Debian's PACKAGE downloaded and unpacked into DIR, not installed: no
# maintainer script runs, so nothing is started (installing nginx would start a system nginx).
# Status 1 when it cannot be fetched.
apt_unpack() {
    local download="$2.download" deb
    rm -rf "$download"
    mkdir -p "$download"
    if ! (cd "$download" && apt-get download "$1" >/dev/null 2>&1); then
        apt_update_once
        (cd "$download" && apt-get download "$1" >/dev/null 2>&1) || { rm -rf "$download"; return 1; }
    fi
    deb="$(ls "$download"/*.deb 2>/dev/null | head -n 1 || true)"
    if [ -z "$deb" ] || ! dpkg-deb -x "$deb" "$2"; then rm -rf "$download"; return 1; fi
    rm -rf "$download"
    return 0
}

# Functions here may run inside an EXIT trap, where a bare `return` hands back the status the
# script is exiting with (bash: "the last command executed before the trap handler"), which
# `set -e` then treats as a failure: every `return` here says its status.
pg_bindir() {
    if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
        pg_config --bindir
        return 0
    fi
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$d" ] && [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    return 1
}

ensure_build_tools() {
    command -v swift >/dev/null 2>&1 || die "the Swift toolchain is not on PATH (swift 6 is required)"
    local missing=()
    { command -v pkg-config >/dev/null 2>&1; } || missing+=(pkg-config)
    pkg-config --exists libpq 2>/dev/null || missing+=(libpq-dev)
    pkg-config --exists libcrypto 2>/dev/null || missing+=(libssl-dev)
    # The webhook TLS tests make certificates with the openssl CLI and serve them with Python.
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        apt_install "${missing[@]}"
    fi
}

ensure_postgres_server() {
    if ! pg_bindir >/dev/null; then
        log "installing postgresql"
        apt_install postgresql postgresql-contrib
    fi
    command -v psql >/dev/null 2>&1 || apt_install postgresql-client
}

# Runs a command as the owner of the cluster: PostgreSQL refuses to run as root.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        # From /, which the postgres user can always enter (the checkout may be private).
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# pg_physical_dir DIR: where the cluster for DIR really lives. Normally DIR itself; but when we
# run as root and the `postgres` user cannot reach DIR (a checkout under a private mktemp
# folder, say), a folder of its own under /var/tmp named after DIR.
pg_physical_dir() {
    local dir parent
    dir="$(realpath -m "$1")"
    parent="$(dirname "$dir")"
    mkdir -p "$parent"
    if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$parent" 2>/dev/null; then
        echo "/var/tmp/oob-engine-pg/$(printf '%s' "$dir" | sha1sum | cut -c1-16)"
    else
        echo "$dir"
    fi
}

# pg_start DIR PORT: initialise (once) and start a cluster in DIR on 127.0.0.1:PORT, create the
# database `oob`, and export DATABASE_URL. Authentication is `trust`, on loopback only: this
# cluster is a throwaway for development and tests, never for production.
pg_start() {
    local dir port="$2" bin
    dir="$(pg_physical_dir "$1")"
    ensure_postgres_server
    bin="$(pg_bindir)"
    mkdir -p "$dir"
    # A cluster kept elsewhere (root, and a folder the postgres user cannot reach) leaves an empty
    # folder where it was asked for: destroy_private_clusters finds the clusters by those names.
    [ "$dir" = "$(realpath -m "$1")" ] || mkdir -p "$1"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; chmod 700 "$dir"; chmod 755 "$(dirname "$dir")"; fi
    if [ ! -s "$dir/PG_VERSION" ]; then
        log "initialising PostgreSQL cluster in $dir"
        as_pg "$bin/initdb" -D "$dir" -U oob --auth=trust -E UTF8 --no-locale >"$dir.initdb.log" 2>&1 \
            || { cat "$dir.initdb.log" >&2; die "initdb failed"; }
        cat >>"$dir/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 300
shared_buffers = 256MB
log_min_messages = warning
log_min_error_statement = panic
CONF
    fi
    if ! as_pg "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
        as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -o "-p $port" -w -t 60 start >/dev/null \
            || { tail -n 30 "$dir/server.log" >&2; die "PostgreSQL did not start (port $port)"; }
    else
        # Already running (started by hand, say, on another port): use the port it listens on,
        # which its postmaster.pid gives on line 4.
        running_port="$(sed -n 4p "$dir/postmaster.pid" 2>/dev/null || true)"
        if [ -n "$running_port" ] && [ "$running_port" != "$port" ]; then
            log "PostgreSQL in $dir is already running on port $running_port; using it"
            port="$running_port"
        fi
    fi
    export PGPORT_LOCAL="$port" PGDATA_LOCAL="$dir" PG_BINDIR="$bin"
    export DATABASE_URL="postgresql://oob@127.0.0.1:$port/oob"
    if ! "$bin/psql" -h 127.0.0.1 -p "$port" -U oob -d postgres -tAc "select 1 from pg_database where datname='oob'" | grep -q 1; then
        "$bin/psql" -h 127.0.0.1 -p "$port" -U oob -d postgres -qc "create database oob" >/dev/null
    fi
}

# pg_recreate_database [NAME]: drop and create NAME (default `oob`) again in the cluster
# pg_start started, for a run that starts from nothing.
pg_recreate_database() {
    pg_drop_database "${1:-oob}"
    "$PG_BINDIR/psql" -h 127.0.0.1 -p "$PGPORT_LOCAL" -U oob -d postgres -qc "create database ${1:-oob}" >/dev/null
}

# pg_drop_database NAME: drop NAME from the cluster pg_start started, if it exists.
pg_drop_database() {
    PGOPTIONS="-c client_min_messages=warning" \
        "$PG_BINDIR/psql" -h 127.0.0.1 -p "$PGPORT_LOCAL" -U oob -d postgres -qc "drop database if exists $1 with (force)" >/dev/null
}

pg_stop() {
    local dir bin
    dir="$(pg_physical_dir "$1")"
    bin="$(pg_bindir)"
    as_pg "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null 2>&1 || true
}

# The fault tests' own clusters (.pgdata/private-*): stopped and removed after a run, also when
# a test was cut short before it could clean up.
destroy_private_clusters() {
    local d
    for d in "$ROOT"/.pgdata/private-*; do
        [ -e "$d" ] || continue
        "$ROOT/scripts/pgctl" "$d" 0 destroy >/dev/null 2>&1 || true
    done
}

# A free TCP port on loopback (bind to 0 and ask the kernel).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# persistent_port FILE: a free loopback port chosen once and remembered in FILE, so a cluster
# initialised earlier is found again on the same port.
persistent_port() {
    local file="$1"
    mkdir -p "$(dirname "$file")"
    if [ ! -s "$file" ]; then free_port >"$file"; fi
    cat "$file"
}
