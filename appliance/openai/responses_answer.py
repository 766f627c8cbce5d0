"""A chat completion's answer as a Response: the object every state of one response
shares (`ResponseShell`), and a whole chat.completion read as one (`whole_response`).

Both engines' chat answers come here the same way, so whatever served the request, the
Response is built here; a stream's events are made by `responses_stream`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from appliance.openai.responses_protocol import (
    FunctionCall,
    IncompleteDetails,
    ItemStatus,
    OutputItem,
    OutputMessage,
    OutputText,
    OutputTokensDetails,
    ReasoningItem,
    ReasoningText,
    Response,
    ResponseError,
    ResponseUsage,
    Status,
)
from appliance.openai.responses_request import ResponsePlan, new_item_id


@dataclass
class ResponseShell:
    """What every state of one response shares: its request, id, model and start."""

    plan: ResponsePlan
    id: str
    model: str
    created_at: int = field(default_factory=lambda: int(time.time()))

    def response(
        self,
        status: Status,
        output: list[OutputItem],
        usage: dict[str, Any] | None = None,
        error: ResponseError | None = None,
    ) -> Response:
        request = self.plan.request
        done = status in ("completed", "incomplete", "failed")
        return Response(
            id=self.id,
            created_at=self.created_at,
            completed_at=int(time.time()) if status == "completed" else None,
            status=status,
            error=error,
            incomplete_details=(
                IncompleteDetails(reason="max_output_tokens") if status == "incomplete" else None
            ),
            instructions=request.instructions,
            max_output_tokens=request.max_output_tokens,
            model=self.model,
            output=output,
            output_text="".join(
                part.text
                for item in output
                if isinstance(item, OutputMessage)
                for part in item.content
            ),
            parallel_tool_calls=request.parallel_tool_calls is not False,
            previous_response_id=request.previous_response_id,
            store=self.plan.store,
            temperature=request.temperature,
            text=self.plan.text(),
            tool_choice=self.plan.tool_choice(),
            tools=self.plan.tools(),
            top_p=request.top_p,
            usage=_usage(usage) if done and usage is not None else None,
            user=request.user,
            metadata=dict(request.metadata or {}),
        )


def _usage(usage: dict[str, Any]) -> ResponseUsage:
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    details = usage.get("completion_tokens_details")
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return ResponseUsage(
        input_tokens=prompt,
        output_tokens=completion,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=int(reasoning or 0)),
        total_tokens=prompt + completion,
    )


def whole_response(shell: ResponseShell, completion: dict[str, Any]) -> Response:
    """A non-streamed chat.completion as the Response."""
    choices = completion.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    status = status_of(choice.get("finish_reason"))
    output: list[OutputItem] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        output.append(ReasoningItem(id=new_item_id("rs"), content=[ReasoningText(text=reasoning)]))
    content = message.get("content")
    calls = message.get("tool_calls") or []
    if isinstance(content, str) and (content or not calls):
        item_status: ItemStatus = "incomplete" if status == "incomplete" else "completed"
        output.append(
            OutputMessage(
                id=new_item_id("msg"), status=item_status, content=[OutputText(text=content)]
            )
        )
    for call in calls:
        function = call.get("function") or {}
        output.append(
            FunctionCall(
                id=new_item_id("fc"),
                call_id=str(call.get("id") or new_item_id("call")),
                name=str(function.get("name") or ""),
                arguments=str(function.get("arguments") or ""),
                status="completed",
            )
        )
    return shell.response(status, output, completion.get("usage"))


def status_of(finish_reason: Any) -> Status:
    return "incomplete" if finish_reason == "length" else "completed"
