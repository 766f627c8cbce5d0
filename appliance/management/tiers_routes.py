"""/v1/tiers: the tiers radiance.yaml declares, so a console can offer them by name."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, get

from appliance.management.envelope import AnyRequest, ok, require_admin
from appliance.runtime import Runtime


class TiersController(Controller):
    path = "/tiers"
    tags = ["keys"]  # noqa: RUF012 (Litestar reads it as a class attribute)
    opt = {"envelope": "management"}  # noqa: RUF012

    @get("/", summary="The tiers declared in radiance.yaml, with their limits")
    async def list_tiers(self, request: AnyRequest) -> Response[bytes]:
        require_admin(request)
        tiers = Runtime.of(request).loaded.config.tiers
        data: list[dict[str, Any]] = [
            {
                "name": name,
                "rpm": tier.rpm,
                "tpm": tier.tpm,
                "concurrency": tier.concurrency,
                "max_tokens": tier.max_tokens,
                "models": None if tier.models is None else list(tier.models),
            }
            for name, tier in sorted(tiers.items())
        ]
        count = len(data)
        return ok(data, f"{count} tier{'s' if count != 1 else ''}")
