"""/v1/files and /v1/batches on the wire, as OpenAI's spec names them (openai/openai-openapi:
OpenAIFile, ListFilesResponse, DeleteFileResponse, Batch, ListBatchesResponse,
CreateBatchRequest, and the batch output and error file lines).

Every field is always sent (`null` included), as OpenAI sends them.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from appliance.openai.answers import ResponseBody

FilePurpose = Literal["batch", "batch_output", "fine-tune", "fine-tune-results", "user_data"]
# What a client may upload; `batch_output` and `fine-tune-results` are written by the server.
UPLOAD_PURPOSES = ("batch", "fine-tune", "user_data")
BatchStatus = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]
BatchEndpoint = Literal[
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"
]
BATCH_ENDPOINTS: tuple[str, ...] = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
)
FINAL_STATUSES = ("failed", "completed", "expired", "cancelled")


class FileObject(ResponseBody, kw_only=True):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    expires_at: int | None = None
    filename: str
    purpose: FilePurpose
    status: Literal["uploaded", "processed", "error"] = "processed"
    status_details: str | None = None
    # Radiance's extra: the SHA-256 of the content, hex.
    sha256: str


class FileUpload(msgspec.Struct, kw_only=True):
    """POST /v1/files, as multipart/form-data parts: the file's bytes and its purpose."""

    file: str
    purpose: Literal["batch", "fine-tune", "user_data"]


class FileList(ResponseBody, kw_only=True):
    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileDeleted(ResponseBody, kw_only=True):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class BatchError(ResponseBody, kw_only=True):
    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(ResponseBody, kw_only=True):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchRequestCounts(ResponseBody, kw_only=True):
    total: int
    completed: int
    failed: int


class InputTokensDetails(ResponseBody, kw_only=True):
    cached_tokens: int = 0


class OutputTokensDetails(ResponseBody, kw_only=True):
    reasoning_tokens: int = 0


class BatchUsage(ResponseBody, kw_only=True):
    input_tokens: int
    input_tokens_details: InputTokensDetails = msgspec.field(default_factory=InputTokensDetails)
    output_tokens: int
    output_tokens_details: OutputTokensDetails = msgspec.field(default_factory=OutputTokensDetails)
    total_tokens: int


class Batch(ResponseBody, kw_only=True):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    model: str | None = None
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCounts
    usage: BatchUsage
    metadata: dict[str, str] | None = None


class BatchList(ResponseBody, kw_only=True):
    object: Literal["list"] = "list"
    data: list[Batch]
    first_id: str | None
    last_id: str | None
    has_more: bool


class CreateBatchRequest(msgspec.Struct, kw_only=True):
    """POST /v1/batches: the JSONL file of requests, the endpoint they all go to."""

    input_file_id: str
    endpoint: BatchEndpoint
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = None


# -- the lines of a batch's output and error files ---------------------------------------


class LineResponse(ResponseBody, kw_only=True):
    status_code: int
    request_id: str
    body: dict[str, Any]


class LineError(ResponseBody, kw_only=True):
    code: str
    message: str


class ResultLine(ResponseBody, kw_only=True):
    """One line of an output file (`response` with a 2xx) or an error file (`response`
    with a 4xx/5xx, or `error` when the line never became a request)."""

    id: str
    custom_id: str | None
    response: LineResponse | None
    error: LineError | None


BATCH_EXAMPLES = {
    "chat": {
        "input_file_id": "file-abc123",
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
        "metadata": {"job": "nightly"},
    }
}

DOCUMENTED: list[type[msgspec.Struct]] = [
    FileObject,
    FileUpload,
    FileList,
    FileDeleted,
    Batch,
    BatchList,
    CreateBatchRequest,
    ResultLine,
]
