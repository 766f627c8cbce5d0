"""/v1/fine_tuning/jobs: create, list, retrieve and cancel jobs of one key (the admin: any),
with their events and checkpoints. The work is the runner's (`appliance.fine_tuning.runner`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.params import FromPath, FromQuery, QueryParameter

from appliance.error_handlers import from_http_exception
from appliance.errors import InvalidRequest
from appliance.fine_tuning.jobs import FineTuning
from appliance.openai.answers import ErrorResponse, ResponseBody, cursor_list
from appliance.openai.decoding import decode_request
from appliance.openai.files_routes import owner
from appliance.openai.fine_tuning_protocol import (
    JOB_EXAMPLES,
    CreateFineTuningJobRequest,
    FineTuningJob,
    FineTuningJobCheckpointList,
    FineTuningJobEventList,
    FineTuningJobList,
)
from appliance.openapi_docs import documented
from appliance.state.keys import ApiKey

AnyRequest = Request[Any, Any, Any]
MAX_PAGE = 100
_ERRORS = {"401": "No key, a bad, revoked or expired key", "404": "No such job for this key"}
_PAGE_ERRORS = {**_ERRORS, "400": "`limit` or `after` is invalid"}


def metadata_filter(request: AnyRequest) -> dict[str, str] | None:
    """`metadata[NAME]=VALUE` query parameters, as the SDK sends `metadata={...}`."""
    found = {
        name[len("metadata[") : -1]: value
        for name, value in request.query_params.items()
        if name.startswith("metadata[") and name.endswith("]")
    }
    if len(found) > 16:
        raise InvalidRequest("at most 16 `metadata` filters", param="metadata")
    return found or None


class FineTuningJobsController(Controller):
    path = "/fine_tuning/jobs"

    @post(
        "/",
        status_code=200,
        summary="Create a fine-tuning job: train a LoRA adapter on a `fine-tune` file",
        operation_class=documented(
            body=CreateFineTuningJobRequest,
            examples=JOB_EXAMPLES,
            answer=FineTuningJob,
            answer_description="The job, `validating_files`",
            errors={
                "400": "A field is invalid (`param` names it): the model cannot be fine-tuned, "
                "the file is not a `fine-tune` file or a line of it is invalid (the message "
                "names the line and field)",
                "401": _ERRORS["401"],
                "403": "The key may not use the model",
                "404": "No such file for this key",
                "429": "The key's budget is spent",
            },
            error=ErrorResponse,
        ),
    )
    async def create(
        self,
        request: AnyRequest,
        caller: NamedDependency[ApiKey],
        fine_tuning: NamedDependency[FineTuning],
    ) -> FineTuningJob:
        try:
            raw = await request.body()
        except HTTPException as exc:
            raise from_http_exception(exc) from None
        body, _ = decode_request(raw, CreateFineTuningJobRequest)
        return await fine_tuning.create(caller, body)

    @get(
        "/",
        summary="The fine-tuning jobs of this key (the admin: every job), newest first",
        operation_class=documented(
            answer=FineTuningJobList,
            answer_description="A page of jobs",
            errors=_PAGE_ERRORS,
            error=ErrorResponse,
        ),
    )
    async def list_jobs(
        self,
        request: AnyRequest,
        caller: NamedDependency[ApiKey],
        fine_tuning: NamedDependency[FineTuning],
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 20,
        after: FromQuery[str | None] = None,
    ) -> FineTuningJobList:
        found, more = await fine_tuning.store.page(
            owner(caller), after, limit, metadata_filter(request)
        )
        return cursor_list(FineTuningJobList, [s.job for s in found], more)

    @get(
        "/{fine_tuning_job_id:str}",
        summary="One fine-tuning job: status, hyperparameters, trained tokens, its model",
        operation_class=documented(
            answer=FineTuningJob, answer_description="The job", errors=_ERRORS, error=ErrorResponse
        ),
    )
    async def retrieve(
        self,
        caller: NamedDependency[ApiKey],
        fine_tuning: NamedDependency[FineTuning],
        fine_tuning_job_id: FromPath[str],
    ) -> FineTuningJob:
        return (await fine_tuning.owned(fine_tuning_job_id, caller)).job

    @post(
        "/{fine_tuning_job_id:str}/cancel",
        status_code=200,
        summary="Cancel a job: its trainer stops within two seconds, and it is `cancelled`",
        operation_class=documented(
            answer=FineTuningJob,
            answer_description="The job, `cancelled`",
            errors={**_ERRORS, "400": "The job has ended already (succeeded, failed)"},
            error=ErrorResponse,
        ),
    )
    async def cancel(
        self,
        caller: NamedDependency[ApiKey],
        fine_tuning: NamedDependency[FineTuning],
        fine_tuning_job_id: FromPath[str],
    ) -> FineTuningJob:
        return await fine_tuning.cancel(fine_tuning_job_id, caller)

    @get(
        "/{fine_tuning_job_id:str}/events",
        summary="A job's events, newest first: status changes and the loss of its steps",
        operation_class=documented(
            answer=FineTuningJobEventList,
            answer_description="A page of events",
            errors=_PAGE_ERRORS,
            error=ErrorResponse,
        ),
    )
    async def events(
        self,
        caller: NamedDependency[ApiKey],
        fine_tuning: NamedDependency[FineTuning],
        fine_tuning_job_id: FromPath[str],
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 20,
        after: FromQuery[str | None] = None,
    ) -> FineTuningJobEventList:
        stored = await fine_tuning.owned(fine_tuning_job_id, caller)
        found, more = await fine_tuning.store.events(stored.job.id, after, limit)
        return cursor_list(FineTuningJobEventList, found, more)

    @get(
        "/{fine_tuning_job_id:str}/checkpoints",
        summary="A job's checkpoints, newest first, with their metrics (one per epoch)",
        operation_class=documented(
            answer=FineTuningJobCheckpointList,
            answer_description="A page of checkpoints",
            errors=_PAGE_ERRORS,
            error=ErrorResponse,
        ),
    )
    async def checkpoints(
        self,
        caller: NamedDependency[ApiKey],
        fine_tuning: NamedDependency[FineTuning],
        fine_tuning_job_id: FromPath[str],
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 10,
        after: FromQuery[str | None] = None,
    ) -> FineTuningJobCheckpointList:
        stored = await fine_tuning.owned(fine_tuning_job_id, caller)
        found, more = await fine_tuning.store.checkpoints(
            stored.job, fine_tuning.model_name(stored.job), after, limit
        )
        return cursor_list(FineTuningJobCheckpointList, found, more)


class ModelDeleted(ResponseBody, kw_only=True):
    id: str
    object: Literal["model"] = "model"
    deleted: bool = True


class FineTunedModelsController(Controller):
    path = "/models"

    @delete(
        "/{model_id:path}",
        status_code=200,
        summary="Delete a fine-tuned model (its deployment): the key that trained it, or the admin",
        operation_class=documented(
            answer=ModelDeleted,
            answer_description="The model is deleted; its requests under way finish first",
            errors={
                "401": _ERRORS["401"],
                "400": "The model is not a fine-tuned model",
                "404": "No such model for this key",
            },
            error=ErrorResponse,
        ),
    )
    async def delete_model(
        self,
        caller: NamedDependency[ApiKey],
        fine_tuning: NamedDependency[FineTuning],
        model_id: FromPath[str],
    ) -> ModelDeleted:
        name = model_id.lstrip("/")
        await fine_tuning.delete_model(name, caller)
        return ModelDeleted(id=name)
