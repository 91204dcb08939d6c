#!/usr/bin/env bash
# Creates .venv when missing and installs DataBright with its test tools and the anvil node.
# Safe to re-run: it only reinstalls when pyproject.toml or package.json changed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$py" -m venv .venv
fi
stamp=.venv/.databright-installed
want="$(cat pyproject.toml package.json | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python packages (first run takes a few minutes)" >&2
  .venv/bin/python -m pip install -q --upgrade pip 2> >(grep -v "is ignored: it is neither" >&2)
  # The CPU build of torch first: a plain 'torch' requirement would pull a multi-GB CUDA build.
  # (pip's notes about unusable local index folders on this kind of machine are filtered out)
  .venv/bin/python -m pip install -q "torch==2.13.0" 2> >(grep -v "is ignored: it is neither" >&2)
  .venv/bin/python -m pip install -q -e ".[test]" 2> >(grep -v "is ignored: it is neither" >&2)
  if command -v npm >/dev/null 2>&1; then
    echo "setup: installing the anvil node (npm @foundry-rs/anvil)" >&2
    npm install --no-audit --no-fund --silent >/dev/null
  else
    echo "setup: npm not found; anvil tests will be skipped" >&2
  fi
  echo "$want" > "$stamp"
fi
# The index tests also run on a throwaway PostgreSQL server (scripts/test.sh starts it).
if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing PostgreSQL (apt-get install postgresql)" >&2
    apt-get install -y -q postgresql >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null; }
  else
    echo "setup: PostgreSQL is not installed; as root run: apt-get install -y postgresql" >&2
  fi
fi
# The web app's browser tests drive Debian's Chromium through playwright (no browser download).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Chromium (apt-get install chromium)" >&2
    apt-get install -y -q chromium >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
  else
    echo "setup: Chromium is not installed; as root run: apt-get install -y chromium" >&2
  fi
fi
