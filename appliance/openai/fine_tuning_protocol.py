"""/v1/fine_tuning/jobs on the wire, as OpenAI's spec names them (openai/openai-openapi:
FineTuningJob, CreateFineTuningJobRequest, FineTuningJobEvent, FineTuningJobCheckpoint and
their list responses).

Every field is always sent (`null` included), as OpenAI sends them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from appliance.openai.answers import ResponseBody

JobStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
FINAL_STATUSES = ("succeeded", "failed", "cancelled")
Auto = Literal["auto"]
Epochs = Annotated[int, Meta(ge=1, le=50)]
BatchSize = Annotated[int, Meta(ge=1, le=256)]
Multiplier = Annotated[float, Meta(gt=0, le=10)]
# A suffix is part of the model name `ft:<base>:<suffix>:<job id>`.
Suffix = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")]
Seed = Annotated[int, Meta(ge=0, le=2**31 - 1)]


class Hyperparameters(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What the job was asked for; `auto` (or left out) lets the trainer choose."""

    n_epochs: Epochs | Auto = "auto"
    batch_size: BatchSize | Auto = "auto"
    learning_rate_multiplier: Multiplier | Auto = "auto"


class SupervisedMethod(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    hyperparameters: Hyperparameters | None = None


class Method(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # Only supervised fine-tuning runs here; `dpo` and `reinforcement` are refused.
    type: Literal["supervised"]
    supervised: SupervisedMethod | None = None


class CreateFineTuningJobRequest(msgspec.Struct, kw_only=True):
    """POST /v1/fine_tuning/jobs."""

    model: Annotated[str, Meta(min_length=1, max_length=256)]
    training_file: Annotated[str, Meta(min_length=1, max_length=256)]
    validation_file: Annotated[str, Meta(min_length=1, max_length=256)] | None = None
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    suffix: Suffix | None = None
    seed: Seed | None = None
    metadata: dict[str, str] | None = None
    # Weights & Biases reporting cannot be done from a closed box; an empty list is fine.
    integrations: Annotated[list[Any], Meta(max_length=0)] | None = None


class JobError(ResponseBody, kw_only=True):
    code: str
    message: str
    param: str | None = None


class ResolvedHyperparameters(ResponseBody, kw_only=True):
    n_epochs: int | Auto
    batch_size: int | Auto
    learning_rate_multiplier: float | Auto


class JobSupervised(ResponseBody, kw_only=True):
    hyperparameters: ResolvedHyperparameters


class JobMethod(ResponseBody, kw_only=True):
    type: Literal["supervised"] = "supervised"
    supervised: JobSupervised


class FineTuningJob(ResponseBody, kw_only=True):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: JobError | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    hyperparameters: ResolvedHyperparameters
    model: str
    organization_id: str = "org-radiance"
    result_files: list[str]
    seed: int
    status: JobStatus
    trained_tokens: int | None = None
    training_file: str
    validation_file: str | None = None
    estimated_finish: int | None = None
    integrations: list[Any] = msgspec.field(default_factory=list)
    metadata: dict[str, str] | None = None
    method: JobMethod
    user_provided_suffix: str | None = None


class FineTuningJobList(ResponseBody, kw_only=True):
    object: Literal["list"] = "list"
    data: list[FineTuningJob]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FineTuningJobEvent(ResponseBody, kw_only=True):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    type: Literal["message", "metrics"]
    data: dict[str, Any] | None = None


class FineTuningJobEventList(ResponseBody, kw_only=True):
    object: Literal["list"] = "list"
    data: list[FineTuningJobEvent]
    first_id: str | None
    last_id: str | None
    has_more: bool


class CheckpointMetrics(ResponseBody, kw_only=True):
    step: float | None = None
    train_loss: float | None = None
    train_mean_token_accuracy: float | None = None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    full_valid_loss: float | None = None
    full_valid_mean_token_accuracy: float | None = None


class FineTuningJobCheckpoint(ResponseBody, kw_only=True):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: CheckpointMetrics
    step_number: int


class FineTuningJobCheckpointList(ResponseBody, kw_only=True):
    object: Literal["list"] = "list"
    data: list[FineTuningJobCheckpoint]
    first_id: str | None
    last_id: str | None
    has_more: bool


JOB_EXAMPLES = {
    "supervised": {
        "model": "tiny",
        "training_file": "file-abc123",
        "suffix": "support",
        "seed": 7,
        "hyperparameters": {"n_epochs": 3},
    }
}

DOCUMENTED: list[type[msgspec.Struct]] = [
    CreateFineTuningJobRequest,
    FineTuningJob,
    FineTuningJobList,
    FineTuningJobEvent,
    FineTuningJobEventList,
    FineTuningJobCheckpoint,
    FineTuningJobCheckpointList,
]
