"""The main window: a sidebar of workflow steps, lazily built pages, menus, status bar.

Pages are imported and built the first time they are shown (``window_pages``), so the window appears
before torch and the pages' heavy dependencies load; a page module that fails to import shows an
explanation in its place instead of taking the app down. The window is put together from
collaborators: the menus, actions and shortcuts (``window_actions``), the status bar
(``window_status``), and the project file's flow (``models.project_files.ProjectFiles``, Qt-free,
asking through ``window_files.FileDialogs``), with an unsaved-changes prompt before anything would
discard edits.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from transfer_studio.ui import theme, window_actions, worker
from transfer_studio.ui.models.project_files import ProjectFiles
from transfer_studio.ui.settings import Settings, data_dir
from transfer_studio.ui.state import AppState
from transfer_studio.ui.widgets import BusyIndicator, MessageBanner
from transfer_studio.ui.window_actions import APP_NAME
from transfer_studio.ui.window_files import FileDialogs
from transfer_studio.ui.window_pages import (
    LOCKED_WHILE_TRAINING,
    PAGE_KEYS,
    PAGES,
    PageSpec,
    apply_training_lock,
    build_page,
    page_shortcut,
)
from transfer_studio.ui.window_status import StatusLine

__all__ = ["APP_NAME", "PAGES", "PAGE_KEYS", "MainWindow", "MessageBanner", "PageSpec", "finish_tasks",
           "page_shortcut", "sample_dir"]


def sample_dir() -> Path:
    """The sample project's folder (its project file, dataset and runs)."""
    return data_dir() / "sample"


def finish_tasks(timeout_ms: int = 30000) -> bool:
    """Cancel every background task and wait for its thread; True when all have ended."""
    return worker.wait_for_tasks(None, timeout_ms)


