"""The welcome page: start a project, open one, reopen a recent one, or try the sample.

The page only asks; the main window does (it owns the unsaved-changes prompt and file dialogs):
``newRequested``, ``openRequested``, ``openPathRequested(path)`` and ``sampleRequested``.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QCommandLinkButton,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from transfer_studio.ui import theme
from transfer_studio.ui.settings import Settings
from transfer_studio.ui.state import AppState

_STEPS = [
    ("model", "Model", "Pick a pretrained network and see it as a graph."),
    ("data", "Data", "Point to a folder with one sub-folder per class."),
    ("strategy", "Strategy", "Freeze what the network already knows."),
    ("train", "Train", "Fine-tune on your GPU or CPU, live charts."),
    ("export", "Export", "Save a model other programs can load."),
]


class WelcomePage(QWidget):
    TITLE = "Welcome"

    newRequested = Signal()
    openRequested = Signal()
    openPathRequested = Signal(str)
    sampleRequested = Signal()

    def __init__(self, state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("page_welcome")
        self.state = state

        heading = QLabel("Transfer Studio")
        heading.setObjectName("welcome_heading")
        heading.setProperty("role", "heading")
        tagline = QLabel("Teach a pretrained image classifier your own categories — on your own "
                         "machine, with no internet connection needed.")
        tagline.setWordWrap(True)
        tagline.setProperty("role", "muted")

        # -- start card
        self.new_button = QCommandLinkButton("New project", "Start from a pretrained model of your choice.")
        self.new_button.setObjectName("new_project_button")
        self.open_button = QCommandLinkButton("Open project…", "Continue a saved .tsproj project.")
        self.open_button.setObjectName("open_project_button")
        self.sample_button = QCommandLinkButton(
            "Try the sample project",
            "Handwritten digits with the bundled EfficientNet-Lite0 — ready in seconds, no download.")
        self.sample_button.setObjectName("sample_button")
        self.new_button.clicked.connect(self.newRequested)
        self.open_button.clicked.connect(self.openRequested)
        self.sample_button.clicked.connect(self.sampleRequested)
        start = _card("Start", [self.new_button, self.open_button, self.sample_button])

        # -- recent card
        self.recent_list = QListWidget()
        self.recent_list.setObjectName("recent_list")
        self.recent_list.setAccessibleName("Recent projects")
        self.recent_list.setIconSize(QSize(18, 18))
        # Long paths are shortened in the middle (the full path is the tooltip): a horizontal
        # scrollbar cut them and hid the list's last row.
        self.recent_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.recent_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.recent_list.setUniformItemSizes(True)
        self.recent_list.itemActivated.connect(self._open_item)
        self.recent_empty = QLabel("Projects you save or open show up here.")
        self.recent_empty.setObjectName("recent_empty")
        self.recent_empty.setProperty("role", "muted")
        self.recent_empty.setWordWrap(True)
        self.open_recent_button = QPushButton("Open")
        self.open_recent_button.setObjectName("open_recent_button")
        self.open_recent_button.clicked.connect(lambda: self._open_item(self.recent_list.currentItem()))
        self.clear_recent_button = QPushButton("Clear list")
        self.clear_recent_button.setObjectName("clear_recent_button")
        self.clear_recent_button.clicked.connect(self._clear_recent)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.clear_recent_button)
        buttons.addWidget(self.open_recent_button)
        recent = _card("Recent projects", [self.recent_list, self.recent_empty], buttons)
        self.recent_list.currentItemChanged.connect(self._on_current_item)

        cards = QHBoxLayout()
        cards.setSpacing(16)
        cards.addWidget(start, 1)
        cards.addWidget(recent, 1)

        # -- how it works
        steps = QHBoxLayout()
        steps.setSpacing(10)
        self._step_icons: list[tuple[QLabel, str]] = []
        for i, (icon_name, title, text) in enumerate(_STEPS):
            box = QVBoxLayout()
            icon_label = QLabel()
            self._step_icons.append((icon_label, icon_name))
            t = QLabel(f"{i + 1}. {title}")
            t.setProperty("role", "subheading")
            d = QLabel(text)
            d.setWordWrap(True)
            d.setProperty("role", "muted")
            box.addWidget(icon_label)
            box.addWidget(t)
            box.addWidget(d)
            box.addStretch(1)
            steps.addLayout(box, 1)
        how = QLabel("How it works")
        how.setProperty("role", "subheading")

        inner = QWidget()
        inner.setMaximumWidth(980)
        lay = QVBoxLayout(inner)
        lay.setContentsMargins(24, 24, 24, 24)
        lay.setSpacing(12)
        lay.addWidget(heading)
        lay.addWidget(tagline)
        lay.addSpacing(10)
        lay.addLayout(cards)
        lay.addSpacing(14)
        lay.addWidget(how)
        lay.addLayout(steps)
        lay.addStretch(1)
        outer = QHBoxLayout(self)
        outer.addStretch(1)
        outer.addWidget(inner, 6)
        outer.addStretch(1)

        state.pathChanged.connect(self.refresh_recent)
        theme.notifier().themeChanged.connect(self._refresh_icons)
        self._refresh_icons()
        self.refresh_recent()

    # -- recent projects -----------------------------------------------------------------------
    def refresh_recent(self, *_args: object) -> None:
        self.recent_list.clear()
        settings = Settings()
        for path in settings.recent_projects():
            p = Path(path)
            exists = p.is_file()
            item = QListWidgetItem(theme.icon("open"), f"{p.stem}\n{p.parent}" if exists else f"{p.stem} (missing)\n{p.parent}")
            item.setData(Qt.ItemDataRole.UserRole, path)
            item.setToolTip(path if exists else f"{path}\nThe file was moved or deleted.")
            if not exists:
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
            self.recent_list.addItem(item)
        has = self.recent_list.count() > 0
        self.recent_list.setVisible(has)
        self.recent_empty.setVisible(not has)
        self.clear_recent_button.setEnabled(has)
        self.open_recent_button.setEnabled(False)

    def _on_current_item(self, item: QListWidgetItem | None, _previous: QListWidgetItem | None = None) -> None:
        self.open_recent_button.setEnabled(item is not None and bool(item.flags() & Qt.ItemFlag.ItemIsEnabled))

    def _open_item(self, item: QListWidgetItem | None) -> None:
        if item is None or not item.flags() & Qt.ItemFlag.ItemIsEnabled:
            return
        self.openPathRequested.emit(str(item.data(Qt.ItemDataRole.UserRole)))

    def _clear_recent(self) -> None:
        Settings().clear_recent_projects()
        self.refresh_recent()

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self.refresh_recent()

    def _refresh_icons(self, _theme: str = "") -> None:
        for button, name in ((self.new_button, "new"), (self.open_button, "open"), (self.sample_button, "sample")):
            button.setIcon(theme.icon(name))
            button.setIconSize(QSize(24, 24))
        for label, name in self._step_icons:
            label.setPixmap(theme.icon(name).pixmap(28, 28))


def _card(title: str, widgets: list[QWidget], footer: QHBoxLayout | None = None) -> QFrame:
    frame = QFrame()
    frame.setProperty("card", True)
    lay = QVBoxLayout(frame)
    lay.setContentsMargins(14, 12, 14, 12)
    head = QLabel(title)
    head.setProperty("role", "subheading")
    lay.addWidget(head)
    for w in widgets:
        lay.addWidget(w)
    if footer is not None:
        lay.addLayout(footer)
    lay.addStretch(1)
    return frame
