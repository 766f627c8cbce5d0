"""The management API's own envelope, distinct from the OpenAI one (typed in `typed_envelope`).

Success: ``{"data": ..., "message": "..."}``, lists add
``"pagination": {"total", "limit", "offset", "hasMore"}``. Errors (`ManagementError`, put
in HTTP by `appliance.error_handlers`): ``{"error": "...", "code": "KEY_NOT_FOUND",
"details": {...}}`` with the right status.
"""

from __future__ import annotations

from appliance.management.errors import invalid

MAX_PAGE = 1000
MAX_OFFSET = 2**62  # SQLite integers are 64-bit


def page_params(limit: int | None, offset: int | None) -> tuple[int, int]:
    limit = 50 if limit is None else limit
    offset = 0 if offset is None else offset
    if not 1 <= limit <= MAX_PAGE:
        raise invalid(f"`limit` must be between 1 and {MAX_PAGE}", field="limit", value=limit)
    if not 0 <= offset <= MAX_OFFSET:
        raise invalid(f"`offset` must be between 0 and {MAX_OFFSET}", field="offset")
    return limit, offset
