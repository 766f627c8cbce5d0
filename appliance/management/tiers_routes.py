"""/v1/tiers: the tiers radiance.yaml declares, so a console can offer them by name."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency

from appliance.config import Config
from appliance.management.typed_envelope import ADMIN_ERRORS, Item
from appliance.management.wire import Tier


class TiersController(Controller):
    path = "/tiers"
    tags = ["keys"]  # noqa: RUF012 (Litestar reads it as a class attribute)

    @get(
        "/",
        summary="The tiers declared in radiance.yaml, with their limits",
        responses={401: ADMIN_ERRORS[401], 403: ADMIN_ERRORS[403]},
    )
    async def list_tiers(self, config: NamedDependency[Config]) -> Item[list[Tier]]:
        data = [
            Tier(
                name=name,
                rpm=tier.rpm,
                tpm=tier.tpm,
                concurrency=tier.concurrency,
                max_tokens=tier.max_tokens,
                models=None if tier.models is None else list(tier.models),
            )
            for name, tier in sorted(config.tiers.items())
        ]
        count = len(data)
        return Item(data, f"{count} tier{'s' if count != 1 else ''}")
