"""A live tail of the requests that ended: time, key, model, tokens, latency and status;
above it, while batches run, a line per running batch with its counts, and while
fine-tuning jobs are under way, a line per job with its step and last loss."""

from __future__ import annotations

import datetime

from textual.app import ComposeResult
from textual.widgets import DataTable, Footer, Header, Static

from tui import formatting as fmt
from tui.state import ConsoleState
from tui.widgets import Banner, ConsoleScreen
from tui.wire import BatchRow, FineTuningJobView, RecentRequest

COLUMNS = ("Time", "Status", "Key", "Model", "Tokens", "Latency", "TTFT", "Endpoint")


def _key(item: RecentRequest) -> str:
    return f"{item.seq}:{item.id}"  # sequence numbers start again when the server restarts


def _row(item: RecentRequest, zone: datetime.tzinfo | None) -> tuple[object, ...]:
    status = fmt.status(item.status)
    if item.http_status is not None and item.status != "ok":
        status.append(f" {item.http_status}")
    return (
        fmt.clock(item.time, zone),
        status,
        item.key or fmt.NONE,
        item.model or fmt.NONE,
        fmt.tokens(item.prompt_tokens, item.completion_tokens),
        fmt.millis(item.latency_ms),
        fmt.millis(item.ttft_ms),
        item.endpoint.removeprefix("/v1/"),
    )


def batch_lines(batches: list[BatchRow] | None) -> str:
    """One line per running batch: its id, status, lines done of all, failed, endpoint."""
    lines = []
    for batch in batches or []:
        if not batch.running:
            continue
        counts = batch.request_counts
        done = counts.completed + counts.failed
        lines.append(
            f"{batch.id}  {batch.status}  {done}/{counts.total} done, {counts.failed} failed  "
            f"{batch.endpoint}"
        )
    return "\n".join(lines)


def fine_tuning_lines(jobs: list[FineTuningJobView] | None) -> str:
    """One line per job under way: its id, status, model, step of all steps, last loss."""
    lines = []
    for job in jobs or []:
        if not job.active:
            continue
        steps = f"step {job.step}/{fmt.NONE if job.total_steps is None else job.total_steps}"
        loss = fmt.NONE if job.last_loss is None else f"{job.last_loss:.4f}"
        lines.append(f"{job.id}  {job.status}  {job.model}  {steps}  loss {loss}")
    return "\n".join(lines)


class RequestsScreen(ConsoleScreen):
    """Newest at the bottom; the cursor follows new rows while it sits on the last one."""

    DEFAULT_CSS = """
    RequestsScreen DataTable { height: 1fr; }
    RequestsScreen #batches { height: auto; padding: 0 1; display: none; }
    RequestsScreen #fine-tuning { height: auto; padding: 0 1; display: none; }
    """

    def compose(self) -> ComposeResult:
        yield Header()
        yield Banner()
        yield Static(id="batches")
        yield Static(id="fine-tuning")
        table: DataTable[object] = DataTable(id="requests", cursor_type="row", zebra_stripes=True)
        table.add_columns(*COLUMNS)
        yield table
        yield Footer()

    def show_state(self, state: ConsoleState) -> None:
        running = batch_lines(state.batches)
        panel = self.query_one("#batches", Static)
        panel.display = bool(running)
        panel.update(f"Batches running\n{running}" if running else "")
        training = fine_tuning_lines(state.fine_tuning)
        jobs = self.query_one("#fine-tuning", Static)
        jobs.display = bool(training)  # nothing at all while no job is under way
        jobs.update(f"Fine-tuning\n{training}" if training else "")
        table = self.query_one("#requests", DataTable)
        following = table.row_count == 0 or table.cursor_row >= table.row_count - 1
        kept = {_key(item) for item in state.tail}
        for row_key in list(table.rows):
            if row_key.value not in kept:
                table.remove_row(row_key)
        present = {str(key.value) for key in table.rows}
        zone = self.console.zone
        for item in state.tail:
            if _key(item) not in present:
                table.add_row(*_row(item, zone), key=_key(item))
        if following and table.row_count:
            table.move_cursor(row=table.row_count - 1)
