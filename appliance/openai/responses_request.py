"""A /v1/responses request as the chat completion Radiance serves it.

The Responses API is served on the chat path, so keys, tiers, budgets, the ledger,
replicas and metrics apply unchanged. `ResponsePlan.chat_body` is the chat request: the
instructions as a system message, the conversation the request continues (read from the
stored responses), then its own input items as messages. Every field is honoured or
refused with a 400 that names it in the Responses request's terms, never silently
dropped.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec

from appliance.conversion import ConversionFailed, convert
from appliance.errors import ApiError, InvalidRequest
from appliance.openai.decoding import decode_request, invalid_value
from appliance.openai.fields import NO_EFFECT, shown, unknown_fields
from appliance.openai.responses_protocol import (
    ITEM_KINDS,
    SKIPPED_ITEMS,
    FunctionCall,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionChoice,
    InputItem,
    InputPart,
    InputText,
    MessageItem,
    NamedFunction,
    OutputItem,
    OutputMessage,
    OutputText,
    ResponseFormat,
    ResponsesRequest,
    ResponseText,
    ResponseTool,
    StoredFunctionCallOutput,
    StoredItem,
    StoredMessage,
)
from appliance.state.responses import StoredResponse

# Fields OpenAI's Responses API defines that change nothing Radiance generates, or whose
# value here asks for nothing.
_NO_EFFECT = NO_EFFECT | {"stream_options", "max_tool_calls", "background_tasks"}
_HARMLESS: dict[str, tuple[Any, ...]] = {
    "truncation": ("disabled",),
    "include": ([],),
    "background": (False,),
    "reasoning": ({},),
}


def new_item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


@dataclass
class ResponsePlan:
    """What a decoded request asks, and the chat request that serves it."""

    request: ResponsesRequest
    items: list[InputItem]
    stored_items: list[StoredItem]
    conversation: list[StoredResponse] = field(default_factory=list)

    @property
    def store(self) -> bool:
        return self.request.store is not False

    def chat_body(self) -> dict[str, Any]:
        request = self.request
        messages: list[dict[str, Any]] = []
        if request.instructions:
            messages.append({"role": "system", "content": request.instructions})
        for stored in self.conversation:
            for item in stored.input_items:
                _add_stored(messages, item)
            for output in stored.response.output:
                _add_output(messages, output)
        for stored_item in self.stored_items:
            _add_stored(messages, stored_item)
        body: dict[str, Any] = {"model": request.model, "messages": messages}
        for name in ("temperature", "top_p", "parallel_tool_calls", "seed", "user"):
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        if request.max_output_tokens is not None:
            body["max_completion_tokens"] = request.max_output_tokens
        if request.tools:
            body["tools"] = [
                {"type": "function", "function": msgspec.to_builtins(tool)} for tool in self.tools()
            ]
        if request.tool_choice is not None:
            body["tool_choice"] = _chat_tool_choice(request.tool_choice)
        fmt = self.text_format()
        if fmt.type == "json_object":
            body["response_format"] = {"type": "json_object"}
        elif fmt.type == "json_schema":
            schema = {"name": fmt.name or "response", "schema": fmt.schema, "strict": fmt.strict}
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        if request.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def tools(self) -> list[ResponseTool]:
        return [
            ResponseTool(
                name=tool.name or "",
                description=tool.description,
                parameters=tool.parameters,
                strict=tool.strict,
            )
            for tool in self.request.tools or []
        ]

    def tool_choice(self) -> Any:
        choice = self.request.tool_choice
        if choice is None:
            return "auto"
        if isinstance(choice, FunctionChoice):
            return NamedFunction(name=choice.name or "")
        return choice

    def text_format(self) -> ResponseFormat:
        text = self.request.text
        if text is None or text.format is None:
            return ResponseFormat(type="text")
        fmt = text.format
        if fmt.type == "json_schema":
            return ResponseFormat(
                type="json_schema",
                name=fmt.name or "response",
                schema=fmt.schema,
                description=fmt.description,
                strict=fmt.strict,
            )
        return ResponseFormat(type=fmt.type)

    def text(self) -> ResponseText:
        return ResponseText(format=self.text_format())


def responses_request(raw: bytes) -> ResponsePlan:
    """Decode and check a request: 400 naming the field for anything it cannot serve."""
    request, data = decode_request(raw, ResponsesRequest)
    for name in unknown_fields(data, ResponsesRequest.__struct_fields__):
        value = data.get(name)
        if name in _NO_EFFECT or value in _HARMLESS.get(name, ()):
            continue
        if name == "reasoning" and _no_reasoning(value):
            continue
        raise InvalidRequest(
            f"the parameter `{shown(name)}` is not supported on /v1/responses; leave it out",
            param=shown(name),
            code="unsupported_parameter",
        )
    for index, tool in enumerate(request.tools or []):
        if tool.type != "function":
            raise InvalidRequest(
                f"tools of type `{shown(tool.type)}` are not supported; send function tools",
                param=f"tools[{index}].type",
                code="unsupported_tool",
            )
        if tool.name is None:
            raise InvalidRequest(
                "missing required parameter `tools[{index}].name`", param=f"tools[{index}].name"
            )
    choice = request.tool_choice
    if isinstance(choice, FunctionChoice) and (choice.type != "function" or choice.name is None):
        raise InvalidRequest(
            "tool_choice must be none, auto, required or {type: function, name}",
            param="tool_choice",
        )
    verbosity = request.text.verbosity if request.text else None
    if verbosity not in (None, "medium"):
        raise InvalidRequest(
            "text.verbosity other than `medium` is not supported; leave it out",
            param="text.verbosity",
            code="unsupported_parameter",
        )
    fmt = request.text.format if request.text else None
    if fmt is not None and fmt.type == "json_schema" and fmt.schema is None:
        raise InvalidRequest(
            "missing required parameter `text.format.schema`", param="text.format.schema"
        )
    if isinstance(request.input, str):
        items: list[InputItem] = [MessageItem(role="user", content=request.input)]
    else:
        items = [
            input_item(item, index)
            for index, item in enumerate(request.input)
            if item.get("type") not in SKIPPED_ITEMS
        ]
        if not items:
            raise InvalidRequest(
                "`input` holds no message or function call item to answer", param="input"
            )
    return ResponsePlan(request, items, [_stored(item) for item in items])


def _no_reasoning(value: Any) -> bool:
    """`reasoning` that asks for none: `{}`, nulls, or `effort: "none"` (what a model
    that does not reason does anyway)."""
    if not isinstance(value, dict):
        return False
    return value.get("effort") in (None, "none") and not value.get("summary")


def input_item(data: dict[str, Any], index: int) -> InputItem:
    """One `input` item by its type (a message when it names none)."""
    kind = data.get("type", "message")
    if not isinstance(kind, str) or kind not in ITEM_KINDS:
        raise InvalidRequest(
            f"input items of type `{shown(str(kind))}` are not supported; send message, "
            "function_call and function_call_output items",
            param=f"input[{index}].type",
            code="unsupported_input_item",
        )
    try:
        item = convert(data, ITEM_KINDS[kind])
    except ConversionFailed as failed:
        error = invalid_value(failed.failure)
        where = f"input[{index}]" + (f".{error.param}" if error.param else "")
        message = error.message.replace(f"`{error.param}`", f"`{where}`")
        raise InvalidRequest(message, param=where) from None
    if isinstance(item, MessageItem | FunctionCallOutputItem):
        _text(item, index)  # text parts only
    return item


def _text(item: MessageItem | FunctionCallOutputItem, index: int) -> str:
    field = "content" if isinstance(item, MessageItem) else "output"
    content = item.content if isinstance(item, MessageItem) else item.output
    if isinstance(content, str):
        return content
    texts = []
    for number, part in enumerate(content):
        text = part.refusal if part.type == "refusal" else part.text
        if text is None:
            raise InvalidRequest(
                f"a `{part.type}` part needs its text",
                param=f"input[{index}].{field}[{number}].text",
            )
        texts.append(text)
    return "".join(texts)


def _part_text(part: InputPart) -> str:
    return (part.refusal if part.type == "refusal" else part.text) or ""


def _stored(item: InputItem) -> StoredItem:
    """An input item as /v1/responses/{id}/input_items lists it, with an id."""
    if isinstance(item, MessageItem):
        content = item.content
        texts = [content] if isinstance(content, str) else [_part_text(p) for p in content]
        parts: list[InputText | OutputText] = [
            OutputText(text=text) if item.role == "assistant" else InputText(text=text)
            for text in texts
        ]
        return StoredMessage(id=item.id or new_item_id("msg"), role=item.role, content=parts)
    if isinstance(item, FunctionCallItem):
        return FunctionCall(
            id=item.id or new_item_id("fc"),
            call_id=item.call_id,
            name=item.name,
            arguments=item.arguments,
            status="completed",
        )
    output = item.output if isinstance(item.output, str) else "".join(map(_part_text, item.output))
    return StoredFunctionCallOutput(
        id=item.id or new_item_id("fco"), call_id=item.call_id, output=output
    )


def _add_stored(messages: list[dict[str, Any]], item: StoredItem) -> None:
    if isinstance(item, StoredMessage):
        text = "".join(part.text for part in item.content)
        messages.append({"role": item.role, "content": text})
    elif isinstance(item, FunctionCall):
        _add_call(messages, item)
    else:
        messages.append({"role": "tool", "tool_call_id": item.call_id, "content": item.output})


def _add_output(messages: list[dict[str, Any]], item: OutputItem) -> None:
    if isinstance(item, FunctionCall):
        _add_call(messages, item)
    elif isinstance(item, OutputMessage):
        text = "".join(part.text for part in item.content)
        messages.append({"role": "assistant", "content": text})


def _add_call(messages: list[dict[str, Any]], call: FunctionCall) -> None:
    """A function call joins the assistant message before it, as chat templates expect."""
    tool_call = {
        "id": call.call_id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(tool_call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [tool_call]})


def _chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, FunctionChoice):
        return {"type": "function", "function": {"name": choice.name}}
    return choice


# Chat request parameters as the Responses request names them, for errors the chat path
# raises (longest prefix first).
_PARAMS = (
    ("max_completion_tokens", "max_output_tokens"),
    ("response_format.json_schema.schema", "text.format.schema"),
    ("response_format.json_schema", "text.format"),
    ("response_format", "text.format"),
    ("tool_choice.function.name", "tool_choice.name"),
    ("messages", "input"),
)


def responses_error(error: ApiError) -> ApiError:
    """An error of the chat path with its `param` in the Responses request's terms."""
    param = error.param
    if param is None:
        return error
    renamed = param
    for chat, responses in _PARAMS:
        if param == chat or param.startswith((chat + ".", chat + "[")):
            renamed = responses + param[len(chat) :] if chat != "messages" else "input"
            break
    else:
        if param.startswith("tools[") and ".function." in param:
            renamed = param.replace(".function.", ".", 1)
    if renamed != param:
        error.message = error.message.replace(f"`{param}`", f"`{renamed}`")
        error.param = renamed
    return error
