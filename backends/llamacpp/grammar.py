"""JSON schemas compiled to llama.cpp grammars, checked once and cached.

llama-cpp-python compiles a schema to GBNF; llama.cpp parses the GBNF into a sampler.
Both steps can refuse a schema, and both are done here once per schema, so a request
with a bad one is answered 400 before it is queued.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from backends.base import UnsupportedRequest

if TYPE_CHECKING:
    from llama_cpp._internals import LlamaModel

CACHED = 256  # schemas kept compiled

# What may not stand unescaped inside a JSON string (RFC 8259): a quote, a backslash, a
# control character. llama-cpp-python's schema grammars let U+0000-U+001F through in their
# string characters (`char ::= [^"\\] ...`), in a pattern's `.` (`dot ::= [^\x0A\x0D]`)
# and in the negated classes of patterns and key rules; all of these stand inside JSON
# strings, and nothing else in such a grammar is a negated class.
_NOT_IN_STRINGS = '"\\\\\\x00-\\x1F\\x7F'


def strict_json_strings(grammar: str) -> str:
    """A schema grammar whose strings hold only what RFC 8259 allows unescaped."""
    return grammar.replace("[^", "[^" + _NOT_IN_STRINGS)


class JsonGrammars:
    """The grammars of one model's JSON schemas."""

    def __init__(self) -> None:
        self._cache: dict[str, str] = {}

    def compile(self, model: LlamaModel, schema: dict[str, Any]) -> str:
        """The GBNF grammar for a JSON schema ({} = any JSON object), checked and cached.

        Raises UnsupportedRequest (naming response_format) when it cannot be compiled.
        """
        import llama_cpp
        from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

        key = json.dumps(schema, sort_keys=True)
        grammar = self._cache.get(key)
        if grammar is not None:
            return grammar
        try:
            grammar = strict_json_strings(json_schema_to_gbnf(key)) if schema else JSON_GBNF
        except Exception as exc:
            raise UnsupportedRequest(
                f"cannot constrain output to this JSON schema: {exc}", "response_format"
            ) from exc
        # Parsing needs only the vocabulary; a grammar llama.cpp refuses is a bad request.
        parsed = llama_cpp.llama_sampler_init_grammar(model.vocab, grammar.encode(), b"root")
        if not parsed:
            raise UnsupportedRequest(
                "cannot constrain output to this JSON schema: llama.cpp rejects its grammar",
                "response_format",
            )
        llama_cpp.llama_sampler_free(parsed)
        if len(self._cache) > CACHED:
            self._cache.clear()
        self._cache[key] = grammar
        return grammar
