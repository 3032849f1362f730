"""The main window's pages: what each is (``PageSpec``, ``PAGES``), its shortcut, and building one by
name the first time it is shown.

A page module is imported only when its page is first shown, so the window appears before torch and
the pages' heavy dependencies load. A page module that fails to import shows an explanation in its
place instead of taking the app down.
"""

from __future__ import annotations

import importlib
import traceback
from dataclasses import dataclass

from PySide6.QtWidgets import QVBoxLayout, QWidget

from transfer_studio.ui.state import AppState
from transfer_studio.ui.widgets import EmptyState, MessageBanner


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

# Widgets (by object name) of other pages that edit a training run's settings: locked while a run
# trains, as the Train page locks its own (they used to stay editable next to its locked fields).
LOCKED_WHILE_TRAINING: dict[str, tuple[str, ...]] = {
    "strategy": ("strategy_content",),
    "augment": ("augment_preset_row", "augment_controls"),
}
TRAINING_LOCK_TIP = ("Locked while a training run uses these settings: stop the run or let it finish "
                     "to change them.")


def page_shortcut(spec: PageSpec) -> str:
    """Ctrl+0 the welcome page, Ctrl+1 … Ctrl+9 the numbered steps; a page may name its own."""
    if spec.shortcut:
        return spec.shortcut
    numbered = [p.key for p in PAGES if not p.shortcut]
    return f"Ctrl+{numbered.index(spec.key)}" if spec.key in numbered else ""


def build_page(spec: PageSpec, state: AppState) -> QWidget:
    """The page ``spec`` names, imported now; an explanation in its place when it cannot be built."""
    modname = f"transfer_studio.ui.pages.{spec.module}"
    try:
        module = importlib.import_module(modname)
        page = getattr(module, spec.cls)(state, None)
        if page.objectName() != f"page_{spec.key}":
            page.setObjectName(f"page_{spec.key}")
        return page
    except ModuleNotFoundError as exc:
        if exc.name == modname:
            return EmptyState(spec.icon, spec.title, f"{spec.hint}.\n\nThe {spec.title} step is not part of this "
                              "build yet.", object_name=f"page_{spec.key}_unavailable")
        return failed_page(spec, exc)
    except Exception as exc:  # noqa: BLE001 - one broken page must not take the app down
        return failed_page(spec, exc)


def failed_page(spec: PageSpec, exc: BaseException) -> QWidget:
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


def apply_training_lock(pages: dict[str, QWidget], active: bool) -> None:
    """Lock (``active``) or unlock the training settings other pages edit (``LOCKED_WHILE_TRAINING``)."""
    for key, names in LOCKED_WHILE_TRAINING.items():
        page = pages.get(key)
        if page is None:
            continue
        for name in names:
            widget = page.findChild(QWidget, name)
            if widget is not None:
                widget.setEnabled(not active)
                widget.setToolTip(TRAINING_LOCK_TIP if active else "")
