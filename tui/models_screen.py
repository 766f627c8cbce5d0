"""The models: id, name, backend, context length, pricing, status and load time."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import DataTable, Footer, Header

from tui import formatting as fmt
from tui.state import ConsoleState
from tui.widgets import Banner, ConsoleScreen, sync_rows
from tui.wire import ModelLive

COLUMNS = ("ID", "Status", "Name", "Backend", "Context", "$/M in/out", "Load", "Detail")


def _row(model: ModelLive) -> tuple[object, ...]:
    return (
        model.id,
        fmt.status(model.status),
        model.name,
        model.backend,
        f"{model.context_length:,}",
        fmt.price(model.pricing.prompt, model.pricing.completion),
        fmt.seconds(model.load_seconds),
        model.error or "",
    )


class ModelsScreen(ConsoleScreen):
    DEFAULT_CSS = """
    ModelsScreen DataTable { height: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield Header()
        yield Banner()
        table: DataTable[object] = DataTable(id="models", cursor_type="row", zebra_stripes=True)
        table.add_columns(*COLUMNS)
        yield table
        yield Footer()

    def show_state(self, state: ConsoleState) -> None:
        rows = {model.id: _row(model) for model in state.models}
        sync_rows(self.query_one("#models", DataTable), rows)
