"""Train page: settings, Start / Pause / Resume / Stop, live charts, epoch table, log, resume.

The page binds widgets (built in ``train_widgets``) to its model (``ui.models.train_model``), which
holds the settings, starts runs and follows them. Training runs on its own QThread
(``ui.train_worker.TrainController``) with a copy of the project. Heavy modules (torch, pyqtgraph,
the engine) are imported when the page is built or in background jobs, never when this module is
imported.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QTableWidgetItem, QWidget

from transfer_studio.ui.models.train_model import TrainModel
from transfer_studio.ui.models.train_text import frozen_summary, gui_advice
from transfer_studio.ui.pages import train_widgets as w
from transfer_studio.ui.state import AppState

__all__ = ["TrainPage", "frozen_summary", "gui_advice"]


class TrainPage(QWidget):
    TITLE = "Train"

    def __init__(self, state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("page_train")
        self.state = state
        from transfer_studio.ui.plots import TrainingCharts  # pyqtgraph: only once the page is built
        from transfer_studio.ui.train_worker import TrainController, runs_root
        from transfer_studio.ui.widgets.banner import MessageBanner
        from transfer_studio.ui.worker import run_task

        self._loading = False  # True while widgets are filled from the project (no write-back)
        self._controller = TrainController(self)  # the training thread (tests and benches follow its signals)
        self.model = TrainModel(state, self._controller, run_task, runs_root)
        w.build_settings(self)
        w.build_controls(self)
        self.banner = MessageBanner(self, object_name="train_banner")
        self.charts = TrainingCharts(self)
        self.charts.setMinimumHeight(190)
        w.build_table_and_log(self)
        w.build_layout(self)
        self._connect_widgets()
        self._connect_model()
        self._load_settings()
        self.model.refresh_resumable()
        self._apply_controls()
        self.model.probe()

    # -- user actions -> model ----------------------------------------------------------------------
    def _connect_widgets(self) -> None:
        for label in (self.strategy_link, self.model_link):
            label.linkActivated.connect(self.state.navigateRequested.emit)
        self.auto_label.linkActivated.connect(lambda _link: self.model.give_back_to_auto())
        for combo in (self.strategy_combo, self.device_combo):
            combo.currentIndexChanged.connect(self._on_settings_edited)
        for spin in (self.epochs_spin, self.batch_spin, self.lr_spin):
            spin.valueChanged.connect(self._on_settings_edited)
        self.augment_combo.currentIndexChanged.connect(self._on_augment_edited)
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.pause)
        self.resume_button.clicked.connect(self.resume)
        self.stop_button.clicked.connect(self.stop)
        self.resume_run_button.clicked.connect(lambda: self.resume_run())
        self.resume_run_combo.currentIndexChanged.connect(lambda _i: self._apply_controls())
        self.cluster_button.clicked.connect(lambda: self.write_job_folder())

    def write_job_folder(self, folder: str | None = None, *, gpus: int | None = None, nodes: int = 2) -> None:
        """Ask where (a dialog, unless ``folder`` is given) and write a job folder for torchrun/SLURM."""
        if folder is None:
            from pathlib import Path

            base = Path(self.state.path).parent if getattr(self.state, "path", None) else Path.home()
            dialog = w.JobFolderDialog(self, start=str(base / f"{self.state.project.name or 'project'}-job"),
                                       gpus=self.model.job_gpus())
            if dialog.exec() != w.QDialog.DialogCode.Accepted:
                return
            folder, gpus, nodes = dialog.folder_edit.text().strip(), dialog.gpus_spin.value(), dialog.nodes_spin.value()
        self.model.write_job(folder, gpus_per_node=gpus or self.model.job_gpus(), nodes=nodes)

    def _show_job(self, job: Any) -> None:
        import html

        from transfer_studio.core.job_folder import command_line

        folder = html.escape(str(job.folder))
        self.banner.show_message(
            f"<b>Job folder written: {folder}</b><br>On a machine with GPUs: <code>{html.escape(command_line(job))}"
            f"</code>; on a SLURM cluster: <code>sbatch slurm.sbatch</code> there. Copy "
            f"<code>runs/{html.escape(job.run_name)}</code> back and choose it on the Evaluate "
            "page (README.md in the folder says more).", "success")
        self.log(f"Job folder written: {job.folder} (run_local.sh, slurm.sbatch, project.tsproj, README.md)")

    def start(self) -> None:
        """Start a new run with the current settings."""
        self.model.start()

    def resume_run(self, run_dir: str | None = None, *, batch_size: int | None = None) -> None:
        """Continue a run (default: the one selected in the interrupted-runs list) from its checkpoint."""
        self.model.resume_run(run_dir or self.resume_run_combo.currentData(), batch_size=batch_size)

    def pause(self) -> None:
        self.model.pause()

    def resume(self) -> None:
        self.model.resume()

    def stop(self) -> None:
        self.model.stop()

    def busy(self) -> bool:
        return self.model.busy()

    def best_epoch(self) -> int | None:
        """The epoch the table marks as best (tests, accessibility)."""
        return self.model.run.table.best_epoch()

    def shutdown(self) -> None:
        """Stop a running training and wait for its thread and the device probe (the window is closing)."""
        from transfer_studio.ui.worker import wait_for_tasks

        self.model.shutdown()
        wait_for_tasks([self.model.device_job], 20000)

    def _on_settings_edited(self, *_: Any) -> None:
        if not self._loading:
            self.model.edit_settings(strategy=self.strategy_combo.currentData(), epochs=self.epochs_spin.value(),
                                     batch_size=self.batch_spin.value(), lr=float(self.lr_spin.value()),
                                     device=self.device_combo.currentData())

    def _on_augment_edited(self, *_: Any) -> None:
        if not self._loading:
            self.model.edit_augment(self.augment_combo.currentData())

    # -- model -> widgets ---------------------------------------------------------------------------
    def _connect_model(self) -> None:
        m, run = self.model, self.model.run
        m.settingsChanged.connect(lambda reload: self._load_settings() if reload else self._show_summary())
        m.devicesChanged.connect(self._on_devices)
        m.controlsChanged.connect(self._apply_controls)
        m.problem.connect(self._show_problem)
        m.jobWritten.connect(self._show_job)
        m.problemCleared.connect(self.banner.clear)
        run.changed.connect(self._apply_controls)
        run.statusText.connect(self.status_label.setText)
        run.log.connect(self.log)
        run.deviceText.connect(self.device_label.setText)
        run.progress.connect(self._show_progress)
        run.speed.connect(self.speed_label.setText)
        run.eta.connect(self.eta_label.setText)
        run.displayCleared.connect(self._clear_display)
        run.chartRange.connect(self.charts.set_epoch_range)
        run.chartBatches.connect(lambda chunk: self.charts.add_batches(chunk.x, chunk.loss, chunk.lr))
        run.chartEpoch.connect(self.charts.add_epoch)
        run.chartEpochLrs.connect(self.charts.add_epoch_lr)
        run.chartTruncate.connect(self.charts.truncate)
        run.chartPhase.connect(self.charts.mark_phase)
        run.rowAdded.connect(self._add_row)
        run.bestRow.connect(self._set_best_row)

    def _load_settings(self) -> None:
        t, augment = self.state.project.train, self.state.project.augment
        self._loading = True
        try:
            w.select(self.strategy_combo, t.strategy)
            self.epochs_spin.setValue(t.epochs)
            self.batch_spin.setValue(t.batch_size)
            self.lr_spin.setValue(t.lr)
            w.select(self.augment_combo, augment.preset)
            w.select(self.device_combo, t.device)
        finally:
            self._loading = False
        self._show_summary()

    def _show_summary(self) -> None:
        summary = self.model.summary()
        self.model_label.setText(summary["model"])
        self.frozen_label.setText(summary["frozen"])
        self.auto_label.setText(summary["auto"])
        self.auto_label.setVisible(summary["auto_visible"])

    def _on_devices(self, info: Any) -> None:
        items = self.device_combo.model()
        for i in range(self.device_combo.count()):
            item = items.item(i)
            if item is not None:
                available = info.has(self.device_combo.itemData(i))
                item.setEnabled(available)
                item.setToolTip("" if available else "not available on this computer")

    def _apply_controls(self) -> None:
        c = self.model.controls()
        self.start_button.setEnabled(c.start)
        self.pause_button.setEnabled(c.pause)
        self.resume_button.setEnabled(c.resume)
        self.stop_button.setEnabled(c.stop)
        self.settings_box.setEnabled(not c.running)
        w.set_links_active(self, not c.running)
        combo = self.resume_run_combo
        entries = self.model.resumable
        if [(combo.itemText(i), combo.itemData(i)) for i in range(combo.count())] != entries:
            current = combo.currentData()
            combo.blockSignals(True)
            combo.clear()
            for label, run_dir in entries:
                combo.addItem(label, run_dir)
            if current and combo.findData(current) >= 0:
                combo.setCurrentIndex(combo.findData(current))
            combo.blockSignals(False)
        has_resumable = combo.count() > 0
        combo.setEnabled(not c.running and has_resumable)
        self.resume_run_button.setEnabled(not c.running and has_resumable)
        for widget in (self.resume_run_label, combo, self.resume_run_button):
            widget.setVisible(has_resumable)

    def _show_problem(self, problem: Any) -> None:
        """The page's error banner: the problem in bold, then what to do about it."""
        import html

        details = html.escape(problem.detail).replace("\n", "<br>") or None
        self.banner.show_message(problem.rich_text(), "error", details=details, action_text=problem.action_text,
                                 action=problem.action)

    def log(self, text: str) -> None:
        self.log_view.appendPlainText(f"{_dt.datetime.now().strftime('%H:%M:%S')}  {text}")

    def _show_progress(self, view: Any) -> None:
        for bar, value, fmt in ((self.epoch_progress, view.epoch_value, view.epoch_text),
                                (self.run_progress, view.run_value, view.run_text)):
            bar.setValue(value)
            bar.setFormat(fmt)

    def _clear_display(self, keep_batches: bool) -> None:
        self.charts.clear(keep_batches=keep_batches)
        self.table.setRowCount(0)

    def _add_row(self, row: Any) -> None:
        index = self.table.rowCount()
        self.table.insertRow(index)
        for col, value in enumerate(row.cells):
            item = QTableWidgetItem(value)
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(index, col, item)
        self.table.scrollToBottom()

    def _set_best_row(self, best: int) -> None:
        """Bold, highlighted and starred: the best epoch's row (the previous best goes back to plain)."""
        pal = self.palette()
        highlight = pal.color(QPalette.ColorRole.Highlight)
        colour = highlight.lighter(190) if pal.color(QPalette.ColorRole.Base).lightness() > 127 \
            else highlight.darker(160)
        for r in range(self.table.rowCount()):
            for col in range(self.table.columnCount()):
                item = self.table.item(r, col)
                font = item.font()
                font.setBold(r == best)
                item.setFont(font)
                if r == best:
                    item.setBackground(colour)
                else:
                    item.setData(Qt.ItemDataRole.BackgroundRole, None)
            epoch = self.table.item(r, 0)
            plain = epoch.text().lstrip("\u2605 ")
            epoch.setText(f"\u2605 {plain}" if r == best else plain)
