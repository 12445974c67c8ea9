# Sourced by scripts/test and scripts/bench: start_postgres starts a fresh PostgreSQL cluster for the tests and
# exports its address as PROCTOR_TEST_POSTGRES; the cluster is stopped and removed when the sourcing shell exits.
# Expects $root to be the repository root.
#
# PostgreSQL refuses to run as root, so the cluster belongs to the `postgres` user (Debian's package makes it) and
# is run through runuser when this script runs as root. It listens on 127.0.0.1 only, on a free port, with trust
# authentication: nothing but this machine's processes can reach it, and it lives only as long as the test run.

postgres_bin() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]] && { echo "$dir"; return 0; }
    done
    return 1
}

ensure_postgres_installed() {
    postgres_bin >/dev/null && return 0
    echo "scripts/test: installing postgresql for the PostgreSQL store tests" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y --no-install-recommends postgresql >/dev/null \
        || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y --no-install-recommends postgresql >/dev/null; }
    postgres_bin >/dev/null
}

# Runs a PostgreSQL program as the cluster's owner.
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_postgres [bench]: with no argument (the tests) the cluster runs with fsync=off. `bench` keeps fsync on and
# turns synchronous_commit off instead: no fsync per commit (the WAL writer flushes within a fraction of a second)
# but a database that stays consistent through a crash, as the SQLite store's WAL with synchronous=NORMAL, so the
# benchmarks compare like with like.
start_postgres() {
    local mode="${1:-test}" durability
    case "$mode" in
        test) durability="-c fsync=off" ;;
        bench) durability="-c fsync=on -c synchronous_commit=off" ;;
        *) echo "start_postgres: unknown mode $mode (expected bench, or nothing for the tests)" >&2; return 1 ;;
    esac
    ensure_postgres_installed
    local bin port
    bin="$(postgres_bin)"
    port="$(free_port)"
    # A fresh cluster per run (initdb takes a second or two): no state leaks from one run into the next.
    pg_dir="$(mktemp -d "$root/target/postgres-test.XXXXXX")"
    chmod 755 "$pg_dir"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$pg_dir"
    as_postgres "$bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    as_postgres "$bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$pg_dir -c max_connections=400 $durability" \
        start >/dev/null
    pg_ctl_bin="$bin/pg_ctl"
    trap stop_postgres EXIT
    export PROCTOR_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/postgres"
}

stop_postgres() {
    if [[ -n "${pg_dir:-}" && -d "$pg_dir/data" ]]; then
        as_postgres "$pg_ctl_bin" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$pg_dir"
    fi
}
