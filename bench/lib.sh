# Shared by bench/run.sh and bench/nodes.sh (sourced, with ENGINE set): wrk, the
# release binaries, a work folder removed at exit, PostgreSQL when
# ENGINE=postgres, and helpers for databases.
if ! command -v wrk > /dev/null; then
    echo "installing wrk" >&2
    if [ "$(id -u)" = 0 ]; then apt-get install -y wrk > /dev/null; else sudo apt-get install -y wrk > /dev/null; fi
fi
cargo build --release -q -p plinth -p plinth-bench-ceiling
bin=target/release/plinth

work=$(mktemp -d)
pids=()
pg_stop=""
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
    [ -z "$pg_stop" ] || $pg_stop > /dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# PostgreSQL: one cluster for the run, as the postgres user when run as root; its
# owner role `plinth` may create roles (the migration creates the serving ones).
if [ "$ENGINE" = postgres ]; then
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
    mkdir -p "$work/pg"
    # The postgres user must reach its folder inside this (private) one.
    [ "$(id -u)" != 0 ] || { chmod a+x "$work"; chown postgres: "$work/pg"; }
    as_pg "$pg_bin/initdb" -A trust -U postgres -E UTF8 --locale=C -D "$work/pg/data" > /dev/null
    pg_port=$(free_port)
    as_pg "$pg_bin/pg_ctl" -w -D "$work/pg/data" -l "$work/pg/log" \
        -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1 -c synchronous_commit=off -c max_connections=200" start > /dev/null
    pg_stop="as_pg $pg_bin/pg_ctl -D $work/pg/data -m fast stop"
    psql_admin() { psql -q -h 127.0.0.1 -p "$pg_port" -U postgres "$@"; }
    psql_admin -c "CREATE ROLE plinth LOGIN CREATEROLE"
fi

# A fresh database named $1: its DATABASE_URL.
new_db() {
    if [ "$ENGINE" = postgres ]; then
        psql_admin -c "CREATE DATABASE $1 OWNER plinth"
        echo "postgres://plinth@127.0.0.1:$pg_port/$1"
    else
        echo "sqlite://$work/$1.db"
    fi
}

# One number from database $1 (a URL) for query $2.
db_scalar() {
    case $1 in
        postgres://*) psql -At "$1" -c "$2" ;;
        *) python3 -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])" "${1#sqlite://}" "$2" ;;
    esac
}

