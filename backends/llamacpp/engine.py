"""llama.cpp in-process: one model, one context, requests decoded one at a time.

A llama context crashes when two threads use it, so every call that touches it runs on
one worker thread per model; the executor's FIFO queue makes the order fair, and
``max_queue`` bounds how many requests may wait (the rest get EngineOverloaded, which
the server answers with 503 and Retry-After). Deltas cross from the worker thread to
the event loop through an asyncio queue; closing the async iterator sets a cancel flag
the worker checks after every token, so an abandoned stream frees the model at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import pathlib
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
    FinishReason,
    Prompt,
    SamplingParams,
    UnsupportedRequest,
)
from backends.llamacpp.chat_template import ChatTemplate
from backends.llamacpp.logprobs import LogprobCapture
from backends.llamacpp.text import StopTextAssembler

if TYPE_CHECKING:
    import llama_cpp
    from llama_cpp.llama_grammar import LlamaGrammar

log = logging.getLogger(__name__)

_DONE = object()


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


@dataclass
class _Job:
    prompt: Prompt
    params: SamplingParams
    grammar: LlamaGrammar | None
    post: Callable[[object], None]
    cancel: threading.Event = field(default_factory=threading.Event)


class LlamaCppBackend(Backend):
    capabilities = Capabilities(
        embeddings=True, logprobs=True, json_schema=True, tools=True, parallel=1
    )

    def __init__(self, settings: LlamaCppSettings) -> None:
        self.settings = settings
        self._status = EngineStatus.STOPPED
        self._llama: llama_cpp.Llama | None = None
        self._embedder: llama_cpp.Llama | None = None
        self._template: ChatTemplate | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._counts = threading.Lock()
        self._waiting = 0
        self._running = 0
        self._seconds_per_job = 1.0
        self._load_seconds: float | None = None
        self._error: str | None = None
        self._grammars: dict[str, LlamaGrammar] = {}

    @property
    def status(self) -> EngineStatus:
        return self._status

    def stats(self) -> EngineStats:
        return EngineStats(
            running=self._running,
            waiting=self._waiting,
            load_seconds=self._load_seconds,
            error=self._error,
        )

    async def start(self) -> None:
        self._status = EngineStatus.LOADING
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"llama-{self.settings.model_id}"
        )
        started = time.perf_counter()
        try:
            self._llama = await self._in_worker(self._load)
        except Exception as exc:
            self._status = EngineStatus.FAILED
            self._error = f"{type(exc).__name__}: {exc}"
            raise EngineError(f"cannot load {self.settings.path}: {exc}") from exc
        metadata = self._llama.metadata
        self._template = ChatTemplate(
            metadata.get("tokenizer.chat_template"),
            bos_token=self._token_text(self._llama.token_bos()),
            eos_token=self._token_text(self._llama.token_eos()),
        )
        self._load_seconds = time.perf_counter() - started
        self._status = EngineStatus.READY

    def _load(self) -> llama_cpp.Llama:
        import llama_cpp

        return llama_cpp.Llama(
            model_path=str(self.settings.path),
            n_ctx=self.settings.context_length,
            n_batch=self.settings.batch_size,
            n_threads=self.settings.threads,
            n_threads_batch=self.settings.threads,
            n_gpu_layers=self.settings.gpu_layers,
            verbose=False,
        )

    async def stop(self) -> None:
        executor, self._executor = self._executor, None
        self._status = EngineStatus.STOPPED
        if executor is None:
            return
        await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        for model in (self._llama, self._embedder):
            if model is not None:
                model.close()
        self._llama = self._embedder = None

    def _ready_llama(self) -> llama_cpp.Llama:
        if self._llama is None or self._status is not EngineStatus.READY:
            raise EngineUnavailable(f"model {self.settings.model_id} is {self._status.value}")
        return self._llama

    def _token_text(self, token: int) -> str:
        if token < 0 or self._llama is None:
            return ""
        return self._llama.detokenize([token], special=True).decode("utf-8", errors="replace")

    # Rendering and tokenizing read only the vocabulary, which is safe from any thread.
    def render_chat(
        self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None
    ) -> Prompt:
        llama = self._ready_llama()
        assert self._template is not None
        text = self._template.render(messages, tools)
        return Prompt(text, tuple(llama.tokenize(text.encode(), add_bos=True, special=True)))

    def render_text(self, text: str) -> Prompt:
        llama = self._ready_llama()
        return Prompt(text, tuple(llama.tokenize(text.encode(), add_bos=True, special=False)))

    def detokenize(self, tokens: Sequence[int]) -> str:
        llama = self._ready_llama()
        return llama.detokenize(list(tokens)).decode("utf-8", errors="replace")

    def grammar_for(self, schema: dict[str, Any]) -> LlamaGrammar:
        """Compile a JSON schema ({} = any JSON object) to a llama.cpp grammar, cached."""
        from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

        key = json.dumps(schema, sort_keys=True)
        grammar = self._grammars.get(key)
        if grammar is None:
            if schema:
                grammar = LlamaGrammar.from_json_schema(key, verbose=False)
            else:
                grammar = LlamaGrammar.from_string(JSON_GBNF, verbose=False)
            if len(self._grammars) > 256:
                self._grammars.clear()
            self._grammars[key] = grammar
        return grammar

    async def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[Delta]:
        self._ready_llama()
        if self._waiting >= self.settings.max_queue:
            retry = max(1.0, self._seconds_per_job * (self._waiting + 1))
            raise EngineOverloaded(
                f"model {self.settings.model_id} has {self._waiting} requests waiting",
                retry_after=round(retry, 1),
            )
        grammar = None
        if params.json_schema is not None:
            try:
                grammar = self.grammar_for(params.json_schema)
            except Exception as exc:
                raise UnsupportedRequest(
                    f"cannot constrain output to this JSON schema: {exc}", "response_format"
                ) from exc
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()

        def post(item: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        job = _Job(prompt, params, grammar, post)
        with self._counts:
            self._waiting += 1
        future = self._submit(self._run_job, job)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, Delta)
                yield item
        finally:
            job.cancel.set()
            # The worker must be done with this job before the caller moves on.
            with contextlib.suppress(Exception):
                await asyncio.shield(future)

    def _submit(self, fn: Callable[[_Job], None], job: _Job) -> asyncio.Future[None]:
        if self._executor is None:
            raise EngineUnavailable(f"model {self.settings.model_id} is stopped")
        return asyncio.wrap_future(self._executor.submit(fn, job))

    async def _in_worker(self, fn: Callable[[], Any]) -> Any:
        if self._executor is None:
            raise EngineUnavailable(f"model {self.settings.model_id} is stopped")
        return await asyncio.wrap_future(self._executor.submit(fn))

    def _run_job(self, job: _Job) -> None:
        with self._counts:
            self._waiting -= 1
            if job.cancel.is_set() or self._llama is None:
                job.post(_DONE)
                return
            self._running += 1
        started = time.perf_counter()
        try:
            self._decode(self._llama, job)
        except Exception as exc:
            log.exception("generation failed for %s", self.settings.model_id)
            job.post(EngineError(f"generation failed: {exc}"))
        finally:
            with self._counts:
                self._running -= 1
            elapsed = time.perf_counter() - started
            self._seconds_per_job = 0.8 * self._seconds_per_job + 0.2 * elapsed
            job.post(_DONE)

    def _decode(self, llama: llama_cpp.Llama, job: _Job) -> None:
        import llama_cpp

        params = job.params
        llama.set_seed(params.seed if params.seed is not None else random.getrandbits(31))
        capture = LogprobCapture(llama, params.top_logprobs) if params.logprobs else None
        assembler = StopTextAssembler(params.stop)
        vocab = llama._model.vocab
        n_ctx = llama.n_ctx()
        generated = 0
        finish: FinishReason = "length"
        tokens = llama.generate(
            job.prompt.tokens,
            top_k=0,
            top_p=params.top_p,
            min_p=0.0,
            typical_p=1.0,
            temp=params.temperature,
            repeat_penalty=params.repetition_penalty,
            frequency_penalty=params.frequency_penalty,
            presence_penalty=params.presence_penalty,
            logits_processor=capture.processors() if capture else None,
            grammar=job.grammar,
        )
        for token in tokens:
            if job.cancel.is_set():
                finish = "cancelled"
                break
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                finish = "stop"
                break
            generated += 1  # noqa: SIM113 (an end token is not counted)
            text = assembler.feed(llama.detokenize([token]))
            logprobs = (capture.entry(token),) if capture else ()
            job.post(Delta(text, 1, logprobs))
            if assembler.stopped:
                finish = "stop"
                break
            if generated >= params.max_tokens or llama.n_tokens >= n_ctx:
                break
        tokens.close()
        job.post(Delta(assembler.flush(), 0, finish_reason=finish))

    async def embed(self, inputs: Sequence[Prompt]) -> Embeddings:
        self._ready_llama()
        if not self.settings.embeddings:
            raise EngineError(f"embeddings are turned off for {self.settings.model_id}")
        result: Embeddings = await self._in_worker(lambda: self._embed(inputs))
        return result

    def _embed(self, inputs: Sequence[Prompt]) -> Embeddings:
        import llama_cpp

        if self._embedder is None:
            size = min(self.settings.context_length, 8192)
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
        vectors, count = self._embedder.embed(
            [p.text for p in inputs], normalize=True, truncate=False, return_count=True
        )
        return Embeddings(vectors=[list(map(float, v)) for v in vectors], prompt_tokens=count)
