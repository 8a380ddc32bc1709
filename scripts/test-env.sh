#!/usr/bin/env bash
# The machine set-up behind `make demo`, `make test` and .ci/run, on Debian or Ubuntu.
#
#   scripts/test-env.sh packages demo|test   install the missing system packages (as root,
#                                            with apt) or print the command that does
#   scripts/test-env.sh run COMMAND...       the test packages, then a throwaway PostgreSQL
#                                            (unless PUFFIN_TEST_POSTGRES_URL is set) and
#                                            ../shared/data, then COMMAND; exits with its code
#   scripts/test-env.sh postgres             start a throwaway PostgreSQL, print its URL and
#                                            data directory, leave it running (for debugging;
#                                            stop it with `scripts/test-env.sh stop DIR`)
#   scripts/test-env.sh stop DIR             stop a PostgreSQL started by `postgres`
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "test-env: $*" >&2; }

# Print the Debian packages `make $1` needs that this machine lacks.
missing_packages() {
  local need=()
  python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
  if [ "$1" = test ]; then
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
    [ -x /usr/bin/chromium ] || need+=(chromium)
  fi
  echo "${need[@]}"
}

install_packages() {
  local need
  need="$(missing_packages "$1")"
  [ -n "$need" ] || return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing $need"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086 # one word per package
    apt-get install -y -qq $need >/dev/null
    return 0
  fi
  say "these Debian packages are missing: $need"
  say "install them with:  sudo apt-get install -y $need"
  return 1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Run a command as the postgres user when root (PostgreSQL refuses to run as root).
as_postgres() {
  if [ "$(id -u)" = 0 ]; then
    su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
  else
    "$@"
  fi
}

pg_bin() {
  local initdb
  initdb="$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)"
  [ -x "$initdb" ] || { say "PostgreSQL is not installed (apt-get install postgresql)"; return 1; }
  dirname "$initdb"
}

# Start a throwaway PostgreSQL in a new directory; set PG_DIR and PUFFIN_TEST_POSTGRES_URL.
start_postgres() {
  local bin port
  bin="$(pg_bin)"
  port="$(free_port)"
  PG_DIR="$(mktemp -d /tmp/puffin-test-pg.XXXXXX)"
  [ "$(id -u)" != 0 ] || chown postgres "$PG_DIR"
  as_postgres "$bin/initdb" -D "$PG_DIR/data" -A trust -U postgres >/dev/null
  as_postgres "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
    -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
  export PUFFIN_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:${port}/postgres"
  say "throwaway PostgreSQL on port $port ($PG_DIR)"
}

stop_postgres() {
  local dir="$1" bin
  [ -n "$dir" ] || return 0
  bin="$(pg_bin)" || return 0
  [ -d "$dir/data" ] && as_postgres "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null || true
  rm -rf "$dir"
}

export_shared_data() {
  if [ -z "${PUFFIN_SHARED_DATA:-}" ] && [ -d ../shared/data ]; then
    PUFFIN_SHARED_DATA="$(cd ../shared/data && pwd)"
    export PUFFIN_SHARED_DATA
  fi
  [ -n "${PUFFIN_SHARED_DATA:-}" ] || say "../shared/data is absent: the conformance tests skip"
}

command="${1:-}"
shift || true
case "$command" in
  packages)
    install_packages "${1:-test}"
    ;;
  run)
    [ $# -gt 0 ] || { say "usage: $0 run COMMAND..."; exit 2; }
    install_packages test
    export_shared_data
    PG_DIR=""
    if [ -n "${PUFFIN_TEST_POSTGRES_URL:-}" ]; then
      say "using the PostgreSQL at PUFFIN_TEST_POSTGRES_URL"
    else
      trap 'stop_postgres "$PG_DIR"' EXIT
      start_postgres
    fi
    status=0
    "$@" || status=$?
    exit "$status"
    ;;
  postgres)
    start_postgres
    echo "PUFFIN_TEST_POSTGRES_URL=$PUFFIN_TEST_POSTGRES_URL"
    echo "stop with: $0 stop $PG_DIR"
    ;;
  stop)
    [ -n "${1:-}" ] && [[ "$1" == /tmp/puffin-test-pg.* ]] || { say "usage: $0 stop DIR"; exit 2; }
    stop_postgres "$1"
    ;;
  *)
    say "usage: $0 packages demo|test | run COMMAND... | postgres | stop DIR"
    exit 2
    ;;
esac
