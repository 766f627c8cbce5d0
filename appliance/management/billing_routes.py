"""GET /v1/billing and /v1/billing/invoices: what each key owes, for the admin."""

from __future__ import annotations

import time

from litestar import Controller, get

from appliance.analytics.billing import Invoice, KeyBilling, Month, current_period, invoices
from appliance.management.envelope import AnyRequest, invalid, require_admin
from appliance.management.query_params import LimitParam, MonthParam, OffsetParam
from appliance.management.typed_envelope import ADMIN_ERRORS, Page
from appliance.runtime import Runtime


class BillingController(Controller):
    path = "/billing"
    tags = ("billing",)
    opt = {"envelope": "management"}  # noqa: RUF012 (Litestar copies it per route)

    @get(
        "/",
        summary="Current calendar month (UTC): totals and budget per key",
        responses=ADMIN_ERRORS,
    )
    async def current(
        self, request: AnyRequest, limit: LimitParam = None, offset: OffsetParam = None
    ) -> Page[KeyBilling]:
        require_admin(request)
        runtime = Runtime.of(request)
        keys = await runtime.keys.all()
        found = await current_period(runtime.db.reader, keys, time.time())
        return Page.of(found, limit, offset, "Billing for the current month")

    @get("/invoices", summary="One statement per key for a month", responses=ADMIN_ERRORS)
    async def invoices(
        self,
        request: AnyRequest,
        month: MonthParam = None,
        limit: LimitParam = None,
        offset: OffsetParam = None,
    ) -> Page[Invoice]:
        require_admin(request)
        try:
            which = Month.containing(time.time()) if month is None else Month.parse(month)
        except ValueError as exc:
            raise invalid(str(exc), field="month", value=month) from None
        found = await invoices(Runtime.of(request).db.reader, which)
        return Page.of(found, limit, offset, f"Invoices for {which}")
