"""The main window: a sidebar of workflow steps, lazily built pages, menus, status bar.

Pages are imported and built the first time they are shown, so the window appears before torch
and the pages' heavy dependencies load. A page module that fails to import shows an explanation in
its place instead of taking the app down. File actions work on the project file (``AppState``),
with an unsaved-changes prompt before anything would discard edits.
"""

from __future__ import annotations

import importlib
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from transfer_studio.config import PROJECT_SUFFIX, Project
from transfer_studio.errors import UserError
from transfer_studio.ui import runtime, theme, worker
from transfer_studio.ui.settings import Settings, data_dir
from transfer_studio.ui.state import AppState
from transfer_studio.ui.widgets import BusyIndicator, ElidedLabel, EmptyState, MessageBanner

APP_NAME = "Transfer Studio"


@dataclass(frozen=True)
class PageSpec:
    key: str
    module: str  # under transfer_studio.ui.pages
    cls: str
    title: str
    icon: str
    hint: str  # one line for the sidebar tooltip and the "not available" state
    shortcut: str = ""  # "": Ctrl+<its number among the pages without a shortcut of their own>


PAGES: list[PageSpec] = [
    PageSpec("welcome", "welcome", "WelcomePage", "Welcome", "home", "Start, open or try a project"),
    PageSpec("model", "model", "ModelPage", "Model", "model", "Pick a pretrained network, see and freeze its graph"),
    PageSpec("data", "data", "DataPage", "Data", "data", "Point to your images: one folder per class"),
    PageSpec("review", "review", "ReviewPage", "Review labels", "review",
             "Find and correct images whose labels look wrong", "Ctrl+Shift+L"),
    PageSpec("strategy", "strategy", "StrategyPage", "Strategy", "strategy", "Choose what to freeze and train"),
    PageSpec("augment", "augment", "AugmentPage", "Augment", "augment", "Augmentation with a live preview"),
    PageSpec("train", "train", "TrainPage", "Train", "train", "Fine-tune with live charts"),
    PageSpec("evaluate", "evaluate", "EvaluatePage", "Evaluate", "evaluate", "Accuracy, confusion matrix, mistakes"),
    PageSpec("try", "try_page", "TryPage", "Try", "try", "Classify your own pictures"),
    PageSpec("export", "export", "ExportPage", "Export", "export", "Save the model for other programs"),
    PageSpec("runs", "runs", "RunsPage", "Runs", "runs", "Past training runs"),
]
PAGE_KEYS = [p.key for p in PAGES]


def page_shortcut(spec: PageSpec) -> str:
    """Ctrl+0 the welcome page, Ctrl+1 … Ctrl+9 the numbered steps; a page may name its own."""
    if spec.shortcut:
        return spec.shortcut
    numbered = [p.key for p in PAGES if not p.shortcut]
    return f"Ctrl+{numbered.index(spec.key)}" if spec.key in numbered else ""

# Widgets (by object name) of other pages that edit a training run's settings: locked while a run
# trains, as the Train page locks its own (they used to stay editable next to its locked fields).
LOCKED_WHILE_TRAINING: dict[str, tuple[str, ...]] = {
    "strategy": ("strategy_content",),
    "augment": ("augment_preset_row", "augment_controls"),
}
TRAINING_LOCK_TIP = ("Locked while a training run uses these settings: stop the run or let it finish "
                     "to change them.")


def sample_dir() -> Path:
    """The sample project's folder (its project file, dataset and runs)."""
    return data_dir() / "sample"


