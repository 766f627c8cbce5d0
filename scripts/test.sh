#!/usr/bin/env bash
# Set up and run every check: lint, formatting, types, import contracts, then the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== ruff";         .venv/bin/ruff check .
echo "== ruff format";  .venv/bin/ruff format --check .
echo "== mypy";         .venv/bin/mypy
echo "== import contracts"; .venv/bin/lint-imports
echo "== pytest";       .venv/bin/python -m pytest "$@"
