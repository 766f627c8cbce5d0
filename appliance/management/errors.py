"""The management API's errors, free of any web framework.

They leave the server as ``{"error": "...", "code": "KEY_NOT_FOUND", "details": {...}}``
with their status; `appliance.error_handlers` turns them into HTTP.
"""

from __future__ import annotations

from typing import Any


class ManagementError(Exception):
    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "code": self.code, "details": self.details}


def invalid(message: str, **details: Any) -> ManagementError:
    return ManagementError(400, "VALIDATION_ERROR", message, details)
