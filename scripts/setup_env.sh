#!/usr/bin/env bash
# Create or refresh the local .venv: the package in editable mode with its dev tools, and torch pinned
# to the CPU build used for development and CI. Safe to run again; it reinstalls only when
# pyproject.toml changed since the last set-up.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_PIN="${EXPMATE_TORCH_PIN:-torch==2.13.0}"
PY="${PYTHON:-python3}"
stamp=".venv/.expmate-setup"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $TORCH_PIN"
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv" >&2
    "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: installing expmate[dev] and $TORCH_PIN into .venv" >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check "$TORCH_PIN"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev,torch]" "$TORCH_PIN"
    echo "$want" > "$stamp"
fi