def detect_compute_device() -> str:
    """One line for the status bar (``core.devices``). Imports torch, so it runs on a worker thread."""
    from transfer_studio.core import devices

    return devices.describe_machine(devices.probe())


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
        self._device_task: worker.TaskHandle | None = None
        self._sample_task: worker.TaskHandle | None = None
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

        # -- status bar
        self.device_label = QLabel("Detecting compute device…")
        self.device_label.setObjectName("device_label")
        self.device_label.setToolTip("Where training runs")
        # The project path shortens in the middle (full path on hover), and messages shorten to the
        # room left of it: a long message used to run into the path.
        self.path_label = ElidedLabel(mode=Qt.TextElideMode.ElideMiddle, min_chars=16)
        self.path_label.setObjectName("path_label")
        self.statusBar().setObjectName("status_bar")
        self.statusBar().addPermanentWidget(self.path_label)
        self.statusBar().addPermanentWidget(self.device_label)
        self._status_text = ""  # the message shown, in full (it is shown shortened to fit)
        self._status_deadline: float | None = None
        self.statusBar().messageChanged.connect(self._on_status_message_changed)

        self._build_menus()
        self._refresh_icons()

        s = self.state
        # Bound methods, not lambdas: Qt drops these connections when the window is destroyed.
        s.modifiedChanged.connect(self._update_title)
        s.pathChanged.connect(self._update_title)
        s.projectReplaced.connect(self._update_title)
        s.projectReplaced.connect(self._on_project_replaced)
        s.projectChanged.connect(self._on_project_changed)
        s.statusMessage.connect(self._show_status)
        s.navigateRequested.connect(self.show_page)
        s.trainingActiveChanged.connect(self._apply_training_lock)
        theme.notifier().themeChanged.connect(self._refresh_icons)
        self._update_title()
        self._restore_geometry()
        self.show_page("welcome")
        from transfer_studio.ui.recovery import JOURNAL, RunRecovery  # resume a run a crash cut short

        self.recovery = RunRecovery(self, data_dir() / JOURNAL)

    # -- menus ---------------------------------------------------------------------------------
    def _action(self, text: str, slot: Callable[[], object], shortcut: QKeySequence | str | None = None,
                name: str = "", icon: str = "", tip: str = "") -> QAction:
        act = QAction(text, self)
        if shortcut:
            act.setShortcut(QKeySequence(shortcut))
        if name:
            act.setObjectName(name)
        if icon:
            act.setData(icon)
        if tip:
            act.setStatusTip(tip)
        act.triggered.connect(lambda _checked=False: slot())
        self.addAction(act)  # shortcuts work even while the menu bar is hidden
        return act

    def _build_menus(self) -> None:
        mb = self.menuBar()
        mb.setObjectName("menu_bar")
        SK = QKeySequence.StandardKey
        f = mb.addMenu("&File")
        f.setObjectName("menu_file")
        self.act_new = self._action("&New Project", self.new_project, QKeySequence(SK.New), "action_new", "new")
        self.act_open = self._action("&Open Project…", self.open_project_dialog, QKeySequence(SK.Open),
                                     "action_open", "open")
        self.recent_menu = f.addMenu("Open &Recent")
        self.recent_menu.setObjectName("menu_recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self.act_sample = self._action("Try the &Sample Project", self.open_sample, None, "action_sample", "sample",
                                       "Handwritten digits with the bundled EfficientNet-Lite0 (no download)")
        self.act_reset_sample = self._action("&Reset the Sample Project…", self.reset_sample, None,
                                             "action_reset_sample", "",
                                             "Put the sample project back to its defaults (asks first)")
        self.act_save = self._action("&Save", self.save, QKeySequence(SK.Save), "action_save", "save")
        self.act_save_as = self._action("Save &As…", self.save_as, QKeySequence("Ctrl+Shift+S"), "action_save_as")
        self.act_quit = self._action("&Quit", self.close, QKeySequence("Ctrl+Q"), "action_quit")
        for a in (self.act_new, self.act_open):
            f.addAction(a)
        f.addMenu(self.recent_menu)
        f.addAction(self.act_sample)
        f.addAction(self.act_reset_sample)
        f.addSeparator()
        f.addAction(self.act_save)
        f.addAction(self.act_save_as)
        f.addSeparator()
        f.addAction(self.act_quit)

        e = mb.addMenu("&Edit")
        e.setObjectName("menu_edit")
        self.act_undo = self.state.undo_stack.createUndoAction(self, "&Undo")
        self.act_undo.setObjectName("action_undo")
        self.act_undo.setShortcut(QKeySequence(SK.Undo))
        self.act_redo = self.state.undo_stack.createRedoAction(self, "&Redo")
        self.act_redo.setObjectName("action_redo")
        self.act_redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.act_undo.setData("undo")
        self.act_redo.setData("redo")
        e.addAction(self.act_undo)
        e.addAction(self.act_redo)
        e.addSeparator()
        self.act_settings = self._action("&Settings…", self.open_settings, "Ctrl+,", "action_settings")
        self.act_settings.setMenuRole(QAction.MenuRole.PreferencesRole)
        e.addAction(self.act_settings)

        v = mb.addMenu("&View")
        v.setObjectName("menu_view")
        tm = v.addMenu("&Theme")
        group = QActionGroup(self)
        current = self.settings.theme()
        self.theme_actions: dict[str, QAction] = {}
        for name, label in (("system", "Follow &System"), ("light", "&Light"), ("dark", "&Dark")):
            act = QAction(label, self, checkable=True)
            act.setObjectName(f"action_theme_{name}")
            act.setChecked(name == current)
            act.triggered.connect(lambda _c=False, n=name: self.set_theme(n))
            group.addAction(act)
            tm.addAction(act)
            self.theme_actions[name] = act
        v.addSeparator()
        self.act_sidebar = QAction("Show &Sidebar", self, checkable=True, checked=True)
        self.act_sidebar.setObjectName("action_sidebar")
        self.act_sidebar.toggled.connect(self.sidebar.setVisible)
        v.addAction(self.act_sidebar)
        self.act_fullscreen = self._action("&Full Screen", self._toggle_fullscreen, QKeySequence(SK.FullScreen),
                                           "action_fullscreen")
        v.addAction(self.act_fullscreen)

        g = mb.addMenu("&Go")
        g.setObjectName("menu_go")
        self.page_actions: dict[str, QAction] = {}
        for spec in PAGES:
            act = self._action(spec.title, lambda k=spec.key: self.show_page(k), page_shortcut(spec) or None,
                               f"action_page_{spec.key}", spec.icon, spec.hint)
            g.addAction(act)
            self.page_actions[spec.key] = act
            if spec.key == "welcome":
                g.addSeparator()
        g.addSeparator()
        g.addAction(self._action("&Next Step", lambda: self._step(1), QKeySequence("Ctrl+PgDown"), "action_next"))
        g.addAction(self._action("&Previous Step", lambda: self._step(-1), QKeySequence("Ctrl+PgUp"),
                                 "action_previous"))

        h = mb.addMenu("&Help")
        h.setObjectName("menu_help")
        h.addAction(self._action("&Keyboard Shortcuts", self._show_shortcuts, QKeySequence(SK.HelpContents),
                                 "action_shortcuts"))
        h.addAction(self._action("&About Transfer Studio", self._about, None, "action_about"))

    def _refresh_icons(self, _theme: str = "") -> None:
        for i, spec in enumerate(PAGES):
            self.sidebar.item(i).setIcon(theme.icon(spec.icon))
        for act in self.findChildren(QAction):
            name = act.data()
            if isinstance(name, str) and name:
                act.setIcon(theme.icon(name))

    def _fill_recent_menu(self) -> None:
        menu = self.recent_menu
        menu.clear()
        recent = self.settings.recent_projects(existing_only=True)
        if not recent:
            a = menu.addAction("No recent projects")
            a.setEnabled(False)
        for i, path in enumerate(recent):
            a = menu.addAction(f"&{i + 1}  {Path(path).name}  —  {Path(path).parent}" if i < 9 else path)
            a.setData(path)
            a.triggered.connect(lambda _c=False, p=path: self.open_project(p))
        menu.addSeparator()
        clear = menu.addAction("Clear List")
        clear.setEnabled(bool(recent))
        clear.triggered.connect(self.settings.clear_recent_projects)

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

    def _on_sidebar_row(self, row: int) -> None:
        if 0 <= row < len(PAGES):
            key = PAGES[row].key
            self._ensure_page(key)
            self.stack.setCurrentIndex(row)

    def _step(self, delta: int) -> None:
        idx = (self.stack.currentIndex() + delta) % len(PAGES)
        self.show_page(PAGES[idx].key)

    def _ensure_page(self, key: str) -> QWidget:
        page = self.pages.get(key)
        if page is not None:
            return page
        spec = PAGES[PAGE_KEYS.index(key)]
        page = self._build_page(spec)
        self.pages[key] = page
        holder = self.stack.widget(PAGE_KEYS.index(key))
        holder.layout().addWidget(page)
        if key == "welcome":
            self._wire_welcome(page)
        if key in LOCKED_WHILE_TRAINING:
            self._apply_training_lock()
        self.pageBuilt.emit(key)
        return page

    def _build_page(self, spec: PageSpec) -> QWidget:
        modname = f"transfer_studio.ui.pages.{spec.module}"
        try:
            module = importlib.import_module(modname)
            cls = getattr(module, spec.cls)
            page = cls(self.state, None)
            if page.objectName() != f"page_{spec.key}":
                page.setObjectName(f"page_{spec.key}")
            return page
        except ModuleNotFoundError as exc:
            if exc.name == modname:
                return self._unavailable_page(spec, f"The {spec.title} step is not part of this build yet.")
            return self._failed_page(spec, exc)
        except Exception as exc:  # noqa: BLE001 - one broken page must not take the app down
            return self._failed_page(spec, exc)

    def _unavailable_page(self, spec: PageSpec, text: str) -> QWidget:
        w = EmptyState(spec.icon, spec.title, f"{spec.hint}.\n\n{text}", object_name=f"page_{spec.key}_unavailable")
        return w

    def _failed_page(self, spec: PageSpec, exc: BaseException) -> QWidget:
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        w = QWidget()
        w.setObjectName(f"page_{spec.key}_error")
        lay = QVBoxLayout(w)
        banner = MessageBanner(object_name=f"page_{spec.key}_error_banner", closable=False)
        banner.show_message(f"The {spec.title} page could not be loaded: {type(exc).__name__}: {exc}. "
                            "The rest of the app works; please report this.", "error", details=detail)
        lay.addWidget(banner)
        lay.addStretch(1)
        return w

    def _apply_training_lock(self, *_args: object) -> None:
        active = self.state.training_active
        for key, names in LOCKED_WHILE_TRAINING.items():
            page = self.pages.get(key)
            if page is None:
                continue
            for name in names:
                widget = page.findChild(QWidget, name)
                if widget is not None:
                    widget.setEnabled(not active)
                    widget.setToolTip(TRAINING_LOCK_TIP if active else "")

    def _wire_welcome(self, page: QWidget) -> None:
        for signal, slot in (("newRequested", self.new_project), ("openRequested", self.open_project_dialog),
                             ("sampleRequested", self.open_sample)):
            sig = getattr(page, signal, None)
            if sig is not None:
                sig.connect(slot)
        sig = getattr(page, "openPathRequested", None)
        if sig is not None:
            sig.connect(self.open_project)

    # -- project files -------------------------------------------------------------------------
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

    def _show_status(self, text: str, timeout_ms: int) -> None:
        self._status_text = text
        self._status_deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms > 0 else None
        self._relayout_status()

    def _relayout_status(self) -> None:
        """Show the current message shortened to the room there is now (again after the path, the
        device line or the window's width changed)."""
        text = self._status_text
        if not text:
            return
        timeout_ms = 0
        if self._status_deadline is not None:
            timeout_ms = int((self._status_deadline - time.monotonic()) * 1000)
            if timeout_ms <= 0:
                return
        bar = self.statusBar()
        self._fit_status_widgets()
        room = bar.width() - 32  # the status bar's own margins and a gap before the path
        for widget in (self.path_label, self.device_label):
            if widget.isVisible():  # the width the layout will give it (it may not have run yet)
                hint = widget.sizeHint().width()
                room -= min(max(hint, widget.minimumSizeHint().width()), widget.maximumWidth()) + 8
        shown = bar.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, max(room, 40))
        bar.setToolTip(text if shown != text else "")
        bar.showMessage(shown, timeout_ms)

    def _fit_status_widgets(self) -> None:
        """The path takes at most a third of the status bar; messages get the rest."""
        self.path_label.setMaximumWidth(max(160, self.statusBar().width() // 3))

    def _on_status_message_changed(self, message: str) -> None:
        if not message:  # timed out or cleared
            self._status_text, self._status_deadline = "", None

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit_status_widgets()
        self._relayout_status()

    def _update_title(self, *_args: object) -> None:
        name = self.state.title
        self.setWindowTitle(f"{name}[*] — {APP_NAME}")
        self.setWindowModified(self.state.modified)
        self.path_label.setText(str(self.state.path) if self.state.path else "Not saved yet")
        self._relayout_status()

    def maybe_save(self, action: str = "continuing") -> bool:
        """True when it is fine to discard the open project (saved, discarded, or unchanged)."""
        if not self.state.modified:
            return True
        B = QMessageBox.StandardButton
        answer = QMessageBox.warning(
            self, "Unsaved changes",
            f"The project “{self.state.title}” has unsaved changes.\nSave them before {action}?",
            B.Save | B.Discard | B.Cancel, B.Save)
        if answer == B.Save:
            return self.save()
        return answer == B.Discard

    def new_project(self) -> bool:
        if not self.maybe_save("starting a new project"):
            return False
        self.banner.clear()
        self.state.new_project(Project())
        self.show_page("model")
        self.state.status("New project: choose a model to start.")
        return True

    def open_project_dialog(self) -> bool:
        if not self.maybe_save("opening another project"):
            return False
        path, _ = QFileDialog.getOpenFileName(
            self, "Open Project", self.settings.last_folder("project"),
            f"Transfer Studio projects (*{PROJECT_SUFFIX});;JSON files (*.json);;All files (*)")
        if not path:
            return False
        return self.open_project(path, ask=False)

    def open_project(self, path: str | os.PathLike[str], ask: bool = True) -> bool:
        if ask and not self.maybe_save("opening another project"):
            return False
        try:
            self.state.open_project(path)
        except UserError as exc:
            self.banner.show_message(str(exc), "error")
            if not Path(path).exists():
                self.settings.remove_recent_project(path)
            return False
        except OSError as exc:
            self.banner.show_message(f"cannot read {path}: {exc.strerror or exc}", "error")
            return False
        self.banner.clear()
        self.settings.add_recent_project(path)
        self.show_page("model")
        self.state.status(f"Opened {path}")
        from transfer_studio.ui.relocate import relocate_data_root

        relocate_data_root(self.state, self)  # the dataset folder moved: ask to locate it
        return True

    def save(self) -> bool:
        if self.state.path is None:
            return self.save_as()
        return self._save_to(self.state.path)

    def save_as(self) -> bool:
        start = self.state.path or Path(self.settings.last_folder("project")) / f"{_safe_name(self.state.title)}{PROJECT_SUFFIX}"
        path, _ = QFileDialog.getSaveFileName(self, "Save Project As", str(start),
                                              f"Transfer Studio projects (*{PROJECT_SUFFIX})")
        if not path:
            return False
        target = Path(path)
        if target.suffix.lower() not in (PROJECT_SUFFIX, ".json"):
            target = target.with_name(target.name + PROJECT_SUFFIX)
        if self.state.project.name in ("", "Untitled"):
            self.state.project.name = target.stem
        return self._save_to(target)

    def _save_to(self, path: Path) -> bool:
        try:
            self.state.save(path)
        except OSError as exc:
            self.banner.show_message(f"Could not save the project to {path}: {exc.strerror or exc}. "
                                     "Choose another folder with File → Save As.", "error")
            return False
        self.settings.add_recent_project(path)
        self._update_title()
        self.state.status(f"Saved {path}", 4000)
        return True

    def open_sample(self) -> bool:
        """Open the digits sample on the Model page: as the user saved it, or created first.

        A saved sample is never rewritten here (``sample.open_sample_project``); going back to its
        defaults is ``reset_sample``, which asks first.
        """
        return self._sample_job(reset=False)

    def reset_sample(self) -> bool:
        """Put the sample project back to its defaults, after the user confirms; then open it."""
        from transfer_studio.sample import sample_project_path

        path = sample_project_path(sample_dir())
        is_open = self.state.path is not None and _same_file(self.state.path, path)
        # The question below covers unsaved edits of the sample itself; another project's edits
        # get the usual prompt first.
        if not is_open and not self.maybe_save("resetting the sample project"):
            return False
        B = QMessageBox.StandardButton
        answer = QMessageBox.question(
            self, "Reset the sample project",
            "Reset the sample project to its defaults?\n\nIts settings, model changes and list of "
            "runs are replaced by the original ones, and its images are written again. Run folders "
            f"stay on disk ({path.parent / 'runs'}).", B.Reset | B.Cancel, B.Cancel)
        if answer != B.Reset:
            return False
        return self._sample_job(reset=True)

    def _sample_job(self, *, reset: bool) -> bool:
        if self._sample_task is not None and self._sample_task.is_running():
            return False
        if not reset and not self.maybe_save("opening the sample project"):
            return False
        dest = sample_dir()

        def make(progress, cancel) -> tuple[Project, str]:
            from transfer_studio.sample import open_sample_project, reset_sample_project

            project, path = reset_sample_project(dest) if reset else open_sample_project(dest)
            return project, str(path)

        def done(result: tuple[Project, str]) -> None:
            project, path = result
            self.busy_bar.stop()
            self.banner.clear()
            self.state.new_project(project, Path(path))
            self.settings.add_recent_project(path)
            self.show_page("model")
            self.state.status(("Sample project reset to its defaults" if reset else "Sample project ready")
                              + ": handwritten digits with the bundled EfficientNet-Lite0.")

        def failed(message: str, details: str) -> None:
            self.busy_bar.stop()
            what = "reset" if reset else "open"
            self.banner.show_message(f"Could not {what} the sample project: {message}", "error",
                                     details=details or None,
                                     action_text=None if reset else "Reset the sample…",
                                     action=None if reset else self.reset_sample)

        self._sample_task = worker.run_task(make, name="sample", on_result=done, on_error=failed,
                                            on_cancelled=self.busy_bar.stop)
        self.busy_bar.start(("Resetting" if reset else "Preparing")
                            + " the sample project (digits + EfficientNet-Lite0)…", handle=self._sample_task)
        return True

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

    def _toggle_fullscreen(self) -> None:
        self.showNormal() if self.isFullScreen() else self.showFullScreen()

    def _show_shortcuts(self) -> None:
        rows = [("Ctrl+N / Ctrl+O", "New / open project"), ("Ctrl+S / Ctrl+Shift+S", "Save / save as"),
                ("Ctrl+Z / Ctrl+Shift+Z", "Undo / redo freezing and surgery"),
                ("Ctrl+0", "Welcome page"), ("Ctrl+1 … Ctrl+9", "Model, Data, Strategy, … Runs"),
                ("Ctrl+Shift+L", "Review labels (keys A, K, S, 1–9 there)"),
                ("Ctrl+PgDown / Ctrl+PgUp", "Next / previous step"),
                ("Graph: wheel, + / −, 0", "Zoom, fit"), ("Graph: drag", "Pan"),
                ("Graph: double-click a block", "Expand / collapse"), ("Graph: Ctrl+F", "Search layers"),
                ("Ctrl+Q", "Quit")]
        text = "".join(f"<tr><td><b>{k}</b>&nbsp;&nbsp;</td><td>{v}</td></tr>" for k, v in rows)
        QMessageBox.information(self, "Keyboard shortcuts", f"<table>{text}</table>")

    def _about(self) -> None:
        from transfer_studio import __version__

        QMessageBox.about(self, f"About {APP_NAME}",
                          f"<h3>{APP_NAME} {__version__}</h3><p>Point-and-click transfer learning for image "
                          "classifiers, offline on your workstation.</p><p>Pick a pretrained network, freeze "
                          "what it already knows, and fine-tune it on your own pictures.</p>")

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
        if self._closing:
            return

        def done(text: str) -> None:
            self.device_label.setText(text)
            self._relayout_status()
            runtime.settle_heap()  # torch is loaded now: keep full GC passes from scanning all of it

        def failed(message: str, _details: str) -> None:
            self.device_label.setText("Compute device unknown")
            self._relayout_status()
            self.device_label.setToolTip(message)

        self._device_task = worker.run_task(detect_compute_device, name="device", pass_control=False,
                                            on_result=done, on_error=failed)

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

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if self._closing:  # already shut down (tests, a second close): nothing left to ask
            event.accept()
            return
        busy = [PAGES[PAGE_KEYS.index(k)].title for k in self.busy_pages()]
        if busy:
            B = QMessageBox.StandardButton
            answer = QMessageBox.question(
                self, "Work in progress",
                f"{', '.join(busy)} still working. Stop and quit? (A training run keeps its last "
                "completed epoch and can be resumed.)", B.Yes | B.No, B.No)
            if answer != B.Yes:
                event.ignore()
                return
        if not self.maybe_save("quitting"):
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


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _safe_name(name: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_ " else "_" for ch in name).strip()
    return keep or "project"
