#!/usr/bin/env bash
# The API with curl.   source .radiance/demo-keys.env && bash examples/curl.sh
set -euo pipefail
URL=${RADIANCE_URL:-http://127.0.0.1:8000/v1}

curl -sS --fail-with-body "$URL/models" -H "Authorization: Bearer $ALICE_KEY"
echo
curl -sS --fail-with-body "$URL/chat/completions" \
  -H "Authorization: Bearer $ALICE_KEY" \
  -H "Content-Type: application/json" \
  -d '{"model": "tiny", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 20}'
echo
curl -sS --fail-with-body -N "$URL/chat/completions" \
  -H "Authorization: Bearer $ALICE_KEY" \
  -H "Content-Type: application/json" \
  -d '{"model": "tiny", "messages": [{"role": "user", "content": "Stream it"}], "max_tokens": 8,
       "stream": true, "stream_options": {"include_usage": true}}'
