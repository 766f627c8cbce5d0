"""The two contracts engines implement, and the types they share; nothing else.

An engine is one loaded model. Every engine has a lifecycle (``start``, ``stop``), a
``status``, live figures (``stats``) and ``Capabilities``: that is ``Engine``. Beyond it,
an engine is one of two kinds, and implements only the methods of its kind:

- A ``TokenEngine`` (llama.cpp, in-process) renders and samples itself: the serving
  layer (``appliance``) renders a request into a ``Prompt``, asks for a stream of
  ``Delta``s with ``SamplingParams``, and computes embeddings of prompts.
- A ``ProxyEngine`` (a supervised vLLM, remote replicas) puts another OpenAI-compatible
  server behind Radiance. The upstream applies its own chat template and counts its own
  tokens, so there is no prompt to render here: ``forward`` takes the OpenAI request body
  (already validated, admitted and rewritten by the serving layer) and returns the
  upstream's ``UpstreamReply``: a whole JSON body, or its SSE events as they arrive. The
  serving layer reads the usage the upstream reports from the reply, so billing stays
  exact, and keeps keys, limits and the ledger as for any engine.

The serving layer picks how to serve a request from the contract the engine implements
(``isinstance``), and reads ``Capabilities`` to refuse what an engine cannot honour. The
replicas of a deployment (``backends.replicas``) hold engines of either kind. This module
imports no web framework and no engine library, so a CPU box never imports vLLM.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

FinishReason = Literal["stop", "length", "cancelled"]


class EngineError(Exception):
    """An engine failed to do what it was asked."""


class EngineOverloaded(EngineError):
    """The engine's queue is full; the caller should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EngineUnavailable(EngineError):
    """The engine is not loaded (still loading, failed, or stopped)."""


class UnknownToken(EngineError):
    """A token id outside the model's vocabulary (llama.cpp aborts the process on one)."""

    def __init__(self, token: int, vocab_size: int) -> None:
        super().__init__(f"token id {token} is not in the vocabulary (0 to {vocab_size - 1})")
        self.token = token
        self.vocab_size = vocab_size


def check_tokens(tokens: Sequence[int], vocab_size: int) -> None:
    """Raise UnknownToken for the first id outside 0 <= id < vocab_size."""
    if tokens and (min(tokens) < 0 or max(tokens) >= vocab_size):
        raise UnknownToken(next(t for t in tokens if not 0 <= t < vocab_size), vocab_size)


class UnsupportedRequest(EngineError):
    """The request asks for something this engine cannot do; ``param`` names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class PromptTooLong(EngineError):
    """The prompt does not fit the context window."""

    def __init__(self, prompt_tokens: int, context_length: int) -> None:
        super().__init__(f"prompt has {prompt_tokens} tokens, context is {context_length}")
        self.prompt_tokens = prompt_tokens
        self.context_length = context_length


class UpstreamError(EngineError):
    """An upstream server answered with an error: its HTTP status and OpenAI error fields.

    ``retry_after`` is set when the upstream said when to retry (or when no replica could
    take the request and another try later may succeed).
    """

    def __init__(
        self,
        message: str,
        status: int,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code
        self.retry_after = retry_after


class EngineStatus(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do; the serving layer answers 400 for the rest."""

    chat: bool = True
    completions: bool = True
    embeddings: bool = False
    logprobs: bool = False
    json_schema: bool = False
    tools: bool = False
    # Sequences decoded at the same time by one model (1 = requests are queued).
    parallel: int = 1


@dataclass(frozen=True)
class Prompt:
    """A request rendered to what the model reads: the text and its tokens."""

    text: str
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one sequence. Values are already validated by the serving layer."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logprobs: bool = False
    top_logprobs: int = 0
    # (token id, bias) pairs added to those tokens' logits before sampling.
    logit_bias: tuple[tuple[int, float], ...] = ()
    # Constrain the output: a JSON schema, or {} for "any JSON object".
    json_schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class TopLogprob:
    token: str
    logprob: float
    bytes: tuple[int, ...]


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: tuple[int, ...]
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True)
class Delta:
    """One step of a generation: new text and the tokens that made it.

    The last delta of a sequence carries ``finish_reason``; ``tokens`` counts the
    tokens generated in this step (text may lag tokens while UTF-8 is incomplete).
    """

    text: str
    tokens: int
    logprobs: tuple[TokenLogprob, ...] = ()
    finish_reason: FinishReason | None = None


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]
    prompt_tokens: int


