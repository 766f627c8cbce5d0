"""The llama.cpp engine: one GGUF model in-process, ``parallel`` slots decoded together.

The model loads on a thread of the engine's own (which later also computes embeddings
with a second, lazily created context). Generation runs on the scheduler's thread
(``scheduler.Scheduler``): continuous batching over one context with one sequence per
slot; ``parallel: 1`` is the same engine with one slot, serving one request at a time.

The event loop side lives here: prompts are rendered with the GGUF's chat template and
checked, JSON schemas compiled to grammars, a request is given its sampler chain and
queued for the scheduler (at most ``max_queue`` wait; the rest get EngineOverloaded),
and its deltas come back through an asyncio queue. Closing the async iterator (the
client went away) cancels the request; the scheduler frees its slot before its next
decode step, and a waiting request takes it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import pathlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from backends.base import (
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
    SamplingParams,
    TokenEngine,
    UnsupportedRequest,
    check_tokens,
)
from backends.llamacpp.chat_template import MARK, ChatTemplate
from backends.llamacpp.choices import ChoiceGroup
from backends.llamacpp.embedding import EMBEDDING_CONTEXT, Embedder
from backends.llamacpp.grammar import JsonGrammars
from backends.llamacpp.lora import apply_adapter, load_adapter
from backends.llamacpp.sampling import SlotSampler
from backends.llamacpp.scheduler import Scheduler, batch_capacity
from backends.llamacpp.slots import Request

if TYPE_CHECKING:
    from llama_cpp._internals import LlamaModel

log = logging.getLogger(__name__)

T = TypeVar("T")


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
    # Sequences decoded together (slots); 1 = one request at a time.
    parallel: int = 1
    # A GGUF LoRA applied on top of the model (a fine-tune), at scale 1.
    adapter: pathlib.Path | None = None


class LlamaCppEngine(TokenEngine):
    """One GGUF model: loading, prompts, grammars, generation in slots, embeddings."""

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
        self._bos = -1
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        # Frees the scheduler, the context and the model, in that order.
        self._resources = contextlib.ExitStack()
        self._scheduler: Scheduler | None = None
        self._embedder = Embedder(
            settings.path, settings.context_length, settings.threads, settings.adapter
        )
        self._grammars = JsonGrammars()
        self._load_seconds: float | None = None
        self._error: str | None = None
        self._n_vocab: int | None = None
        self._seconds_per_request = 1.0

    @property
    def status(self) -> EngineStatus:
        return self._status

    def stats(self) -> EngineStats:
        scheduler = self._scheduler
        if scheduler is None:
            return EngineStats(load_seconds=self._load_seconds, error=self._error)
        return EngineStats(
            running=scheduler.running,
            waiting=len(scheduler.waiting),
            load_seconds=self._load_seconds,
            error=self._error,
            extra={
                "slots": len(scheduler.slots),
                "prompt_tokens_evaluated": scheduler.prompt_tokens_evaluated,
                "prompt_tokens_reused": scheduler.prompt_tokens_reused,
                "prompt_tokens_shared": scheduler.prompt_tokens_shared,
                "decode_steps": scheduler.steps,
            },
        )

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
            special_tokens=await self._in_worker(lambda: special_token_texts(model)),
        )
        # The BOS the tokenizer would add, given only when the template wrote none.
        self._bos = model.token_bos() if model.add_bos_token() else -1
        self._load_seconds = time.perf_counter() - started
        self._status = EngineStatus.READY

    def _load(self) -> LlamaModel:
        """Load the model and make the context and its scheduler (on the engine's thread)."""
        import llama_cpp
        from llama_cpp._internals import LlamaModel

        # Keep llama.cpp's own logging to errors, as Llama(verbose=False) does.
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        settings = self.settings
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = settings.gpu_layers if settings.gpu_layers >= 0 else 0x7FFFFFFF
        model = LlamaModel(path_model=str(settings.path), params=model_params, verbose=False)
        self._resources.callback(model.close)
        adapter = None
        if settings.adapter is not None:
            try:
                adapter = load_adapter(model, settings.adapter, self._resources)
            except EngineError:
                self._resources.close()
                raise
        params = llama_cpp.llama_context_default_params()
        # One sequence per slot, each with context_length cells of its own.
        params.n_seq_max = settings.parallel
        params.kv_unified = False
        params.n_ctx = settings.parallel * settings.context_length
        # A llama_decode call holds one token per slot, or one prompt chunk.
        params.n_batch = params.n_ubatch = batch_capacity(settings.parallel, settings.batch_size)
        params.n_threads = params.n_threads_batch = settings.threads
        params.no_perf = True
        if settings.parallel == 1:
            # One slot decodes with flash attention off, as llama-cpp-python's Llama does,
            # and so samples exactly as Llama.generate (greedy and seeded). With it on, a
            # lone query's logits differ by ~1e-3, enough to flip a greedy near-tie.
            params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        ctx = llama_cpp.llama_init_from_model(model.model, params)
        if not ctx:
            self._resources.close()
            raise EngineError("llama.cpp could not create the context (out of memory?)")
        self._resources.callback(llama_cpp.llama_free, ctx)
        if adapter is not None and settings.adapter is not None:
            try:
                apply_adapter(ctx, adapter, settings.adapter)
            except EngineError:
                self._resources.close()
                raise
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

    async def stop(self) -> None:
        executor, self._executor = self._executor, None
        self._status = EngineStatus.STOPPED
        if executor is None:
            return
        await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        await asyncio.to_thread(self._resources.close)
        self._scheduler = None
        self._embedder.close()
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
        self,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]] | None,
        *,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        template_kwargs: Mapping[str, Any] | None = None,
        reasoning_effort: str | None = None,
    ) -> Prompt:
        model = self._ready_model()
        assert self._template is not None
        marked = self._template.render(
            messages,
            tools,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message,
            template_kwargs=template_kwargs,
            reasoning_effort=reasoning_effort,
        )
        # The template's own special tokens are parsed; a client's, cut by MARK, are not.
        pieces = marked.split(MARK)
        tokens = [
            token
            for piece in pieces
            if piece
            for token in model.tokenize(piece.encode(), add_bos=False, special=True)
        ]
        if self._bos >= 0 and tokens[:1] != [self._bos]:
            tokens.insert(0, self._bos)
        return Prompt("".join(pieces), tuple(tokens))

    def render_text(self, text: str) -> Prompt:
        model = self._ready_model()
        return Prompt(text, tuple(model.tokenize(text.encode(), add_bos=True, special=False)))

    def detokenize(self, tokens: Sequence[int]) -> str:
        model = self._ready_model()
        check_tokens(tokens, model.n_vocab())
        return model.detokenize(list(tokens), special=True).decode("utf-8", errors="replace")

    @property
    def chat_template(self) -> str | None:
        return None if self._template is None else self._template.source

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

    def _sampler(self, model: LlamaModel, params: SamplingParams) -> SlotSampler:
        """The request's sampler chain; UnsupportedRequest for a schema that cannot be
        compiled to a grammar."""
        schema = params.json_schema
        grammar = None if schema is None else self._grammars.compile(model, schema)
        try:
            return SlotSampler(model, params, grammar)
        except ValueError as exc:
            raise UnsupportedRequest(str(exc), "response_format") from exc

    async def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[Delta]:
        (deltas,) = self.generate_choices(prompt, [params])
        try:
            async for delta in deltas:
                yield delta
        finally:
            await deltas.aclose()  # type: ignore[attr-defined]

    def generate_choices(
        self, prompt: Prompt, choices: Sequence[SamplingParams]
    ) -> list[AsyncIterator[Delta]]:
        """The choices are queued together, so the scheduler evaluates the prompt in one
        slot and gives the others a copy of its sequence (see scheduler.py)."""
        scheduler = self._scheduler
        group = ChoiceGroup(
            lambda: self._submit(prompt, list(choices)),
            lambda request: scheduler.cancel(request) if scheduler is not None else None,
        )
        return group.streams(len(choices))

    async def _submit(self, prompt: Prompt, choices: list[SamplingParams]) -> list[Request]:
        """Check the prompt, build every choice's sampler and queue them all."""
        model = self._ready_model()
        scheduler = self._scheduler
        if scheduler is None:
            raise EngineUnavailable(f"model {self.settings.model_id} is stopped")
        self._check_prompt(prompt)
        loop = asyncio.get_running_loop()
        requests: list[Request] = []
        try:
            for params in choices:
                # Compiling a grammar and parsing it into a sampler may take a while for a
                # large schema: off the event loop, so other requests' deltas keep flowing.
                # A chain without one takes microseconds: no thread hop for it.
                if params.json_schema is None:
                    sampler = self._sampler(model, params)
                else:
                    sampler = await asyncio.to_thread(self._sampler, model, params)
                queue: asyncio.Queue[object] = asyncio.Queue()
                requests.append(
                    Request(prompt.tokens, params, sampler, scheduler.outbox, loop, queue)
                )
            if not scheduler.submit_all(requests):
                raise self._overloaded(self.settings.max_queue)
        except BaseException:
            for request in requests:
                request.sampler.close()
            raise
        return requests

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
        vectors = await self._in_worker(lambda: self._embedder.embed([p.tokens for p in inputs]))
        return Embeddings(vectors=vectors, prompt_tokens=sum(len(p.tokens) for p in inputs))


def special_token_texts(model: LlamaModel) -> list[str]:
    """The text of every token only special mode matches (control and unknown tokens):
    what client text must never turn into. User-defined tokens (Qwen's ``<think>``,
    ``<tool_call>``) are matched in plain text too, by llama.cpp as by Hugging Face
    tokenizers, and templates split client text on them (``content.split('</think>')``)."""
    import llama_cpp

    kinds = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
    texts = []
    for token in range(model.n_vocab()):
        if model.token_get_attr(token) & kinds:
            text = model.detokenize([token], special=True).decode("utf-8", errors="replace")
            if text:
                texts.append(text)
    return texts
