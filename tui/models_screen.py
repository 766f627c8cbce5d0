"""The deployments: status and download progress, replicas, backend, context, pricing and
what went wrong; scale one up or down, or delete it, each after a confirmation."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from tui import formatting as fmt
from tui.client import ServerError
from tui.dialogs import ConfirmDialog
from tui.state import ConsoleState
from tui.widgets import Banner, ConsoleScreen, selected_key, sync_rows
from tui.wire import Deployment, ModelLive

# The most important first: at 80 columns the table shows up to the price; the panel under
# it spells out the highlighted deployment.
COLUMNS = ("ID", "Status", "Replicas", "Backend", "Context", "$/M in/out", "Model", "Detail")
MAX_REPLICAS = 64  # the server's bound for a deployment that does not autoscale


def _status(dep: Deployment) -> Text:
    """The status, with the download's percent while the model file comes."""
    text = fmt.status(dep.status)
    download = dep.download
    if dep.status == "downloading" and download is not None and download.percent is not None:
        text.append(f" {download.percent:.0f}%")
    return text


def _replicas(dep: Deployment) -> str:
    """Ready over wanted, and the autoscaling bounds: `2/3 auto 1-3`."""
    conf = dep.configuration
    count = f"{dep.ready_replicas}/{conf.replicas}"
    if conf.auto_scaling:
        return f"{count} auto {conf.min_replicas}-{conf.max_replicas}"
    return count


def _bounds(dep: Deployment) -> tuple[int, int]:
    """The fewest and the most replicas the deployment may be scaled to."""
    conf = dep.configuration
    if conf.auto_scaling:
        return conf.min_replicas or 1, conf.max_replicas or MAX_REPLICAS
    return 1, MAX_REPLICAS


def _detail(dep: Deployment) -> str:
    """What went wrong, or how far the download is."""
    if dep.error:
        return dep.error
    download = dep.download
    if download is not None and download.state not in ("done", "failed"):
        return fmt.size_pair(download.done_bytes, download.total_bytes)
    return ""


def _row(dep: Deployment, live: ModelLive | None) -> tuple[object, ...]:
    context = dep.configuration.context_length
    return (
        dep.id,
        _status(dep),
        _replicas(dep),
        dep.configuration.backend or fmt.NONE,
        fmt.NONE if context is None else f"{context:,}",
        fmt.NONE if live is None else fmt.price(live.pricing.prompt, live.pricing.completion),
        dep.model_id,
        _detail(dep),
    )


def _describe(dep: Deployment, live: ModelLive | None) -> Text:
    """The highlighted deployment in full: its name, where it comes from, how it scales, its
    replicas and their load time, and its trouble, one labelled line each."""
    origin = "declared in radiance.yaml" if dep.declared else "made through the API"
    text = Text(dep.id, style="bold")
    if live is not None and live.name and live.name != dep.id:
        text.append(f" ({live.name})")
    text.append(f" · {origin} · model {dep.model_id or fmt.NONE}")
    text.append(f"\nsource {dep.source or fmt.NONE}")
    conf = dep.configuration
    if conf.auto_scaling:
        cooldown = fmt.NONE if conf.cooldown_seconds is None else f"{conf.cooldown_seconds:g}s"
        text.append(
            f"\nautoscaling {conf.min_replicas}-{conf.max_replicas} replicas, one more per "
            f"{conf.target_queue} waiting, cooldown {cooldown}"
        )
    download = dep.download
    if download is not None and download.state != "done":
        size = fmt.size_pair(download.done_bytes, download.total_bytes)
        text.append(f"\ndownload {size}, {download.state}")
    replicas = ", ".join(f"{replica.id} {replica.status}" for replica in dep.replicas)
    text.append(f"\nreplicas {replicas or 'none yet'}")
    loads = [r.load_seconds for r in dep.replicas if r.load_seconds is not None]
    if loads:
        text.append(f" · load {fmt.seconds(max(loads))}")
    if dep.error:
        text.append(f"\n{dep.error}", style="red")
    return text


