"""Log-probabilities of sampled tokens, read from the raw logits before sampling.

OpenAI reports the model's own distribution, so penalties, grammars and temperature
do not enter: a log-softmax over the raw logits of the step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from backends.base import TokenLogprob, TopLogprob

if TYPE_CHECKING:
    import llama_cpp

Logits = npt.NDArray[np.float32]
# A token's text and bytes, special tokens written out.
Piece = Callable[[int], tuple[str, tuple[int, ...]]]


def token_logprob(logits: Logits, token: int, top: int, piece: Piece) -> TokenLogprob:
    """The sampled token's logprob and the ``top`` most likely alternatives."""
    peak = float(logits.max())
    logsum = peak + float(np.log(np.exp(logits - peak).sum()))
    alternatives: list[TopLogprob] = []
    if top:
        best = np.argpartition(-logits, top)[:top]
        for index in best[np.argsort(-logits[best])]:
            text, raw = piece(int(index))
            alternatives.append(TopLogprob(text, float(logits[index]) - logsum, raw))
    text, raw = piece(token)
    return TokenLogprob(text, float(logits[token]) - logsum, raw, tuple(alternatives))


class LogprobCapture:
    """A logits processor that keeps the last logits so each token's logprob can be read."""

    def __init__(self, llama: llama_cpp.Llama, top: int) -> None:
        self._llama = llama
        self._top = top
        self._logits: Logits | None = None

    def _keep(
        self, input_ids: npt.NDArray[np.intc], scores: npt.NDArray[np.single]
    ) -> npt.NDArray[np.single]:
        self._logits = np.array(scores, dtype=np.float32, copy=True)
        return scores

    def processors(self) -> llama_cpp.LogitsProcessorList:
        import llama_cpp

        return llama_cpp.LogitsProcessorList([self._keep])

    def _piece(self, token: int) -> tuple[str, tuple[int, ...]]:
        raw = self._llama.detokenize([token], special=True)
        return raw.decode("utf-8", errors="replace"), tuple(raw)

    def entry(self, token: int) -> TokenLogprob:
        if self._logits is None:
            text, raw = self._piece(token)
            return TokenLogprob(text, 0.0, raw)
        return token_logprob(self._logits, token, self._top, self._piece)
