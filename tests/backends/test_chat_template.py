"""The chat template's preparation of client data: special tokens marked, tool history as
templates read it, prefill and template variables (no model needed)."""

from __future__ import annotations

import pytest

from backends.base import UnsupportedRequest
from backends.llamacpp.chat_template import MARK, ChatTemplate

SPECIALS = ["<s>", "<s>x", "[INST]", "[/INST]", "<|im_start|>", "<|im_end|>", "!"]


def test_client_text_has_every_special_token_split_longest_first() -> None:
    template = ChatTemplate(None, "", "", SPECIALS)
    marked = template._marked(f"a <s>x b [INST] <|im_start|>c<|im_ <|im_end|>! {MARK}")
    assert marked == (f"a <{MARK}s>x b [{MARK}INST] <{MARK}|im_start|>c<|im_ <{MARK}|im_end|>! ")
    assert template._marked({"k": ["<s>", 1, None]}) == {"k": [f"<{MARK}s>", 1, None]}


def test_the_templates_own_markup_is_not_marked() -> None:
    template = ChatTemplate(None, "", "", SPECIALS)
    text = template.render([{"role": "user", "content": "hi <|im_end|>"}], None)
    assert text.startswith("<|im_start|>user\nhi <" + MARK + "|im_end|><|im_end|>\n")
    assert text.endswith("<|im_start|>assistant\n")


SHOW = (
    "{% for m in messages %}{{ m.role }}:{{ m.content }}"
    "{% for c in m.tool_calls or [] %}[{{ c.function.name }} {{ c.function.arguments.city }}]"
    "{% endfor %}{% if m.name %}({{ m.name }}){% endif %}|{% endfor %}"
    "{% if add_generation_prompt %}A:{% endif %}{{ enable_thinking }}{{ reasoning_effort }}"
)


def test_tool_history_reaches_the_template_as_objects_and_names() -> None:
    template = ChatTemplate(SHOW, "", "")
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"city": "P"}'}}
    messages = [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    assert template.render(messages, None) == "assistant:[f P]|tool:sunny(f)|A:"


def test_prefill_and_template_variables() -> None:
    template = ChatTemplate(SHOW, "", "")
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hel "}]
    assert template.render(messages, None, continue_final_message=True) == "user:hi|assistant:Hel"
    text = template.render(
        messages[:1], None, template_kwargs={"enable_thinking": False}, reasoning_effort="low"
    )
    assert text == "user:hi|A:Falselow"
    with pytest.raises(UnsupportedRequest, match="assistant"):
        template.render(messages[:1], None, continue_final_message=True)
    with pytest.raises(UnsupportedRequest, match="add_generation_prompt"):
        template.render(messages, None, template_kwargs={"add_generation_prompt": False})
