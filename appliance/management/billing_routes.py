"""GET /v1/billing and /v1/billing/invoices: what each key owes, for the admin."""

from __future__ import annotations

import time

import aiosqlite
from litestar import Controller, get
from litestar.di import NamedDependency

from appliance.analytics.billing import Invoice, KeyBilling, Month, current_period, invoices
from appliance.management.errors import invalid
from appliance.management.query_params import LimitParam, MonthParam, OffsetParam
from appliance.management.typed_envelope import ADMIN_ERRORS, Page
from appliance.state.keys import KeyStore


class BillingController(Controller):
    path = "/billing"
    tags = ("billing",)

    @get(
        "/",
        summary="Current calendar month (UTC): totals and budget per key",
        responses=ADMIN_ERRORS,
    )
    async def current(
        self,
        keys: NamedDependency[KeyStore],
        reader: NamedDependency[aiosqlite.Connection],
        limit: LimitParam = None,
        offset: OffsetParam = None,
    ) -> Page[KeyBilling]:
        found = await current_period(reader, await keys.all(), time.time())
        return Page.of(found, limit, offset, "Billing for the current month")

    @get("/invoices", summary="One statement per key for a month", responses=ADMIN_ERRORS)
    async def invoices(
        self,
        reader: NamedDependency[aiosqlite.Connection],
        month: MonthParam = None,
        limit: LimitParam = None,
        offset: OffsetParam = None,
    ) -> Page[Invoice]:
        try:
            which = Month.containing(time.time()) if month is None else Month.parse(month)
        except ValueError as exc:
            raise invalid(str(exc), field="month", value=month) from None
        found = await invoices(reader, which)
        return Page.of(found, limit, offset, f"Invoices for {which}")
