#!/usr/bin/env bash
# Set up and serve the shipped radiance.yaml: installs into .venv, writes the demo model
# if it is missing, and creates demo keys on the first run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

# The GGUF (served by llama.cpp) and the same weights as a Hugging Face folder
# (models/tiny-hf, what fine-tuning trains on).
if [ ! -f models/tiny.gguf ] || [ ! -f models/tiny-hf/model.safetensors ]; then
  .venv/bin/radiance demo-model models/tiny.gguf
fi

# radiance.yaml reads its secrets from the environment. Without them, make demo keys once
# and keep them in .radiance/demo-keys.env (readable by you only).
keys=.radiance/demo-keys.env
if [ -z "${RADIANCE_ADMIN_KEY:-}" ] || [ -z "${ALICE_KEY:-}" ]; then
  if [ ! -f "$keys" ]; then
    mkdir -p .radiance
    umask 077
    {
      echo "export RADIANCE_ADMIN_KEY=rad-admin-$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(24))')"
      echo "export ALICE_KEY=sk-alice-$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(24))')"
    } > "$keys"
    echo "created demo keys in $keys; load them into your shell with: source $keys"
  fi
  # shellcheck disable=SC1090
  source "$keys"
  export RADIANCE_ADMIN_KEY ALICE_KEY
fi

exec .venv/bin/radiance up radiance.yaml "$@"
