"""The console app: switches screens, polls the server once a second, reconnects by itself."""

from __future__ import annotations

import datetime
import time

from textual.app import App
from textual.binding import Binding

from backends.backoff import Backoff
from tui.client import RadianceClient, ServerError
from tui.dashboard import DashboardScreen
from tui.dialogs import ConfirmDialog, CreateKeyDialog, SecretDialog, TierDialog
from tui.help_screen import HelpScreen, binding_rows
from tui.keys_screen import KeysScreen
from tui.models_screen import ModelsScreen
from tui.requests_screen import RequestsScreen
from tui.state import ConsoleState
from tui.widgets import ConsoleScreen

RETRY = Backoff(first=1.0, most=30.0)  # between polls of a server that does not answer


class ConsoleApp(App[None]):
    """`poll_seconds=None` polls only when told (`await app.poll()`), for tests."""

    TITLE = "Radiance console"
    MODES = {  # noqa: RUF012 (Textual reads it as a class attribute)
        "dashboard": DashboardScreen,
        "keys": KeysScreen,
        "models": ModelsScreen,
        "requests": RequestsScreen,
    }
    DEFAULT_MODE = "dashboard"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [  # noqa: RUF012
        Binding("d,1", "switch_mode('dashboard')", "Dashboard"),
        Binding("k,2", "switch_mode('keys')", "Keys"),
        Binding("m,3", "switch_mode('models')", "Models"),
        Binding("r,4", "switch_mode('requests')", "Requests"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        client: RadianceClient,
        *,
        poll_seconds: float | None = 1.0,
        zone: datetime.tzinfo | None = None,
    ) -> None:
        super().__init__()
        self.client = client
        self.zone = zone
        self.state = ConsoleState(url=client.base_url)
        self.sub_title = client.base_url
        self._poll_seconds = poll_seconds
        self._polling = False
        self._failures = 0
        self._retry_at = 0.0

    def on_mount(self) -> None:
        if self._poll_seconds is not None:
            self.set_interval(self._poll_seconds, self._tick)
            self._tick()

    async def on_unmount(self) -> None:
        await self.client.aclose()

    def _tick(self) -> None:
        """Start a poll in a worker unless one is running or a retry is not due yet."""
        if self._polling:
            return
        if self._failures and time.monotonic() < self._retry_at:
            self.state.retry_in = self._retry_at - time.monotonic()
            self._redraw()
            return
        self._polling = True
        self.run_worker(self.poll(), group="poll", exit_on_error=True)

    async def poll(self) -> None:
        """Fetch a live snapshot (and the listing of the screen that is up) and redraw."""
        self._polling = True
        try:
            snapshot = await self.client.live(self.state.since)
            await self._fetch_listing(self.current_mode)
        except ServerError as exc:
            self._failures += 1
            delay = RETRY.after(self._failures)
            self._retry_at = time.monotonic() + delay
            self.state.problem = exc
            self.state.retry_in = delay
        else:
            self._failures = 0
            self.state.take(snapshot)
        finally:
            self._polling = False
        self._redraw()

    async def _fetch_listing(self, mode: str) -> None:
        """Fetch what the screen of `mode` lists, if anything: keys, deployments, or the
        batches and fine-tuning jobs shown above the requests."""
        if mode == "keys":
            self.state.keys = await self.client.keys()
        elif mode == "models":
            self.state.deployments = await self.client.deployments()
        elif mode == "requests":
            self.state.batches = await self.client.batches()
            self.state.fine_tuning = await self.client.fine_tuning_jobs()

    async def refresh_listing(self, mode: str) -> None:
        """Fetch a screen's listing now (after an action), telling the user if that fails."""
        try:
            await self._fetch_listing(mode)
        except ServerError as exc:
            if exc.lasting:
                self.state.problem = exc
            else:
                self.notify(exc.message, severity="error")
        self._redraw()

    def _redraw(self) -> None:
        if not self.is_running:
            return  # shutting down: the screens are losing their widgets
        for screen in self.screen_stack:
            if isinstance(screen, ConsoleScreen) and screen.is_mounted:
                screen.show(self.state)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        rows = binding_rows(
            [
                ("anywhere", self.BINDINGS),
                ("keys", KeysScreen.BINDINGS),
                ("models", ModelsScreen.BINDINGS),
                ("new key", CreateKeyDialog.BINDINGS),
                ("secret", SecretDialog.BINDINGS),
                ("confirm", ConfirmDialog.BINDINGS),
                ("tier", TierDialog.BINDINGS),
                ("tables", [Binding("up,down,pageup,pagedown", "", "Move the cursor")]),
            ]
        )
        self.push_screen(HelpScreen(rows))

    async def action_switch_mode(self, mode: str) -> None:
        await self.switch_mode(mode)
        await self.refresh_listing(mode)
