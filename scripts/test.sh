#!/usr/bin/env bash
# Set up and run every check: lint, formatting, types, import contracts, then the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The tests run examples/curl.sh; a bare Debian machine may lack curl.
if ! command -v curl >/dev/null; then
    echo "== installing curl (apt)"
    apt-get update -qq && apt-get install -y -qq curl >/dev/null
fi

echo "== ruff";         .venv/bin/ruff check .
echo "== ruff format";  .venv/bin/ruff format --check .
echo "== mypy";         .venv/bin/mypy
echo "== import contracts"; .venv/bin/lint-imports
echo "== pytest";       .venv/bin/python -m pytest "$@"
