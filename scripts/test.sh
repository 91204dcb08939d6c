#!/usr/bin/env bash
# One command: set up (first run only) and run the whole test suite, anvil and PostgreSQL included.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
export DATABRIGHT_REQUIRE_ANVIL="${DATABRIGHT_REQUIRE_ANVIL:-1}"
export DATABRIGHT_REQUIRE_NPM="${DATABRIGHT_REQUIRE_NPM:-1}"
# The index tests run on SQLite and on a throwaway PostgreSQL server started here; without a
# server they fail (a developer without PostgreSQL sets DATABRIGHT_REQUIRE_PG=0: SQLite only).
export DATABRIGHT_REQUIRE_PG="${DATABRIGHT_REQUIRE_PG:-1}"
export DATABRIGHT_REQUIRE_CHROMIUM="${DATABRIGHT_REQUIRE_CHROMIUM:-1}"

pg_dir=""
stop_postgres() {
  if [ -n "$pg_dir" ] && [ -f "$pg_dir/db/postmaster.pid" ]; then
    $pg_run "$pg_bin/pg_ctl" -D "$pg_dir/db" -m fast -w stop >/dev/null 2>&1 || true
  fi
  [ -n "$pg_dir" ] && rm -rf "$pg_dir"
}

start_postgres() {
  # A server named by the caller is used as it is.
  [ -n "${DATABRIGHT_TEST_PG_URL:-}" ] && return 0
  pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  if [ -z "$pg_bin" ]; then
    echo "test: PostgreSQL is not installed (as root: apt-get install -y postgresql); the" \
         "PostgreSQL half of the index tests will $([ "$DATABRIGHT_REQUIRE_PG" = 1 ] && echo fail || echo be skipped)" >&2
    return 0
  fi
  pg_dir="$(mktemp -d)"
  pg_run=""
  if [ "$(id -u)" = 0 ]; then
    # the server refuses to run as root: run it as the package's postgres user
    chown postgres "$pg_dir"
    pg_run="runuser -u postgres --"
  fi
  trap stop_postgres EXIT
  local port
  port="$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  $pg_run "$pg_bin/initdb" -D "$pg_dir/db" -A trust -U postgres >"$pg_dir/initdb.log" 2>&1 \
    || { cat "$pg_dir/initdb.log" >&2; exit 1; }
  $pg_run "$pg_bin/pg_ctl" -D "$pg_dir/db" -l "$pg_dir/log" -w \
    -o "-k $pg_dir -p $port -c listen_addresses=127.0.0.1" start >/dev/null \
    || { cat "$pg_dir/log" >&2; exit 1; }
  export DATABRIGHT_TEST_PG_URL="postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
  echo "test: PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port" >&2
}

start_postgres
# pytest exits 5 when it collects nothing: that is a failure here, never a pass.
set +e
.venv/bin/python -m pytest -n 2 -q "$@"
code=$?
set -e
exit "$code"
