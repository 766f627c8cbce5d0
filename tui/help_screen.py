"""Every key binding of the console, gathered from the bindings themselves."""

from __future__ import annotations

from collections.abc import Iterable

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable

KEY_NAMES = {
    "question_mark": "?",
    "escape": "esc",
    "enter": "enter",
    "ctrl+c": "ctrl+c",
    "plus": "+",
    "minus": "-",
    "delete": "del",
}


def binding_rows(
    sections: Iterable[tuple[str, Iterable[BindingType]]],
) -> list[tuple[str, str, str]]:
    """(where, keys, what) for every binding with a description."""
    rows = []
    for where, bindings in sections:
        for binding in bindings:
            if not isinstance(binding, Binding) or not binding.description:
                continue
            keys = " ".join(KEY_NAMES.get(key, key) for key in binding.key.split(","))
            rows.append((where, keys, binding.description))
    return rows


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical {
        width: 60; max-width: 100%; height: auto; max-height: 100%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    HelpScreen > Vertical { border-title-style: bold; border-title-color: $text; }
    HelpScreen DataTable { height: auto; max-height: 100%; }
    """
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close help")]  # noqa: RUF012

    def __init__(self, rows: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self._rows = rows

    def compose(self) -> ComposeResult:
        table: DataTable[str] = DataTable(show_cursor=False, zebra_stripes=True)
        table.add_columns("Where", "Keys", "What")
        table.add_rows(self._rows)
        box = Vertical(table)
        box.border_title = "Radiance console: keys (esc closes)"
        yield box

    def action_close(self) -> None:
        self.dismiss(None)
