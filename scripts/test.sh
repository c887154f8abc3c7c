#!/usr/bin/env bash
# Run the whole check: lint, type check and the test suite (DDP tests launch real torchrun workers on CPU).
# Sets up .venv on first use. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/python -m ruff check expmate tests examples benchmarks scripts
.venv/bin/python -m mypy expmate
.venv/bin/python -m pytest -n auto -q "$@"
