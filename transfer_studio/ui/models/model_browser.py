"""The Model page's browser: the catalog (read in a job: which weights are on this computer), the model
chosen in its table, Random init, loading the chosen model or a weights file, and downloading
pretrained weights (a job with progress and cancel). It announces on its owner's events
(``model_model.ModelModel``), which also does the loading."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transfer_studio.ui.models import model_text as text
from transfer_studio.ui.models.base import Job, JobRunner
from transfer_studio.ui.models.model_network import download_weights, read_catalog
from transfer_studio.ui.models.model_text import Buttons


class CatalogBrowser:
    """See the module docstring. ``rows``: the page's table rows for the catalog, made on the catalog
    job's thread (``model_catalog.make_rows``)."""

    def __init__(self, owner: Any, jobs: JobRunner, rows: Callable[[list[Any]], Any] | None = None):
        self.owner, self.jobs, self.rows = owner, jobs, rows
        self.infos: list[Any] = []  # core.catalog.ModelInfo of every catalog model
        self.selected: Any = None  # the ModelInfo chosen in the table
        self.random_init = False
        self.catalog_job: Job | None = None
        self.download_job: Job | None = None
        self._token = 0

    def load(self) -> None:
        """Read the catalog (which weights are on disk) in the background."""
        self._token += 1
        token = self._token
        job = self.jobs(read_catalog, self.rows, name="catalog", pass_control=False,
                        on_result=lambda r: self._on_catalog(token, *r),
                        on_error=lambda m, d: self._on_error(token, m, d))
        self.catalog_job = job if job.is_running() else None

    def _on_error(self, token: int, message: str, details: str) -> None:
        if token == self._token and not self.owner.closing:
            self.catalog_job = None
            self.owner.message.emit(f"Could not read the model catalog: {message}", "error", details)

    def _on_catalog(self, token: int, infos: list[Any], rows: Any) -> None:
        if token != self._token or self.owner.closing:
            return
        self.catalog_job = None
        self.infos = list(infos)
        if self.selected is not None:
            self.selected = self.info(self.selected.name)
        o = self.owner
        o.catalogLoaded.emit(self.infos, rows)
        o.selectRequested.emit(o.host.project.model.name)
        o.buttonsChanged.emit()

    def info(self, name: str) -> Any:
        return next((i for i in self.infos if i.name == name), None)

    def select(self, info: Any) -> None:
        """The model chosen in the table (None: none)."""
        self.selected = info
        self.owner.selectionChanged.emit(info)
        self.owner.buttonsChanged.emit()

    def set_random_init(self, on: bool) -> None:
        self.random_init = bool(on)
        self.owner.buttonsChanged.emit()

    def buttons(self) -> Buttons:
        return text.buttons(self.selected, self.random_init, self.busy(), self.owner.display is not None)

    def busy(self) -> bool:
        """A download is running."""
        return self.download_job is not None

    def load_selected(self) -> None:
        info = self.selected
        if info is None:
            self.owner.message.emit("Select a model in the table first.", "info", "")
            return
        weights = "none" if self.random_init else "DEFAULT"
        if weights == "DEFAULT" and not info.weights_available_offline:
            self.owner.message.emit(text.missing_weights_text(info), "warning", "")
            return
        self.owner.load_model(info.name, weights)

    def load_weights_file(self, path: str) -> None:
        """The selected architecture with the weights in ``path``."""
        if self.selected is None:
            self.owner.message.emit("Select the architecture the weights belong to, then open the file.", "info", "")
            return
        self.owner.load_model(self.selected.name, path)

    def download_selected(self) -> None:
        """Download the chosen model's pretrained weights, then load it."""
        info, o = self.selected, self.owner
        if info is None or self.download_job is not None:
            return
        name = info.name
        o.messageCleared.emit()

        def over() -> bool:
            self.download_job = None
            o.busyStopped.emit()
            o.buttonsChanged.emit()
            return not o.closing

        def done(_name: str) -> None:
            if over():
                o.host.status(f"Downloaded the weights of {name}.")
                self.load()
                o.load_model(name, "DEFAULT")

        def failed(message: str, details: str) -> None:
            if over():
                o.message.emit(f"Download failed: {message}", "error", details)

        def cancelled() -> None:
            if over():
                o.message.emit(f"Download of {name} cancelled; nothing was saved.", "info", "")

        job = self.jobs(download_weights, name, name="download", on_result=done, on_error=failed,
                        on_cancelled=cancelled, progress_interval=0.1)
        if job.is_running():
            self.download_job = job
            o.busyStarted.emit(f"Downloading the weights of {name}{text.size_note(info)}…", job)
        o.buttonsChanged.emit()

    def shutdown(self) -> None:
        for job in (self.catalog_job, self.download_job):
            if job is not None:
                job.cancel()
