"""One exception tree for the OpenAI API, free of any web framework.

Every error leaves the server as OpenAI's envelope
``{"error": {"message", "type", "param", "code"}}`` with a string code; nothing else,
and never a traceback. `appliance.error_handlers` turns these errors into HTTP.
"""

from __future__ import annotations

from appliance.openai.answers import ErrorResponse, OpenAIError


class ApiError(Exception):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}


class InvalidRequest(ApiError):
    pass


class ContextLengthExceeded(ApiError):
    code = "context_length_exceeded"


class Unauthorized(ApiError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(ApiError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class PayloadTooLarge(ApiError):
    status = 413
    code = "request_too_large"


class ServiceUnavailable(ApiError):
    status = 503
    type = "server_error"
    code = "overloaded"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        seconds = max(1, round(retry_after))
        super().__init__(
            message,
            code=code,
            headers={"retry-after": str(seconds), "retry-after-ms": str(int(retry_after * 1000))},
        )


class BadGateway(ApiError):
    """An upstream server failed or answered what Radiance cannot pass on."""

    status = 502
    type = "server_error"
    code = "bad_gateway"

    def __init__(self, message: str, *, retry_after: float = 1, code: str | None = None) -> None:
        seconds = max(1, round(retry_after))
        super().__init__(
            message,
            code=code,
            headers={"retry-after": str(seconds), "retry-after-ms": str(int(retry_after * 1000))},
        )


class InternalError(ApiError):
    status = 500
    type = "server_error"
    code = "internal_error"


def envelope(error: ApiError) -> ErrorResponse:
    """The error as OpenAI sends it: `{"error": {"message", "type", "param", "code"}}`."""
    return ErrorResponse(
        error=OpenAIError(
            message=error.message, type=error.type, param=error.param, code=error.code
        )
    )