Endpoint = Literal["chat/completions", "completions", "embeddings"]


@dataclass
class UpstreamReply:
    """An upstream's answer to a forwarded request.

    Exactly one of ``body`` (a whole JSON response) and ``events`` (the JSON of the SSE
    events, `[DONE]` left out, in lists of those that arrived together) is set. ``close``
    releases the connection; closing before the end aborts the upstream's generation.
    ``deployment`` names the server that answered.
    """

    deployment: str
    close: Callable[[], Awaitable[None]]
    body: dict[str, Any] | None = None
    events: AsyncIterator[list[dict[str, Any]]] | None = None


@dataclass
class EngineStats:
    """Live figures an engine reports for metrics and the console."""

    running: int = 0
    waiting: int = 0
    load_seconds: float | None = None
    error: str | None = None
    extra: dict[str, float] = field(default_factory=dict)


class Engine(abc.ABC):
    """One loaded model: what every engine has, whichever kind it is."""

    # A class default; an engine whose abilities depend on its settings sets its own.
    capabilities: Capabilities = Capabilities()

    @property
    @abc.abstractmethod
    def status(self) -> EngineStatus: ...

    @abc.abstractmethod
    def stats(self) -> EngineStats: ...

    @abc.abstractmethod
    async def start(self) -> None:
        """Load the model; raise EngineError with the cause if it cannot be loaded."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop generating and free the model's memory."""


class TokenEngine(Engine):
    """An engine that renders prompts and samples their tokens itself."""

    @abc.abstractmethod
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
        """Apply the model's chat template and tokenize.

        The prompt holds exactly the BOS the template writes (or the one the tokenizer
        adds when it writes none), and client text never becomes a special token.
        ``continue_final_message`` ends the prompt inside the last (assistant) message
        for the model to continue; ``template_kwargs`` (a request's
        ``chat_template_kwargs``, e.g. ``enable_thinking``) and ``reasoning_effort`` are
        template variables. A template that does not read ``tools`` gets them as
        Hermes-style instructions (``<tool_call>`` blocks) in the system message.
        """

    @abc.abstractmethod
    def render_text(self, text: str) -> Prompt:
        """Tokenize a raw completion prompt."""

    @abc.abstractmethod
    def detokenize(self, tokens: Sequence[int]) -> str: ...

    @property
    def chat_template(self) -> str | None:
        """The Jinja chat template prompts are rendered with (its markers tell which
        tool-call and reasoning format the model writes); None while unknown."""
        return None

    @property
    def vocab_size(self) -> int | None:
        """How many token ids the model knows (valid ids are 0 <= id < vocab_size); None
        while the engine does not know (token ids are then not checked here)."""
        return None

    @abc.abstractmethod
    def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[Delta]:
        """Stream the deltas of one sequence.

        Closing the iterator (the client went away) cancels the generation promptly.
        """

    def generate_choices(
        self, prompt: Prompt, choices: Sequence[SamplingParams]
    ) -> list[AsyncIterator[Delta]]:
        """Stream several sequences of one prompt (the ``n`` choices of a request).

        Each iterator gives what ``generate`` gives for its params; an engine may decode
        them together and evaluate the prompt once. Starting any of them starts them all.
        """
        return [self.generate(prompt, params) for params in choices]

    async def embed(self, inputs: Sequence[Prompt]) -> Embeddings:
        """One vector per prompt, for an engine whose ``capabilities.embeddings`` is set."""
        raise EngineError("this engine does not compute embeddings")


class ProxyEngine(Engine):
    """An engine that forwards OpenAI requests to an upstream server, which renders,
    samples and counts."""

    capabilities = Capabilities(
        embeddings=True, logprobs=True, json_schema=True, tools=True, parallel=64
    )

    @abc.abstractmethod
    async def forward(
        self, endpoint: Endpoint, body: dict[str, Any], *, stream: bool
    ) -> UpstreamReply:
        """Send an OpenAI request body to the upstream.

        Raises EngineUnavailable when no upstream can take it (the caller answers 503 with
        Retry-After), UpstreamError for an error the upstream answered. Errors while
        reading ``events`` are EngineErrors too.
        """
