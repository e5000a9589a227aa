#!/usr/bin/env bash
# Create (once) a cached venv holding arize-phoenix, separate from the project's venv so
# Phoenix's many dependencies never mix with Untrace's. Prints the venv's `phoenix` path.
#   usage: tests/integration/destinations/phoenix_env.sh [venv dir]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
venv="${1:-$root/.cache/phoenix-venv}"
python="${PHOENIX_PYTHON:-python3}"
if [ ! -x "$venv/bin/phoenix" ] || [ ! -f "$venv/.installed" ]; then
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip >&2
    "$venv/bin/pip" install -q --disable-pip-version-check arize-phoenix >&2
    touch "$venv/.installed"
fi
echo "$venv/bin/phoenix"
