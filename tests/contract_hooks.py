"""Schemathesis hooks for the contract test: generated requests name the test server's
models and keep to the fields each endpoint knows (an unknown field is a 400 by design),
so the OpenAI operations answer 200 (streams included) as well as their errors.

Loaded by name through SCHEMATHESIS_HOOKS (`fuzzing.schemathesis(hooks=...)`)."""

from __future__ import annotations

import os
import zlib

import schemathesis
from schemathesis import Case, HookContext

from appliance.openai.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from appliance.openai.responses_protocol import ResponsesRequest

MODEL = "tiny"
MAX_TOKENS = 8  # the fuzz tier's cap (FUZZ_TIERS)
FIELDS = {
    "chat/completions": frozenset(ChatCompletionRequest.__struct_fields__),
    "embeddings": frozenset(EmbeddingRequest.__struct_fields__),
    "completions": frozenset(CompletionRequest.__struct_fields__),
    "responses": frozenset(ResponsesRequest.__struct_fields__),
}


def _known(path: str) -> frozenset[str]:
    return next((names for end, names in FIELDS.items() if path.endswith(end)), frozenset())


@schemathesis.hook
def map_case(context: HookContext, case: Case) -> Case:
    body = case.body
    if isinstance(body, dict) and "model" in body:
        known = _known(case.operation.path)
        for name in [name for name in body if name not in known]:
            del body[name]
        body["model"] = MODEL
        if case.operation.path.endswith("/completions") and "messages" not in known:
            body.setdefault("max_tokens", 4)
        for name in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
            if isinstance(body.get(name), int) and body[name] > MAX_TOKENS:
                body[name] = MAX_TOKENS
    parameters = case.path_parameters or {}
    if "target" in parameters:
        parameters["target"] = f"{MODEL}/completions"
    # Half of the ids a model that exists (deterministic: by the generated id).
    if "model_id" in parameters and zlib.crc32(str(parameters["model_id"]).encode()) % 2:
        parameters["model_id"] = MODEL
    # And half of the response ids one the test stored for the key it runs with.
    stored = os.environ.get("CONTRACT_RESPONSE_ID")
    chosen = "response_id" in parameters and zlib.crc32(str(parameters["response_id"]).encode())
    if stored and chosen and chosen % 2:
        parameters["response_id"] = stored
    return case
