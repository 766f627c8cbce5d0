"""Examples as token ids and labels, through the base model's own chat template.

The conversation is rendered once; the text of each trained assistant message (weight 1)
is found by rendering the conversation up to it (with the generation prompt) and through
it: what lies between is what the model must write, ``<|im_end|>`` included. Tokens that
start inside such a span keep their id as label; all others get ``IGNORE`` (-100), so the
loss counts only what the assistant says.

The rendered text is tokenized as a whole, so a special token's text written inside a
message (``<|im_end|>``) becomes that special token, as in the rendering of most
trainers; the server may refuse such content when it checks the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from backends.training.examples import Example, ExampleError

IGNORE = -100


class ChatTokenizer(Protocol):
    """What this module needs of a transformers tokenizer."""

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...

    def __call__(self, text: str, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class Tokenized:
    line: int
    ids: list[int]
    labels: list[int]  # IGNORE where no loss is taken

    @property
    def trained(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


def _render(
    tokenizer: ChatTokenizer,
    messages: Sequence[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    *,
    generation_prompt: bool,
) -> str:
    clean = [{k: v for k, v in m.items() if k != "weight"} for m in messages]
    text = tokenizer.apply_chat_template(
        clean, tools=tools, tokenize=False, add_generation_prompt=generation_prompt
    )
    return str(text)


def tokenize_example(tokenizer: ChatTokenizer, example: Example) -> Tokenized:
    """The example's ids and labels; ValueError if the template cannot be split."""
    messages, tools = example.messages, example.tools
    text = _render(tokenizer, messages, tools, generation_prompt=False)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or message.get("weight", 1) == 0:
            continue
        before = _render(tokenizer, messages[:i], tools, generation_prompt=True)
        through = _render(tokenizer, messages[: i + 1], tools, generation_prompt=False)
        if not (text.startswith(through) and through.startswith(before)):
            raise ValueError("the chat template does not render it message by message")
        spans.append((len(before), len(through)))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    labels = [
        token if any(start <= begin < end for start, end in spans) else IGNORE
        for token, (begin, _stop) in zip(ids, encoded["offset_mapping"], strict=True)
    ]
    return Tokenized(example.line, ids, labels)


def tokenize_all(
    tokenizer: ChatTokenizer, examples: Sequence[Example], context_length: int
) -> tuple[list[Tokenized], list[ExampleError]]:
    """Every example tokenized, or the errors naming their lines."""
    done: list[Tokenized] = []
    errors: list[ExampleError] = []
    for example in examples:
        try:
            item = tokenize_example(tokenizer, example)
        except Exception as exc:  # the template's own errors (jinja2) included
            errors.append(ExampleError(example.line, "messages", f"cannot render: {exc}"))
            continue
        if len(item.ids) > context_length:
            errors.append(
                ExampleError(
                    example.line,
                    "messages",
                    f"the example is {len(item.ids)} tokens long, more than the model's "
                    f"context of {context_length}",
                )
            )
        elif not item.trained:
            errors.append(
                ExampleError(example.line, "messages", "no assistant message with weight 1")
            )
        else:
            done.append(item)
    return done, errors
