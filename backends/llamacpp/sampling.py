"""One sequence's llama.cpp sampler chain, built from its SamplingParams.

The chain samples as the one llama-cpp-python's ``Llama.generate`` builds for the same
values (the logit bias, penalties over the last 64 generated tokens, the grammar, then
greedy at temperature 0, else top-k off, typical off, top-p, min-p off, temperature and a
seeded draw), less the stages that would leave every logit as it is: top-k 0, typical 1,
min-p 0, top-p 1 and neutral penalties return at once in llama.cpp, draw nothing from the
generator, and so can be left out without changing a token. It is the engine's only
sampling path, whatever the number of slots. Building it reads only the vocabulary, so it
happens off the scheduler's thread; the scheduler samples with it and frees it.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from backends.base import SamplingParams

if TYPE_CHECKING:
    import llama_cpp
    from llama_cpp._internals import LlamaModel

PENALTY_LAST_N = 64  # llama-cpp-python's default last_n_tokens_size


class SlotSampler:
    def __init__(self, model: LlamaModel, params: SamplingParams, grammar: str | None) -> None:
        import llama_cpp

        self._chain: llama_cpp.llama_sampler_p | None = llama_cpp.llama_sampler_chain_init(
            llama_cpp.llama_sampler_chain_default_params()
        )
        if params.logit_bias:
            biases = (llama_cpp.llama_logit_bias * len(params.logit_bias))(
                *(llama_cpp.llama_logit_bias(token, bias) for token, bias in params.logit_bias)
            )
            self._add(llama_cpp.llama_sampler_init_logit_bias(model.n_vocab(), len(biases), biases))
        if (params.repetition_penalty, params.frequency_penalty, params.presence_penalty) != (
            1.0,
            0.0,
            0.0,
        ):
            self._add(
                llama_cpp.llama_sampler_init_penalties(
                    model.n_vocab(),
                    PENALTY_LAST_N,
                    params.repetition_penalty,
                    params.frequency_penalty,
                    params.presence_penalty,
                )
            )
        if grammar is not None:
            parsed = llama_cpp.llama_sampler_init_grammar(model.vocab, grammar.encode(), b"root")
            if not parsed:
                self.close()
                raise ValueError("llama.cpp rejects the grammar")
            self._add(parsed)
        if params.temperature == 0:
            self._add(llama_cpp.llama_sampler_init_greedy())
            return
        seed = params.seed if params.seed is not None else random.getrandbits(31)
        if params.top_p < 1.0:
            self._add(llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
        self._add(llama_cpp.llama_sampler_init_temp(params.temperature))
        self._add(llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))

    def _add(self, sampler: llama_cpp.llama_sampler_p) -> None:
        import llama_cpp

        llama_cpp.llama_sampler_chain_add(self._chain, sampler)

    def sample(self, ctx: llama_cpp.llama_context_p, index: int) -> int:
        """Sample (and accept) a token from the ``index``-th output of the last decode."""
        import llama_cpp

        return int(llama_cpp.llama_sampler_sample(self._chain, ctx, index))

    def close(self) -> None:
        import llama_cpp

        chain, self._chain = self._chain, None
        if chain is not None:
            llama_cpp.llama_sampler_free(chain)
