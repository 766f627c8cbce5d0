"""The dashboard: per model, live rates with sparklines, load, latency, errors and status."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Footer, Header, Label, Sparkline, Static

from tui import formatting as fmt
from tui.state import HISTORY, ConsoleState, ModelRates
from tui.widgets import Banner, ConsoleScreen, sync_rows
from tui.wire import ModelLive

COLUMNS = ("Model", "Status", "tok/s", "req/s", "Run/Q", "Latency p50/95", "TTFT p50/95", "Err")


def _padded(samples: list[float]) -> list[float]:
    """A fixed window, so the sparkline's time axis does not stretch while it fills."""
    return [0.0] * (HISTORY - len(samples)) + samples


class ModelCard(Horizontal):
    """One line per model: tokens/s and requests/s over the last minutes."""

    DEFAULT_CSS = """
    ModelCard { height: 3; border: round $primary-darken-1; padding: 0 1; }
    ModelCard Label { width: auto; padding: 0 1 0 0; }
    ModelCard .value { width: 7; text-align: right; padding: 0 2 0 0; }
    ModelCard Sparkline { width: 1fr; margin: 0 1 0 0; }
    """

    def __init__(self, model: ModelLive, rates: ModelRates | None) -> None:
        super().__init__()
        self.model_id = model.id
        self.border_title = model.id
        self._model = model
        self._rates = rates or ModelRates()

    def compose(self) -> ComposeResult:
        yield Label("tok/s")
        yield Sparkline([], id="tokens")
        yield Label(fmt.NONE, id="tokens-now", classes="value")
        yield Label("req/s")
        yield Sparkline([], id="requests")
        yield Label(fmt.NONE, id="requests-now", classes="value")

    def on_mount(self) -> None:
        self._apply()

    def show(self, model: ModelLive, rates: ModelRates | None) -> None:
        """Take new figures; drawn now, or once the card is mounted."""
        self._model = model
        self._rates = rates or ModelRates()
        if self.is_mounted:
            self._apply()

    def _apply(self) -> None:
        rates = self._rates
        self.border_subtitle = self._model.status
        self.query_one("#tokens", Sparkline).data = _padded(list(rates.tokens))
        self.query_one("#requests", Sparkline).data = _padded(list(rates.requests))
        self.query_one("#tokens-now", Label).update(fmt.rate(rates.tokens_now))
        self.query_one("#requests-now", Label).update(fmt.rate(rates.requests_now))


def _row(model: ModelLive, rates: ModelRates | None) -> tuple[object, ...]:
    minute = model.last_minute
    return (
        model.id,
        fmt.status(model.status),
        fmt.rate(rates.tokens_now if rates else None),
        fmt.rate(rates.requests_now if rates else None),
        f"{model.requests_running}/{model.requests_waiting}",
        fmt.pair(minute.p50_latency_ms, minute.p95_latency_ms),
        fmt.pair(minute.p50_ttft_ms, minute.p95_ttft_ms),
        fmt.percent(minute.error_rate),
    )


class DashboardScreen(ConsoleScreen):
    DEFAULT_CSS = """
    DashboardScreen #summary { height: 1; padding: 0 1; color: $text-muted; }
    DashboardScreen #models { height: auto; max-height: 10; }
    DashboardScreen #failures { height: auto; padding: 0 1; color: $error; }
    DashboardScreen #cards { height: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield Header()
        yield Banner()
        yield Static("connecting…", id="summary")
        table: DataTable[object] = DataTable(id="models", cursor_type="row", zebra_stripes=True)
        table.add_columns(*COLUMNS)
        yield table
        yield Static("", id="failures")
        yield VerticalScroll(id="cards")
        yield Footer()

    def show_state(self, state: ConsoleState) -> None:
        models = state.models
        self.query_one("#summary", Static).update(self._summary(state))
        sync_rows(
            self.query_one("#models", DataTable),
            {model.id: _row(model, state.rates.get(model.id)) for model in models},
        )
        failures = [
            f"{model.id} failed: {model.error or 'no reason given'}"
            for model in models
            if model.status == "failed"
        ]
        self.query_one("#failures", Static).update("\n".join(failures))
        self.query_one("#failures", Static).display = bool(failures)
        self._show_cards(state)

    def _show_cards(self, state: ConsoleState) -> None:
        cards = self.query_one("#cards", VerticalScroll)
        existing = {card.model_id: card for card in cards.query(ModelCard)}
        for model_id, gone in existing.items():
            if model_id not in {model.id for model in state.models}:
                gone.remove()
        for model in state.models:
            card = existing.get(model.id)
            if card is None:
                cards.mount(ModelCard(model, state.rates.get(model.id)))
            else:
                card.show(model, state.rates.get(model.id))

    @staticmethod
    def _summary(state: ConsoleState) -> str:
        if state.live is None:
            return "connecting…" if state.problem is None else "no data yet"
        models = state.models
        ready = sum(model.status == "ready" for model in models)
        tokens = sum(r.tokens_now or 0.0 for r in state.rates.values())
        requests = sum(r.requests_now or 0.0 for r in state.rates.values())
        running = sum(model.requests_running for model in models)
        waiting = sum(model.requests_waiting for model in models)
        return (
            f"{len(models)} models, {ready} ready · {fmt.rate(tokens)} tok/s · "
            f"{fmt.rate(requests)} req/s · {running} running · {waiting} waiting"
        )
