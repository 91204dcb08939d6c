#!/usr/bin/env bash
# One command: set up (first run only) and play the DataBright demo on the embedded chain.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh"
exec "$root/.venv/bin/databright" demo "$@"
