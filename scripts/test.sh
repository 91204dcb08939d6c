#!/usr/bin/env bash
# One command: set up (first run only) and run the whole test suite, anvil included.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
export DATABRIGHT_REQUIRE_ANVIL="${DATABRIGHT_REQUIRE_ANVIL:-1}"
export DATABRIGHT_REQUIRE_NPM="${DATABRIGHT_REQUIRE_NPM:-1}"
# pytest exits 5 when it collects nothing: that is a failure here, never a pass.
exec .venv/bin/python -m pytest -n 2 -q "$@"
