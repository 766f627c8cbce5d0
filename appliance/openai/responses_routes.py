"""/v1/responses: OpenAI's Responses API, served on the chat path.

Creating a response runs the request as a chat completion inside the same lifecycle
(`inference.infer`), so keys, tiers, budgets, the ledger, replicas and metrics apply as they
do to chat. Stored responses are per key: another key's id reads as absent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter

from appliance.errors import ApiError, InvalidRequest, NotFound
from appliance.openai.answers import ErrorResponse, cursor_list
from appliance.openai.protocol import ChatCompletionRequest
from appliance.openai.responses_answer import ResponseShell, whole_response
from appliance.openai.responses_protocol import (
    RESPONSES_EXAMPLES,
    DeletedResponse,
    InputItemList,
    ResponsesRequest,
    ResponseStreamEvent,
)
from appliance.openai.responses_protocol import Response as ResponseObject
from appliance.openai.responses_request import ResponsePlan, responses_error, responses_request
from appliance.openai.responses_stream import ResponseEvents
from appliance.openapi_docs import documented
from appliance.request_context import RequestContext
from appliance.state.keys import ApiKey
from appliance.state.responses import ConversationTooLong, ResponseStore

from .inference import Answer, serve_chat
from .routes import INFERENCE_ERRORS, AnyRequest, _infer, request_inference

log = logging.getLogger(__name__)
MAX_ITEMS_PAGE = 100


def _missing(response_id: str, param: str | None = None) -> NotFound:
    return NotFound(
        f"No response with id `{response_id[:64]}` found for this key.",
        param=param,
        code="previous_response_not_found" if param else "not_found",
    )


@dataclass
class _OnChat:
    """A Responses request translated onto the chat path, and its answer back."""

    store: ResponseStore
    caller: ApiKey
    plan: ResponsePlan | None = None

    async def request(self, raw: bytes, ctx: RequestContext) -> bytes:
        plan = self.plan = responses_request(raw)
        ctx.route_model = plan.request.model
        previous = plan.request.previous_response_id
        if previous is not None:
            try:
                conversation = await self.store.conversation(self.caller.id, previous)
            except ConversationTooLong:
                raise InvalidRequest(
                    "the conversation is too long to continue; start a new one",
                    param="previous_response_id",
                ) from None
            if conversation is None:
                raise _missing(previous, "previous_response_id")
            plan.conversation = conversation
        return msgspec.json.encode(plan.chat_body())

    async def answer(self, answer: Answer, ctx: RequestContext) -> Answer:
        assert self.plan is not None
        shell = ResponseShell(self.plan, f"resp_{ctx.id}", ctx.model or self.plan.request.model)
        if isinstance(answer, dict | msgspec.Struct):
            completion = answer if isinstance(answer, dict) else msgspec.to_builtins(answer)
            response = whole_response(shell, completion)
            await self._keep(response)
            return response
        return ResponseEvents(shell, answer, self._keep)

    async def _keep(self, response: ResponseObject) -> None:
        """Store the response if asked; the answer goes out even if storing fails."""
        if self.plan is None or not self.plan.store:
            return
        try:
            await self.store.add(self.caller.id, response, self.plan.stored_items)
        except Exception:
            log.exception("could not store response %s", response.id)

    def error(self, error: ApiError) -> ApiError:
        return responses_error(error)


_ERRORS = {
    "401": "No key, a bad, revoked or expired key",
    "404": "No stored response with that id for this key",
}


class ResponsesController(Controller):
    """Mounted under /v1 and at the root, beside the other OpenAI endpoints."""

    path = "/responses"

    @post(
        "/",
        status_code=200,
        summary="Create a response (OpenAI's Responses API), optionally streamed",
        operation_class=documented(
            body=ResponsesRequest,
            examples=RESPONSES_EXAMPLES,
            answer=ResponseObject,
            answer_description="The Response",
            stream=ResponseStreamEvent,
            errors={
                **INFERENCE_ERRORS,
                "404": "No such model, or `previous_response_id` names no stored response of "
                "this key (previous_response_not_found)",
            },
            error=ErrorResponse,
        ),
    )
    async def create(
        self,
        request: AnyRequest,
        responses: NamedDependency[ResponseStore],
    ) -> Response[Any]:
        inference = request_inference(request)
        translation = _OnChat(responses, inference.caller)
        return await _infer(
            request, inference, "responses", ChatCompletionRequest, serve_chat, None, translation
        )

    @get(
        "/{response_id:str}",
        summary="A stored response of this key",
        operation_class=documented(
            answer=ResponseObject,
            answer_description="The Response",
            errors=_ERRORS,
            error=ErrorResponse,
        ),
    )
    async def retrieve(
        self,
        caller: NamedDependency[ApiKey],
        responses: NamedDependency[ResponseStore],
        response_id: FromPath[str],
    ) -> ResponseObject:
        stored = await responses.get(caller.id, response_id)
        if stored is None:
            raise _missing(response_id)
        return stored.response

    @delete(
        "/{response_id:str}",
        status_code=200,
        summary="Delete a stored response",
        operation_class=documented(
            answer=DeletedResponse,
            answer_description="Deleted",
            errors=_ERRORS,
            error=ErrorResponse,
        ),
    )
    async def remove(
        self,
        caller: NamedDependency[ApiKey],
        responses: NamedDependency[ResponseStore],
        response_id: FromPath[str],
    ) -> DeletedResponse:
        if not await responses.delete(caller.id, response_id):
            raise _missing(response_id)
        return DeletedResponse(id=response_id)

    @get(
        "/{response_id:str}/input_items",
        summary="The input items of a stored response",
        operation_class=documented(
            answer=InputItemList,
            answer_description="A page of the response's input items",
            errors={**_ERRORS, "400": "`limit`, `order` or `after` is invalid"},
            error=ErrorResponse,
        ),
    )
    async def input_items(
        self,
        caller: NamedDependency[ApiKey],
        responses: NamedDependency[ResponseStore],
        response_id: FromPath[str],
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_ITEMS_PAGE)] = 20,
        order: FromQuery[Literal["asc", "desc"]] = "desc",
        after: FromQuery[str | None] = None,
    ) -> InputItemList:
        stored = await responses.get(caller.id, response_id)
        if stored is None:
            raise _missing(response_id)
        items = list(stored.input_items)
        if order == "desc":
            items.reverse()
        if after is not None:
            ids = [item.id for item in items]
            if after not in ids:
                raise InvalidRequest(
                    f"no input item `{after[:64]}` in this response", param="after"
                )
            items = items[ids.index(after) + 1 :]
        page = items[:limit]
        return cursor_list(InputItemList, page, len(items) > len(page))
