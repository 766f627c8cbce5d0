"""The serialized llama.cpp engine: one context, requests decoded one at a time.

A llama context crashes when two threads use it, so every call that touches it runs on
the model's one worker thread; the executor's FIFO queue makes the order fair, and
``max_queue`` bounds how many requests may wait (the rest get EngineOverloaded, which
the server answers with 503 and Retry-After). Deltas cross from the worker thread to
the event loop through an asyncio queue; closing the async iterator sets a cancel flag
the worker checks after every token, so an abandoned stream frees the model at once.
This is the engine for ``parallel: 1``; ``batching.BatchingEngine`` serves more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from backends.base import (
    Delta,
    EngineError,
    EngineUnavailable,
    FinishReason,
    Prompt,
    SamplingParams,
)
from backends.llamacpp.engine import LlamaCppEngine, LlamaCppSettings, relay
from backends.llamacpp.logprobs import LogprobCapture
from backends.llamacpp.text import StopTextAssembler

if TYPE_CHECKING:
    import llama_cpp
    from llama_cpp._internals import LlamaModel
    from llama_cpp.llama_grammar import LlamaGrammar

log = logging.getLogger(__name__)

_DONE = object()


@dataclass
class _Job:
    prompt: Prompt
    params: SamplingParams
    grammar: LlamaGrammar | None
    post: Callable[[object], None]
    cancel: threading.Event = field(default_factory=threading.Event)


class SerialEngine(LlamaCppEngine):
    def __init__(self, settings: LlamaCppSettings) -> None:
        super().__init__(settings)
        self._llama: llama_cpp.Llama | None = None
        self._counts = threading.Lock()
        self._waiting = 0
        self._running = 0

    def _request_counts(self) -> tuple[int, int]:
        return self._running, self._waiting

    def _load(self) -> LlamaModel:
        import llama_cpp

        self._llama = llama_cpp.Llama(
            model_path=str(self.settings.path),
            n_ctx=self.settings.context_length,
            n_batch=self.settings.batch_size,
            n_threads=self.settings.threads,
            n_threads_batch=self.settings.threads,
            n_gpu_layers=self.settings.gpu_layers,
            verbose=False,
        )
        return self._llama._model

    def _unload(self) -> None:
        if self._llama is not None:
            self._llama.close()
            self._llama = None

    async def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[Delta]:
        self._ready_model()
        self._check_prompt(prompt)
        if self._waiting >= self.settings.max_queue:
            raise self._overloaded(self._waiting)
        grammar = None
        if params.json_schema is not None:
            # A large schema takes a while to compile: off the event loop.
            grammar = await asyncio.to_thread(self._grammar, params.json_schema)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()

        def post(item: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        executor = self._executor
        if executor is None:
            raise EngineUnavailable(f"model {self.settings.model_id} is stopped")
        job = _Job(prompt, params, grammar, post)
        with self._counts:
            self._waiting += 1
        future = asyncio.wrap_future(executor.submit(self._run_job, job))
        try:
            async for delta in relay(queue, _DONE):
                yield delta
        finally:
            job.cancel.set()
            # The worker must be done with this job before the caller moves on.
            with contextlib.suppress(Exception):
                await asyncio.shield(future)

    def _grammar(self, schema: dict[str, Any]) -> LlamaGrammar:
        from llama_cpp.llama_grammar import LlamaGrammar

        return LlamaGrammar.from_string(self.json_grammar(schema), verbose=False)

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
            self._took(time.perf_counter() - started)
            job.post(_DONE)

    def _decode(self, llama: llama_cpp.Llama, job: _Job) -> None:
        import llama_cpp

        params = job.params
        llama.set_seed(params.seed if params.seed is not None else random.getrandbits(31))
        capture = LogprobCapture(llama, params.top_logprobs) if params.logprobs else None
        processors = capture.processors() if capture else llama_cpp.LogitsProcessorList()
        if params.logit_bias:
            processors.append(_logit_bias(params.logit_bias))
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
            logits_processor=processors or None,
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


def _logit_bias(
    biases: tuple[tuple[int, float], ...],
) -> Callable[[npt.NDArray[np.intc], npt.NDArray[np.single]], npt.NDArray[np.single]]:
    """A logits processor adding each bias to its token's logit."""
    tokens = np.array([token for token, _ in biases], dtype=np.intc)
    values = np.array([bias for _, bias in biases], dtype=np.single)

    def apply(
        _input_ids: npt.NDArray[np.intc], scores: npt.NDArray[np.single]
    ) -> npt.NDArray[np.single]:
        scores[tokens] += values
        return scores

    return apply
