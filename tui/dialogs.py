"""Modal dialogs: new key, the secret shown once, change tier, and the yes-or-no question
before revoking a key or scaling or deleting a deployment."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option

from tui.wire import CreatedKey

NO_TIER = "(no tier)"
KEY_NAME = r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}"

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 64; max-width: 100%; height: auto; padding: 1 2;
    border: thick $primary; background: $surface;
}}
{name} .title {{ text-style: bold; margin: 0 0 1 0; }}
{name} .buttons {{ height: auto; margin: 1 0 0 0; align: right middle; }}
{name} Button {{ margin: 0 0 0 1; }}
"""


@dataclass(frozen=True)
class NewKey:
    name: str
    tier: str | None


class CreateKeyDialog(ModalScreen[NewKey | None]):
    DEFAULT_CSS = DIALOG_CSS.format(name="CreateKeyDialog")
    BINDINGS = [Binding("escape", "cancel", "Cancel")]  # noqa: RUF012

    def __init__(self, tiers: list[str]) -> None:
        super().__init__()
        self._tiers = tiers

    def compose(self) -> ComposeResult:
        options = [(NO_TIER, NO_TIER), *((tier, tier) for tier in self._tiers)]
        with Vertical():
            yield Label("New API key", classes="title")
            yield Input(placeholder="name, e.g. team-search", restrict=KEY_NAME, id="name")
            yield Select(options, value=NO_TIER, allow_blank=False, id="tier")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Create", variant="primary", id="create")

    @on(Input.Submitted)
    @on(Button.Pressed, "#create")
    def create(self) -> None:
        name = self.query_one("#name", Input).value.strip()
        if not name:
            self.notify("Give the key a name.", severity="warning")
            return
        tier = self.query_one("#tier", Select).value
        self.dismiss(NewKey(name, None if tier in (NO_TIER, Select.BLANK) else str(tier)))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class SecretDialog(ModalScreen[None]):
    """The new key's secret: the server shows it this once."""

    DEFAULT_CSS = (
        DIALOG_CSS.format(name="SecretDialog")
        + """
    SecretDialog #secret { background: $boost; padding: 0 1; text-style: bold; }
    SecretDialog .note { color: $text-muted; margin: 1 0 0 0; }
    """
    )
    BINDINGS = [  # noqa: RUF012
        Binding("c", "copy", "Copy"),
        Binding("escape,enter", "close", "Close"),
    ]

    def __init__(self, created: CreatedKey) -> None:
        super().__init__()
        self._created = created
        self.secret = created.key

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Key `{self._created.name}` created", classes="title")
            yield Static(self._created.key, id="secret")
            yield Static(
                "Store it now: it is not shown again. c copies it to the clipboard.",
                classes="note",
            )
            with Horizontal(classes="buttons"):
                yield Button("Copy", id="copy")
                yield Button("Done", variant="primary", id="close")

    @on(Button.Pressed, "#copy")
    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self._created.key)
        self.notify("Copied the key to the clipboard.")

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)


class ConfirmDialog(ModalScreen[bool]):
    DEFAULT_CSS = DIALOG_CSS.format(name="ConfirmDialog")
    BINDINGS = [  # noqa: RUF012
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, action: str) -> None:
        super().__init__()
        self._question = question
        self._action = action

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self._question, classes="title")
            with Horizontal(classes="buttons"):
                yield Button("No", id="no")
                yield Button(f"{self._action} (y)", variant="error", id="yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class TierDialog(ModalScreen[str | None]):
    """Pick a tier; dismisses with the tier, NO_TIER to clear it, or None to cancel."""

    DEFAULT_CSS = (
        DIALOG_CSS.format(name="TierDialog")
        + """
    TierDialog OptionList { height: auto; max-height: 12; }
    """
    )
    BINDINGS = [Binding("escape", "cancel", "Cancel")]  # noqa: RUF012

    def __init__(self, key_name: str, current: str | None, tiers: list[str]) -> None:
        super().__init__()
        self._key_name = key_name
        self._current = current
        self._tiers = tiers

    def compose(self) -> ComposeResult:
        names = [NO_TIER, *self._tiers]
        options = [
            Option(f"{name}{'  (current)' if name == (self._current or NO_TIER) else ''}", name)
            for name in names
        ]
        with Vertical():
            yield Label(f"Tier of `{self._key_name}`", classes="title")
            yield OptionList(*options, id="tiers")

    @on(OptionList.OptionSelected)
    def chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
