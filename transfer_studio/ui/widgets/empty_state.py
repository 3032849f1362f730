"""A friendly placeholder for a page (or panel) that has nothing to show yet."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from transfer_studio.ui import theme


class EmptyState(QWidget):
    """Icon, title, a short explanation and action buttons, centred.

    Example::

        empty = EmptyState("data", "No dataset yet", "Choose a folder with one sub-folder per class.")
        empty.add_action("Choose folder…", self._choose, object_name="choose_folder", primary=True)
    """

    def __init__(self, icon_name: str = "info", title: str = "", text: str = "",
                 parent: QWidget | None = None, *, object_name: str = "empty_state"):
        super().__init__(parent)
        self.setObjectName(object_name)
        self._icon_name = icon_name
        self.icon_label = QLabel()
        self.icon_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.title_label = QLabel()
        self.title_label.setObjectName(f"{object_name}_title")
        self.title_label.setProperty("role", "subheading")
        self.title_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text_label = QLabel()
        self.text_label.setObjectName(f"{object_name}_text")
        self.text_label.setWordWrap(True)
        self.text_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text_label.setMaximumWidth(520)
        self.text_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._buttons = QHBoxLayout()
        self._buttons.addStretch(1)
        self._buttons.addStretch(1)

        lay = QVBoxLayout(self)
        lay.addStretch(1)
        lay.addWidget(self.icon_label)
        lay.addWidget(self.title_label)
        lay.addWidget(self.text_label, 0, Qt.AlignmentFlag.AlignHCenter)
        lay.addSpacing(8)
        lay.addLayout(self._buttons)
        lay.addStretch(2)
        self.set_content(title, text, icon_name)
        theme.notifier().themeChanged.connect(self._refresh_icon)

    def set_content(self, title: str, text: str, icon_name: str | None = None) -> None:
        if icon_name is not None:
            self._icon_name = icon_name
        self.title_label.setText(title)
        self.text_label.setText(text)
        # A word-wrapped label centred in a layout gets its size hint, which Qt guessed for the
        # previous text: a new, longer text was cut after a few words. Give it the width the text
        # needs (wrapping beyond the maximum) and the height of its lines at that width.
        # No text: no minimum (heightForWidth is -1 then, and Qt warns about a negative size).
        width = min(self.text_label.maximumWidth(),
                    self.text_label.fontMetrics().horizontalAdvance(text) + 8) if text else 0
        self.text_label.setMinimumWidth(width)
        self.text_label.setMinimumHeight(max(0, self.text_label.heightForWidth(width)) if text else 0)
        self.text_label.setVisible(bool(text))
        self._refresh_icon()

    def set_actions_visible(self, visible: bool) -> None:
        """Show or hide the action buttons (e.g. while the work they would start is running)."""
        for i in range(self._buttons.count()):
            widget = self._buttons.itemAt(i).widget()
            if widget is not None:
                widget.setVisible(visible)

    def add_action(self, text: str, callback: Callable[[], None], *, object_name: str = "",
                   primary: bool = False) -> QPushButton:
        button = QPushButton(text)
        if object_name:
            button.setObjectName(object_name)
        if primary:
            button.setProperty("primary", True)
        button.clicked.connect(callback)
        self._buttons.insertWidget(self._buttons.count() - 1, button)
        return button

    def _refresh_icon(self, _theme: str = "") -> None:
        self.icon_label.setPixmap(theme.icon(self._icon_name).pixmap(48, 48))
