"""The API keys: a table with this month's use, and create, revoke and change-tier actions."""

from __future__ import annotations

import datetime

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header

from tui import formatting as fmt
from tui.client import ServerError
from tui.dialogs import NO_TIER, ConfirmDialog, CreateKeyDialog, SecretDialog, TierDialog
from tui.state import ConsoleState
from tui.widgets import Banner, ConsoleScreen, selected_key, sync_rows
from tui.wire import KeyInfo

COLUMNS = (
    "Name",
    "Status",
    "Tier",
    "Prefix",
    "Req/mo",
    "Cost/mo",
    "Last used",
    "Created",
    "Models",
    "From",
)


def _row(key: KeyInfo, zone: datetime.tzinfo | None) -> tuple[object, ...]:
    return (
        key.name,
        fmt.status(key.status),
        key.tier or fmt.NONE,
        key.prefix,
        f"{key.this_month.requests:,}",
        fmt.usd(key.this_month.cost),
        fmt.when(key.last_used_at, zone, missing="never"),
        fmt.when(key.created_at, zone),
        "all" if key.models is None else ",".join(key.models),
        key.source,
    )


class KeysScreen(ConsoleScreen):
    DEFAULT_CSS = """
    KeysScreen DataTable { height: 1fr; }
    """
    BINDINGS = [  # noqa: RUF012
        Binding("n", "new_key", "New key"),
        Binding("x", "revoke", "Revoke"),
        Binding("t", "tier", "Tier"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Banner()
        table: DataTable[object] = DataTable(id="keys", cursor_type="row", zebra_stripes=True)
        table.add_columns(*COLUMNS)
        yield table
        yield Footer()

    def show_state(self, state: ConsoleState) -> None:
        if state.keys is None:
            return
        zone = self.console.zone
        rows = {key.id: _row(key, zone) for key in state.keys}
        sync_rows(self.query_one("#keys", DataTable), rows)

    def _selected(self) -> KeyInfo | None:
        key_id = selected_key(self.query_one("#keys", DataTable))
        keys = self.console.state.keys or []
        found = next((key for key in keys if key.id == key_id), None)
        if found is None:
            self.notify("No key selected.", severity="warning")
        return found

    async def _tier_names(self) -> list[str]:
        tiers = await self.console.client.tiers()
        return [tier.name for tier in tiers]

    @work(exclusive=True, group="key-action")
    async def action_new_key(self) -> None:
        client = self.console.client
        try:
            tiers = await self._tier_names()
            wanted = await self.app.push_screen_wait(CreateKeyDialog(tiers))
            if wanted is None:
                return
            created = await client.create_key(wanted.name, wanted.tier)
        except ServerError as exc:
            self.refused(exc)
            return
        await self.console.refresh_listing("keys")
        await self.app.push_screen_wait(SecretDialog(created))

    @work(exclusive=True, group="key-action")
    async def action_revoke(self) -> None:
        key = self._selected()
        if key is None:
            return
        if key.status == "revoked":
            self.notify(f"`{key.name}` is already revoked.")
            return
        question = f"Revoke key `{key.name}` ({key.prefix}…)? Requests with it fail at once."
        if not await self.app.push_screen_wait(ConfirmDialog(question, "Revoke")):
            return
        try:
            await self.console.client.revoke_key(key.id)
        except ServerError as exc:
            self.refused(exc)
            return
        self.notify(f"Revoked `{key.name}`.")
        await self.console.refresh_listing("keys")

    @work(exclusive=True, group="key-action")
    async def action_tier(self) -> None:
        key = self._selected()
        if key is None:
            return
        try:
            tiers = await self._tier_names()
            choice = await self.app.push_screen_wait(TierDialog(key.name, key.tier, tiers))
            if choice is None:
                return
            tier = None if choice == NO_TIER else choice
            await self.console.client.set_tier(key.id, tier)
        except ServerError as exc:
            self.refused(exc)
            return
        self.notify(f"`{key.name}` is now on tier {tier or 'none'}.")
        await self.console.refresh_listing("keys")