class ModelsScreen(ConsoleScreen):
    DEFAULT_CSS = """
    ModelsScreen DataTable { height: 1fr; }
    ModelsScreen #detail { height: auto; padding: 0 1; color: $text-muted; }
    """
    BINDINGS = [  # noqa: RUF012
        Binding("plus", "scale(1)", "Scale up", key_display="+"),
        Binding("minus", "scale(-1)", "Scale down", key_display="-"),
        Binding("x,delete", "delete", "Delete"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Banner()
        table: DataTable[object] = DataTable(
            id="deployments", cursor_type="row", zebra_stripes=True
        )
        table.add_columns(*COLUMNS)
        yield table
        yield Static("", id="detail")
        yield Footer()

    def show_state(self, state: ConsoleState) -> None:
        if state.deployments is None:
            return
        rows = {dep.id: _row(dep, state.model(dep.id)) for dep in state.deployments}
        sync_rows(self.query_one("#deployments", DataTable), rows)
        self.show_detail()

    @on(DataTable.RowHighlighted)
    def show_detail(self) -> None:
        """Spell out the highlighted deployment under the table."""
        dep = self._highlighted()
        described = "" if dep is None else _describe(dep, self.console.state.model(dep.id))
        self.query_one("#detail", Static).update(described)

    def _highlighted(self) -> Deployment | None:
        dep_id = selected_key(self.query_one("#deployments", DataTable))
        deployments = self.console.state.deployments or []
        return next((dep for dep in deployments if dep.id == dep_id), None)

    def _selected(self) -> Deployment | None:
        found = self._highlighted()
        if found is None:
            self.notify("No deployment selected.", severity="warning")
        elif found.status == "draining":
            self.notify(f"`{found.id}` is being deleted.")
            return None
        return found

    @work(exclusive=True, group="deployment-action")
    async def action_scale(self, step: int) -> None:
        dep = self._selected()
        if dep is None:
            return
        now = dep.configuration.replicas
        wanted = now + step
        low, high = _bounds(dep)
        if not low <= wanted <= high:
            self.notify(_out_of_bounds(dep, low, high))
            return
        question = f"Scale {dep.id} from {now} to {fmt.counted(wanted, 'replica')}?"
        if dep.configuration.auto_scaling:
            question += (
                f" It autoscales between {low} and {high}; the autoscaler goes on from here."
            )
        if not await self.app.push_screen_wait(ConfirmDialog(question, "Scale")):
            return
        try:
            await self.console.client.scale_deployment(dep.id, wanted)
        except ServerError as exc:
            self.refused(exc)
            return
        self.notify(f"Scaling `{dep.id}` to {fmt.counted(wanted, 'replica')}.")
        await self.console.refresh_listing("models")

    @work(exclusive=True, group="deployment-action")
    async def action_delete(self) -> None:
        dep = self._selected()
        if dep is None:
            return
        question = (
            f"Delete deployment `{dep.id}`? Its requests in flight drain first, then its "
            "replicas stop and free their memory."
        )
        if not await self.app.push_screen_wait(ConfirmDialog(question, "Delete")):
            return
        try:
            await self.console.client.delete_deployment(dep.id)
        except ServerError as exc:
            self.refused(exc)
            return
        self.notify(f"Deleting `{dep.id}`: it drains, then goes.")
        await self.console.refresh_listing("models")


def _out_of_bounds(dep: Deployment, low: int, high: int) -> str:
    now = dep.configuration.replicas
    if dep.configuration.auto_scaling:
        return f"`{dep.id}` autoscales between {low} and {high} replicas and asks for {now}."
    if now <= low:
        return f"`{dep.id}` runs one replica, the fewest; x deletes it."
    return f"`{dep.id}` runs {high} replicas, the most a deployment can."
