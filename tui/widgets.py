"""Pieces every console screen shares: the connection banner and in-place table updates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from textual.screen import Screen
from textual.widgets import DataTable, Static

from tui.client import ServerError

if TYPE_CHECKING:
    from tui.app import ConsoleApp
    from tui.state import ConsoleState

ADVICE = {
    "unreachable": "Is `radiance up` running there?",
    "unauthorized": "Check --admin-key or RADIANCE_ADMIN_KEY against server.admin_key.",
    "forbidden": "Use the admin key (server.admin_key), not a user key.",
    "protocol": "Is the URL a Radiance server of a matching version?",
    "rejected": "",
}


class Banner(Static):
    """A red line across the top while the server cannot be reached or refuses the key."""

    DEFAULT_CSS = """
    Banner {
        dock: top;
        height: auto;
        padding: 0 1;
        background: $error;
        color: $text;
        text-style: bold;
        display: none;
    }
    """

    def show_problem(self, problem: ServerError | None, retry_in: float) -> None:
        self.display = problem is not None
        if problem is not None:
            advice = ADVICE[problem.kind]
            retry = f"retrying in {retry_in:.0f}s" if retry_in >= 1 else "retrying"
            self.update(f"⚠ {problem.message} {advice} ({retry})".replace("  ", " "))


def sync_rows(table: DataTable[Any], rows: Mapping[str, Sequence[Any]]) -> None:
    """Make `table` show `rows` (by row key) changing only what differs: no flicker,
    and the cursor stays on its row."""
    columns = list(table.columns)
    present = {str(key.value) for key in table.rows}
    for gone in present - rows.keys():
        table.remove_row(gone)
    for key, cells in rows.items():
        if key not in present:
            table.add_row(*cells, key=key)
            continue
        for column, value in zip(columns, cells, strict=True):
            if table.get_cell(key, column) != value:
                table.update_cell(key, column, value, update_width=True)


def selected_key(table: DataTable[Any]) -> str | None:
    """The row key under the cursor, if the table has rows."""
    if table.row_count == 0:
        return None
    row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
    return None if row_key.value is None else str(row_key.value)


class ConsoleScreen(Screen[None]):
    """A main screen: it shows the console's state, redrawn in place after each poll."""

    @property
    def console(self) -> ConsoleApp:
        return cast("ConsoleApp", self.app)

    def on_screen_resume(self) -> None:
        self.show(self.console.state)

    def show(self, state: ConsoleState) -> None:
        self.query_one(Banner).show_problem(state.problem, state.retry_in)
        self.show_state(state)

    def show_state(self, state: ConsoleState) -> None:
        """Update this screen's widgets from `state`."""

    def refused(self, exc: ServerError) -> None:
        """Tell the user, once, why an action failed (a declared key or deployment, ...)."""
        self.notify(exc.message, title="The server said no", severity="error", timeout=8)
