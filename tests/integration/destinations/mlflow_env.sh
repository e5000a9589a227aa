#!/usr/bin/env bash
# Create (once) a cached venv holding mlflow (the tracking server), separate from the
# project's venv so MLflow's many dependencies never mix with Untrace's. Prints the venv's
# `mlflow` path.
#   usage: tests/integration/destinations/mlflow_env.sh [venv dir]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
venv="${1:-$root/.cache/mlflow-venv}"
python="${MLFLOW_PYTHON:-python3}"
if [ ! -x "$venv/bin/mlflow" ] || [ ! -f "$venv/.installed" ]; then
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip >&2
    "$venv/bin/pip" install -q --disable-pip-version-check mlflow >&2
    touch "$venv/.installed"
fi
echo "$venv/bin/mlflow"