class MainWindow(QMainWindow):
    firstShown = Signal()  # emitted once, from the first showEvent (start-up measurements)
    pageBuilt = Signal(str)  # page key

    def __init__(self, state: AppState | None = None, settings: Settings | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("main_window")
        self.state = state or AppState()
        self.settings = settings or Settings()
        self.pages: dict[str, QWidget] = {}
        self._shown_once = False
        self._closing = False
        self.setWindowIcon(theme.app_icon())
        self.setMinimumSize(900, 600)

        # -- central area: sidebar | (banner, busy, pages)
        self.sidebar = QListWidget()
        self.sidebar.setObjectName("sidebar")
        self.sidebar.setAccessibleName("Workflow steps")
        self.sidebar.setFixedWidth(168)
        self.sidebar.setIconSize(self.sidebar.iconSize().scaled(20, 20, Qt.AspectRatioMode.KeepAspectRatio))
        self.stack = QStackedWidget()
        self.stack.setObjectName("page_stack")
        for spec in PAGES:
            item = QListWidgetItem(spec.title)
            item.setData(Qt.ItemDataRole.UserRole, spec.key)
            item.setToolTip(f"{spec.hint} ({page_shortcut(spec)})")
            self.sidebar.addItem(item)
            holder = QWidget()
            holder.setObjectName(f"slot_{spec.key}")
            QVBoxLayout(holder).setContentsMargins(0, 0, 0, 0)
            self.stack.addWidget(holder)
        self.sidebar.currentRowChanged.connect(self._on_sidebar_row)

        self.banner = MessageBanner(object_name="window_banner")
        self.busy_bar = BusyIndicator(object_name="window_busy")
        right = QWidget()
        rlay = QVBoxLayout(right)
        rlay.setContentsMargins(0, 0, 0, 0)
        rlay.setSpacing(0)
        top = QVBoxLayout()
        top.setContentsMargins(8, 6, 8, 0)
        top.addWidget(self.banner)
        top.addWidget(self.busy_bar)
        rlay.addLayout(top)
        rlay.addWidget(self.stack, 1)
        central = QWidget()
        clay = QHBoxLayout(central)
        clay.setContentsMargins(0, 0, 0, 0)
        clay.setSpacing(0)
        clay.addWidget(self.sidebar)
        clay.addWidget(right, 1)
        self.setCentralWidget(central)

        self.status_line = StatusLine(self.statusBar())
        self.device_label, self.path_label = self.status_line.device_label, self.status_line.path_label
        self.files = ProjectFiles(self.state, self.settings, worker.run_task, FileDialogs(self),
                                  sample_dir=sample_dir)
        self.files.holds = self._holds_project
        self._connect_files()
        window_actions.build_menus(self)
        window_actions.refresh_icons(self)

        s = self.state
        # Bound methods, not lambdas: Qt drops these connections when the window is destroyed.
        s.modifiedChanged.connect(self._update_title)
        s.pathChanged.connect(self._update_title)
        s.projectReplaced.connect(self._update_title)
        s.projectReplaced.connect(self._on_project_replaced)
        s.projectChanged.connect(self._on_project_changed)
        s.statusMessage.connect(self.status_line.show_message)
        s.navigateRequested.connect(self.show_page)
        s.trainingActiveChanged.connect(self._apply_training_lock)
        theme.notifier().themeChanged.connect(self._refresh_icons)
        self._update_title()
        self._restore_geometry()
        self.show_page("welcome")
        from transfer_studio.ui.recovery import JOURNAL, RunRecovery  # resume a run a crash cut short

        self.recovery = RunRecovery(self, data_dir() / JOURNAL)

    def _connect_files(self) -> None:
        f = self.files
        f.message.connect(lambda text, level, details, action_text, action: self.banner.show_message(
            text, level, details=details, action_text=action_text, action=action))
        f.messageCleared.connect(self.banner.clear)
        f.busyStarted.connect(lambda text, job: self.busy_bar.start(text, handle=job))
        f.busyStopped.connect(self.busy_bar.stop)
        f.opened.connect(self._check_data_root)

    def _refresh_icons(self, _theme: str = "") -> None:
        window_actions.refresh_icons(self)

    # -- pages ---------------------------------------------------------------------------------
    def show_page(self, key: str) -> None:
        if key not in PAGE_KEYS:
            raise ValueError(f"unknown page {key!r}")
        idx = PAGE_KEYS.index(key)
        self._ensure_page(key)
        if self.sidebar.currentRow() != idx:
            self.sidebar.setCurrentRow(idx)  # -> _on_sidebar_row
        self.stack.setCurrentIndex(idx)

    def current_page_key(self) -> str:
        return PAGE_KEYS[self.stack.currentIndex()]

    def page(self, key: str) -> QWidget:
        """The page for ``key``, built now if it was not yet (tests, other pages)."""
        return self._ensure_page(key)

    def step(self, delta: int) -> None:
        """The next (1) or previous (-1) page, round the list (Go → Next / Previous Step)."""
        idx = (self.stack.currentIndex() + delta) % len(PAGES)
        self.show_page(PAGES[idx].key)

    def _on_sidebar_row(self, row: int) -> None:
        if 0 <= row < len(PAGES):
            key = PAGES[row].key
            self._ensure_page(key)
            self.stack.setCurrentIndex(row)

    def _ensure_page(self, key: str) -> QWidget:
        page = self.pages.get(key)
        if page is not None:
            return page
        page = build_page(PAGES[PAGE_KEYS.index(key)], self.state)
        self.pages[key] = page
        holder = self.stack.widget(PAGE_KEYS.index(key))
        holder.layout().addWidget(page)
        if key == "welcome":
            self._wire_welcome(page)
        if key in LOCKED_WHILE_TRAINING:
            self._apply_training_lock()
        self.pageBuilt.emit(key)
        return page

    def _apply_training_lock(self, *_args: object) -> None:
        apply_training_lock(self.pages, self.state.training_active)

    def _wire_welcome(self, page: QWidget) -> None:
        for signal, slot in (("newRequested", self.new_project), ("openRequested", self.open_project_dialog),
                             ("sampleRequested", self.open_sample), ("openPathRequested", self.open_project)):
            sig = getattr(page, signal, None)
            if sig is not None:
                sig.connect(slot)

    def _settle_before_save(self) -> None:
        """Quitting: end a delete of runs now (cancelled between folders), so the project the user is asked
        to save no longer lists the runs whose folders are gone."""
        runs = self.pages.get("runs")
        if runs is not None and runs.busy():
            runs.stop_delete()

    def _holds_project(self) -> str | None:
        runs = self.pages.get("runs")
        if runs is None or not runs.busy():
            return None
        text = "Runs are being deleted: wait until that ends (or cancel it) before switching to another project."

        def ended() -> None:  # the warning goes with the delete it was about
            if not runs.busy():
                runs.model.busyStopped.disconnect(ended)
                if self.banner.text() == text:
                    self.banner.clear()

        runs.model.busyStopped.connect(ended)
        return text

    def busy_pages(self) -> list[str]:
        out = []
        for key, page in self.pages.items():
            busy = getattr(page, "busy", None)
            try:
                if callable(busy) and busy():
                    out.append(key)
            except RuntimeError:  # deleted C++ object during teardown
                continue
        return out

    # -- the project ---------------------------------------------------------------------------
    def _on_project_replaced(self) -> None:
        """A project with a dataset opened: scan it now, in the background, whatever page is shown.

        The scan lives with the Data page, built lazily: without this, Strategy (which needs the
        scan) said "no dataset" until the user happened to visit Data. Built after this event has
        reached every page, so the Data page starts from the new project.
        """
        if self.state.project.data.root and "data" not in self.pages and not self._closing:
            QTimer.singleShot(0, self._build_data_page)

    def _build_data_page(self) -> None:
        if not self._closing and self.state.project.data.root:
            self._ensure_page("data")

    def _on_project_changed(self, section: str) -> None:
        if section == "name":
            self._update_title()

    def _update_title(self, *_args: object) -> None:
        self.setWindowTitle(f"{self.state.title}[*] — {APP_NAME}")
        self.setWindowModified(self.state.modified)
        self.status_line.set_path(str(self.state.path) if self.state.path else "Not saved yet")

    def _check_data_root(self) -> None:
        from transfer_studio.ui.relocate import relocate_data_root

        relocate_data_root(self.state, self)  # the dataset folder moved: ask to locate it

    # The project file (``self.files``): the File menu, the Welcome page, crash recovery and app.py call these.
    def maybe_save(self, action: str = "continuing") -> bool:
        """True when it is fine to discard the open project (saved, discarded, or unchanged)."""
        return self.files.maybe_save(action)

    def new_project(self) -> bool:
        return self.files.new_project()

    def open_project_dialog(self) -> bool:
        return self.files.open_dialog()

    def open_project(self, path: str | os.PathLike[str], ask: bool = True) -> bool:
        return self.files.open(path, ask)

    def save(self) -> bool:
        return self.files.save()

    def save_as(self) -> bool:
        return self.files.save_as()

    def open_sample(self) -> bool:
        """Open the digits sample on the Model page (as saved, or created first; never rewritten)."""
        return self.files.open_sample()

    def reset_sample(self) -> bool:
        """Put the sample project back to its defaults, after the user confirms; then open it."""
        return self.files.reset_sample()

    # -- view ----------------------------------------------------------------------------------
    def set_theme(self, name: str) -> None:
        app = QApplication.instance()
        if app is not None:
            theme.apply_theme(app, name)  # type: ignore[arg-type]
        self.settings.set_theme(name)
        if name in self.theme_actions:
            self.theme_actions[name].setChecked(True)

    def open_settings(self) -> None:
        """Edit → Settings…: machine defaults (shared with the CLI) and the theme."""
        from transfer_studio.ui.settings_dialog import edit_settings

        chosen_theme = edit_settings(self, self.settings, self.device_label.text())
        if chosen_theme is not None:
            self.set_theme(chosen_theme)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self.status_line.fit_widgets()
        self.status_line.relayout()

    # -- geometry, start-up, shutdown ----------------------------------------------------------
    def _restore_geometry(self) -> None:
        geo = self.settings.geometry()
        if geo is not None:
            self.restoreGeometry(geo)
        else:
            self.resize(1280, 820)
        state = self.settings.window_state()
        if state is not None:
            self.restoreState(state)

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._shown_once:
            self._shown_once = True
            self.firstShown.emit()
            # After the first paint: find the compute device (imports torch) on a worker thread.
            QTimer.singleShot(50, self._detect_device)

    def _detect_device(self) -> None:
        if not self._closing:
            self.status_line.detect_device()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if self._closing:  # already shut down (tests, a second close): nothing left to ask
            event.accept()
            return
        if not self.files.may_close([PAGES[PAGE_KEYS.index(k)].title for k in self.busy_pages()],
                                    settle=self._settle_before_save):
            event.ignore()
            return
        self.shutdown()
        event.accept()

    def shutdown(self) -> None:
        """Stop every page's background work and wait for the threads (also used by tests)."""
        if self._closing:
            return
        self._closing = True
        self.settings.set_geometry(self.saveGeometry())
        self.settings.set_window_state(self.saveState())
        self.settings.sync()
        for page in list(self.pages.values()):
            stop = getattr(page, "shutdown", None)
            if callable(stop):
                try:
                    stop()
                except Exception:  # noqa: BLE001 - keep shutting the others down
                    traceback.print_exc()
        finish_tasks()
