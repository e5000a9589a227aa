#!/usr/bin/env bash
# Create (once) a cached venv holding traceloop-sdk and the openai SDK, separate from the
# project's venv so OpenLLMetry's many instrumentation packages never mix with Untrace's.
# httpx is listed because traceloop-sdk imports it without declaring it.
# Prints the venv's python path.
#   usage: tests/integration/receivers/traceloop_env.sh [venv dir]  (or $TRACELOOP_VENV)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
venv="${1:-${TRACELOOP_VENV:-$root/.cache/traceloop-venv}}"
python="${TRACELOOP_PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.installed" ]; then
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip >&2
    "$venv/bin/pip" install -q --disable-pip-version-check traceloop-sdk openai httpx >&2
    touch "$venv/.installed"
fi
echo "$venv/bin/python"
