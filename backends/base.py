"""The contract every engine implements, and nothing else.

The serving layer (``appliance``) sees engines only through these types: it renders a
request into a ``Prompt``, asks for a stream of ``Delta``s with ``SamplingParams``, and
reads ``Capabilities`` to refuse what an engine cannot honour. This module imports no
web framework and no engine library, so a CPU box never imports vLLM.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterator, Sequence
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


@dataclass
class EngineStats:
    """Live figures an engine reports for metrics and the console."""

    running: int = 0
    waiting: int = 0
    load_seconds: float | None = None
    error: str | None = None
    extra: dict[str, float] = field(default_factory=dict)


class Backend(abc.ABC):
    """One loaded model on one engine."""

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

    @abc.abstractmethod
    def render_chat(
        self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None
    ) -> Prompt:
        """Apply the model's chat template and tokenize."""

    @abc.abstractmethod
    def render_text(self, text: str) -> Prompt:
        """Tokenize a raw completion prompt."""

    @abc.abstractmethod
    def detokenize(self, tokens: Sequence[int]) -> str: ...

    @abc.abstractmethod
    def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[Delta]:
        """Stream the deltas of one sequence.

        Closing the iterator (the client went away) cancels the generation promptly.
        """

    async def embed(self, inputs: Sequence[Prompt]) -> Embeddings:
        raise EngineError("this engine does not compute embeddings")
