#!/usr/bin/env bash
# Create .venv and install Radiance into it (with the test tools), once per change of
# pyproject.toml. The first install compiles llama.cpp through llama-cpp-python: about
# 10-15 minutes on 2 cores; pip caches the wheel, so later installs take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "Radiance needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.radiance-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing Radiance and its dependencies into .venv (the first time compiles llama.cpp: 10-15 min)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch first, pinned: the dev extra pulls it in for fine-tuning (the train extra), and
  # left to itself pip would take the newest (a multi-GB CUDA build). torch 2.13.0's CPU
  # build is a local wheel on the machines this is tested on; TORCH_INDEX names another
  # index (e.g. https://download.pytorch.org/whl/cpu) where it is not.
  .venv/bin/python -m pip install --quiet --progress-bar off torch==2.13.0 \
    ${TORCH_INDEX:+--index-url "$TORCH_INDEX" --extra-index-url https://pypi.org/simple}
  .venv/bin/python -m pip install --quiet --progress-bar off -e '.[dev]'
  echo "$want" > "$stamp"
fi
