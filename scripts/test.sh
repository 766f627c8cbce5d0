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
# The Node SDK test (tests/appliance/test_responses_node.py) runs the OpenAI Node SDK pinned
# in tests/node/package-lock.json: npm ci from the npm registry, once per change of that lock.
# With it installed the test must run; without Node it is skipped (.ci/run requires it).
if command -v node >/dev/null && command -v npm >/dev/null; then
    node_stamp=tests/node/node_modules/.radiance-installed
    node_want=$(sha256sum tests/node/package-lock.json | cut -d' ' -f1)
    if [ "$(cat "$node_stamp" 2>/dev/null)" != "$node_want" ]; then
        echo "== installing the Node SDK into tests/node (npm ci)"
        npm ci --prefix tests/node --no-audit --no-fund --loglevel=error >/dev/null
        echo "$node_want" > "$node_stamp"
    fi
    export RADIANCE_REQUIRE_NODE=1
else
    echo "== no node/npm: the Node SDK test will be skipped"
fi

echo "== ruff";         .venv/bin/ruff check .
echo "== ruff format";  .venv/bin/ruff format --check .
echo "== mypy";         .venv/bin/mypy
echo "== import contracts"; .venv/bin/lint-imports
echo "== pytest";       .venv/bin/python -m pytest "$@"
