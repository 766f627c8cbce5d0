"""Log-probabilities of sampled tokens, read from the raw logits before sampling.

OpenAI reports the model's own distribution, so penalties, grammars and temperature
do not enter: a log-softmax over the raw logits of the step.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from backends.base import TokenLogprob, TopLogprob

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
