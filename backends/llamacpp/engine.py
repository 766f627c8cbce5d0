"""llama.cpp in-process: what its two engines share, and the choice between them.

``parallel: 1`` serves one request at a time (``serial.SerialEngine``, llama-cpp-python's
``Llama.generate``); ``parallel`` > 1 decodes that many sequences together in one context
(``batching.BatchingEngine``, continuous batching). Both load the model on a thread of
their own, render prompts with the GGUF's chat template, compile JSON schemas to
grammars, bound how many requests may wait, and compute embeddings with a second,
lazily created context.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import json
import logging
import pathlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from backends.base import (
    Backend,
    Capabilities,
    Delta,
    Embeddings,
    EngineError,
    EngineOverloaded,
    EngineStats,
    EngineStatus,
    EngineUnavailable,
    Prompt,
    PromptTooLong,
    UnsupportedRequest,
    check_tokens,
)
from backends.llamacpp.chat_template import ChatTemplate
from backends.llamacpp.embedding import embed_tokens

if TYPE_CHECKING:
    import llama_cpp
    from llama_cpp._internals import LlamaModel

log = logging.getLogger(__name__)

T = TypeVar("T")
EMBEDDING_CONTEXT = 8192  # the most tokens one embedding input may have

# What may not stand unescaped inside a JSON string (RFC 8259): a quote, a backslash, a
# control character. llama-cpp-python's schema grammars let U+0000-U+001F through in their
# string characters (`char ::= [^"\\] ...`), in a pattern's `.` (`dot ::= [^\x0A\x0D]`)
# and in the negated classes of patterns and key rules; all of these stand inside JSON
# strings, and nothing else in such a grammar is a negated class.
_NOT_IN_STRINGS = '"\\\\\\x00-\\x1F\\x7F'


def strict_json_strings(grammar: str) -> str:
    """A schema grammar whose strings hold only what RFC 8259 allows unescaped."""
    return grammar.replace("[^", "[^" + _NOT_IN_STRINGS)


@dataclass(frozen=True)
class LlamaCppSettings:
    model_id: str
    path: pathlib.Path
    context_length: int
    threads: int = 2
    batch_size: int = 512
    max_queue: int = 64
    embeddings: bool = True
    gpu_layers: int = 0
    # Sequences decoded together; 1 = one request at a time.
    parallel: int = 1


async def relay(queue: asyncio.Queue[object], end: object) -> AsyncIterator[Delta]:
    """The deltas a worker thread posts to `queue` until `end`; what it raises, re-raised."""
    while True:
        item = await queue.get()
        if item is end:
            return
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, Delta)
        yield item


def llamacpp_engine(settings: LlamaCppSettings) -> LlamaCppEngine:
    """The engine for these settings: serialized for one slot, batching for more."""
    if settings.parallel > 1:
        from backends.llamacpp.batching import BatchingEngine

        return BatchingEngine(settings)
    from backends.llamacpp.serial import SerialEngine

    return SerialEngine(settings)


class LlamaCppEngine(Backend, abc.ABC):
    """One GGUF model: loading, prompts, grammars, embeddings and the queue bound."""

    def __init__(self, settings: LlamaCppSettings) -> None:
        self.settings = settings
        self.capabilities = Capabilities(
            embeddings=True,
            logprobs=True,
            json_schema=True,
            tools=True,
            parallel=settings.parallel,
        )
        self._status = EngineStatus.STOPPED
        self._model: LlamaModel | None = None
        self._template: ChatTemplate | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._embedder: llama_cpp.Llama | None = None
        self._load_seconds: float | None = None
        self._error: str | None = None
        self._grammars: dict[str, str] = {}
        self._n_vocab: int | None = None
        self._seconds_per_request = 1.0

    @property
    def status(self) -> EngineStatus:
        return self._status

    def stats(self) -> EngineStats:
        running, waiting = self._request_counts()
        return EngineStats(
            running=running,
            waiting=waiting,
            load_seconds=self._load_seconds,
            error=self._error,
            extra=self._extra_stats(),
        )

    @abc.abstractmethod
    def _request_counts(self) -> tuple[int, int]:
        """Requests (running, waiting) now."""

    def _extra_stats(self) -> dict[str, float]:
        return {}

    @abc.abstractmethod
    def _load(self) -> LlamaModel:
        """Load the model for generation (on the engine's thread); return its vocabulary."""

    @abc.abstractmethod
    def _unload(self) -> None:
        """Stop generating and free what ``_load`` made (once the engine's thread is idle)."""

    async def start(self) -> None:
        self._status = EngineStatus.LOADING
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"llama-{self.settings.model_id}"
        )
        started = time.perf_counter()
        try:
            model = await self._in_worker(self._load)
        except Exception as exc:
            self._status = EngineStatus.FAILED
            self._error = f"{type(exc).__name__}: {exc}"
            raise EngineError(f"cannot load {self.settings.path}: {exc}") from exc
        self._model = model
        self._n_vocab = model.n_vocab()
        self._template = ChatTemplate(
            model.metadata().get("tokenizer.chat_template"),
            bos_token=self._token_text(model.token_bos()),
            eos_token=self._token_text(model.token_eos()),
        )
        self._load_seconds = time.perf_counter() - started
        self._status = EngineStatus.READY

    async def stop(self) -> None:
        executor, self._executor = self._executor, None
        self._status = EngineStatus.STOPPED
        if executor is None:
            return
        await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        await asyncio.to_thread(self._unload)
        if self._embedder is not None:
            self._embedder.close()
            self._embedder = None
        self._model = None

    async def _in_worker(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise EngineUnavailable(f"model {self.settings.model_id} is stopped")
        return await asyncio.wrap_future(self._executor.submit(fn))

    def _ready_model(self) -> LlamaModel:
        if self._model is None or self._status is not EngineStatus.READY:
            raise EngineUnavailable(f"model {self.settings.model_id} is {self._status.value}")
        return self._model

    def _token_text(self, token: int) -> str:
        if token < 0 or self._model is None:
            return ""
        return self._model.detokenize([token], special=True).decode("utf-8", errors="replace")

    # Rendering and tokenizing read only the vocabulary, which is safe from any thread.
    def render_chat(
        self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None
    ) -> Prompt:
        model = self._ready_model()
        assert self._template is not None
        text = self._template.render(messages, tools)
        return Prompt(text, tuple(model.tokenize(text.encode(), add_bos=True, special=True)))

    def render_text(self, text: str) -> Prompt:
        model = self._ready_model()
        return Prompt(text, tuple(model.tokenize(text.encode(), add_bos=True, special=False)))

    def detokenize(self, tokens: Sequence[int]) -> str:
        model = self._ready_model()
        check_tokens(tokens, model.n_vocab())
        return model.detokenize(list(tokens)).decode("utf-8", errors="replace")

    @property
    def vocab_size(self) -> int | None:
        return self._n_vocab

    def _check_prompt(self, prompt: Prompt) -> None:
        """What llama.cpp must never be given: an empty prompt, one longer than the
        context, a token id outside the vocabulary (it aborts the whole process)."""
        if not prompt.tokens:
            raise UnsupportedRequest("the prompt is empty", "prompt")
        if len(prompt.tokens) > self.settings.context_length:
            raise PromptTooLong(len(prompt.tokens), self.settings.context_length)
        check_tokens(prompt.tokens, self._ready_model().n_vocab())

    def json_grammar(self, schema: dict[str, Any]) -> str:
        """The GBNF grammar for a JSON schema ({} = any JSON object), checked and cached.

        Raises UnsupportedRequest (naming response_format) when it cannot be compiled.
        """
        import llama_cpp
        from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

        model = self._ready_model()
        key = json.dumps(schema, sort_keys=True)
        grammar = self._grammars.get(key)
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
        if len(self._grammars) > 256:
            self._grammars.clear()
        self._grammars[key] = grammar
        return grammar

    def _overloaded(self, waiting: int) -> EngineOverloaded:
        """The error for a request refused because ``waiting`` others are queued."""
        slots = self.settings.parallel
        retry = max(1.0, self._seconds_per_request * (waiting + slots) / slots)
        return EngineOverloaded(
            f"model {self.settings.model_id} has {waiting} requests waiting",
            retry_after=round(retry, 1),
        )

    def _took(self, seconds: float) -> None:
        """Record how long a request held a slot, for Retry-After estimates."""
        self._seconds_per_request = 0.8 * self._seconds_per_request + 0.2 * seconds

    async def embed(self, inputs: Sequence[Prompt]) -> Embeddings:
        self._ready_model()
        if not self.settings.embeddings:
            raise EngineError(f"embeddings are turned off for {self.settings.model_id}")
        for prompt in inputs:
            self._check_prompt(prompt)
            if len(prompt.tokens) > EMBEDDING_CONTEXT:
                raise PromptTooLong(len(prompt.tokens), EMBEDDING_CONTEXT)
        return await self._in_worker(lambda: self._embed(inputs))

    def _embed(self, inputs: Sequence[Prompt]) -> Embeddings:
        import llama_cpp

        if self._embedder is None:
            size = min(self.settings.context_length, EMBEDDING_CONTEXT)
            self._embedder = llama_cpp.Llama(
                model_path=str(self.settings.path),
                n_ctx=size,
                n_batch=size,
                n_ubatch=size,
                n_threads=self.settings.threads,
                n_threads_batch=self.settings.threads,
                embedding=True,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                verbose=False,
            )
        vectors = embed_tokens(self._embedder, [p.tokens for p in inputs])
        return Embeddings(vectors=vectors, prompt_tokens=sum(len(p.tokens) for p in inputs))
