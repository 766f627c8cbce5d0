"""The batching llama.cpp engine: ``parallel`` requests decoded together in one context.

The event loop side lives here: a request is checked, given its sampler chain, queued
for the scheduler thread (``scheduler.Scheduler``), and its deltas come back through an
asyncio queue. Closing the async iterator (the client went away) cancels the request;
the scheduler frees its slot before its next decode step, and a waiting request takes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from backends.base import (
    Delta,
    EngineError,
    EngineUnavailable,
    Prompt,
    SamplingParams,
    UnsupportedRequest,
)
from backends.llamacpp.engine import LlamaCppEngine, LlamaCppSettings, relay
from backends.llamacpp.sampling import SlotSampler
from backends.llamacpp.scheduler import Scheduler, prompt_chunk
from backends.llamacpp.slots import RELEASED, Request

if TYPE_CHECKING:
    from llama_cpp._internals import LlamaModel


class BatchingEngine(LlamaCppEngine):
    def __init__(self, settings: LlamaCppSettings) -> None:
        super().__init__(settings)
        # Frees the scheduler, the context and the model, in that order.
        self._resources = contextlib.ExitStack()
        self._scheduler: Scheduler | None = None

    def _request_counts(self) -> tuple[int, int]:
        scheduler = self._scheduler
        if scheduler is None:
            return 0, 0
        return scheduler.running, len(scheduler.waiting)

    def _extra_stats(self) -> dict[str, float]:
        scheduler = self._scheduler
        if scheduler is None:
            return {}
        return {
            "slots": len(scheduler.slots),
            "prompt_tokens_evaluated": scheduler.prompt_tokens_evaluated,
            "prompt_tokens_reused": scheduler.prompt_tokens_reused,
            "decode_steps": scheduler.steps,
        }

    def _load(self) -> LlamaModel:
        import llama_cpp
        from llama_cpp._internals import LlamaModel

        # Keep llama.cpp's own logging to errors, as Llama(verbose=False) does.
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        settings = self.settings
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = settings.gpu_layers if settings.gpu_layers >= 0 else 0x7FFFFFFF
        model = LlamaModel(path_model=str(settings.path), params=model_params, verbose=False)
        self._resources.callback(model.close)
        params = llama_cpp.llama_context_default_params()
        # One sequence per slot, each with context_length cells of its own.
        params.n_seq_max = settings.parallel
        params.kv_unified = False
        params.n_ctx = settings.parallel * settings.context_length
        # A llama_decode call holds one token per slot, or one prompt chunk.
        params.n_batch = params.n_ubatch = max(settings.parallel, prompt_chunk(settings.batch_size))
        params.n_threads = params.n_threads_batch = settings.threads
        params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(model.model, params)
        if not ctx:
            self._resources.close()
            raise EngineError("llama.cpp could not create the context (out of memory?)")
        self._resources.callback(llama_cpp.llama_free, ctx)
        self._scheduler = Scheduler(
            model,
            ctx,
            slots=settings.parallel,
            batch_size=settings.batch_size,
            context_length=settings.context_length,
            max_queue=settings.max_queue,
            name=settings.model_id,
            took=self._took,
        )
        self._resources.callback(self._scheduler.stop)
        return model

    def _sampler(self, model: LlamaModel, params: SamplingParams) -> SlotSampler:
        grammar = None if params.json_schema is None else self.json_grammar(params.json_schema)
        try:
            return SlotSampler(model, params, grammar)
        except ValueError as exc:
            raise UnsupportedRequest(str(exc), "response_format") from exc

    def _unload(self) -> None:
        self._resources.close()
        self._scheduler = None

    async def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[Delta]:
        model = self._ready_model()
        scheduler = self._scheduler
        if scheduler is None:
            raise EngineUnavailable(f"model {self.settings.model_id} is stopped")
        self._check_prompt(prompt)
        # Compiling a grammar and parsing it into a sampler may take a while for a large
        # schema: off the event loop, so other requests' deltas keep flowing.
        sampler = await asyncio.to_thread(self._sampler, model, params)
        queue: asyncio.Queue[object] = asyncio.Queue()
        request = Request(
            prompt.tokens,
            params,
            sampler,
            scheduler.outbox,
            asyncio.get_running_loop(),
            queue,
        )
        try:
            if not scheduler.submit(request):
                raise self._overloaded(self.settings.max_queue)
        except EngineError:
            request.sampler.close()
            raise
        released = False
        try:
            async for delta in relay(queue, RELEASED):
                yield delta
            released = True
        finally:
            if not released:
                scheduler.cancel(request)
