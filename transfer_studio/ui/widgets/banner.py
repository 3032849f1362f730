"""An inline message bar: how pages report errors and hints without modal dialogs."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QVBoxLayout, QWidget

from transfer_studio.ui import theme

LEVELS = ("info", "success", "warning", "error")


class MessageBanner(QFrame):
    """A coloured, word-wrapped message with an optional action button and expandable details.

    Hidden until ``show_message`` is called; the close button hides it again. The colours come
    from style.qss (``QFrame[banner=level]``), so both themes work.

    Example::

        banner = MessageBanner(object_name="model_banner")
        banner.show_message("Weights file does not fit resnet18: ...", "error")
    """

    actionTriggered = Signal()
    closed = Signal()

    def __init__(self, parent: QWidget | None = None, *, object_name: str = "banner",
                 closable: bool = True):
        super().__init__(parent)
        self.setObjectName(object_name)
        self._level = "info"
        self._action_cb: Callable[[], None] | None = None

        self._icon = QLabel()
        self._icon.setFixedSize(20, 20)
        self._text = QLabel()
        self._text.setObjectName(f"{object_name}_text")
        self._text.setWordWrap(True)
        self._text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                           | Qt.TextInteractionFlag.LinksAccessibleByMouse)
        self._text.setOpenExternalLinks(True)
        self._details = QLabel()
        self._details.setObjectName(f"{object_name}_details")
        self._details.setWordWrap(True)
        self._details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._details.setVisible(False)
        self._details_button = QToolButton()
        self._details_button.setText("Details")
        self._details_button.setCheckable(True)
        self._details_button.toggled.connect(self._details.setVisible)
        self._action = QPushButton()
        self._action.setObjectName(f"{object_name}_action")
        self._action.clicked.connect(self._on_action)
        self._close = QToolButton()
        self._close.setObjectName(f"{object_name}_close")
        self._close.setToolTip("Dismiss")
        self._close.setIcon(theme.icon("close"))
        self._close.clicked.connect(self.dismiss)
        self._close.setVisible(closable)

        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self._icon, 0, Qt.AlignmentFlag.AlignTop)
        top.addWidget(self._text, 1)
        top.addWidget(self._details_button, 0, Qt.AlignmentFlag.AlignTop)
        top.addWidget(self._action, 0, Qt.AlignmentFlag.AlignTop)
        top.addWidget(self._close, 0, Qt.AlignmentFlag.AlignTop)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        lay.setSpacing(4)
        lay.addLayout(top)
        lay.addWidget(self._details)
        self.setVisible(False)
        theme.notifier().themeChanged.connect(self._refresh_icons)

    # -- API -----------------------------------------------------------------------------------
    def show_message(self, text: str, level: str = "error", *, details: str | None = None,
                     action_text: str | None = None, action: Callable[[], None] | None = None) -> None:
        """Show ``text``; ``details`` (e.g. a traceback) sits behind a "Details" toggle."""
        if level not in LEVELS:
            raise ValueError(f"unknown banner level {level!r}")
        self._level = level
        self.setProperty("banner", level)
        self._text.setText(text)
        self._text.setAccessibleName(f"{level}: {text}")
        self._details.setText(details or "")
        self._details_button.setChecked(False)
        self._details_button.setVisible(bool(details))
        self._details.setVisible(False)
        self._action_cb = action
        self._action.setText(action_text or "")
        self._action.setVisible(bool(action_text))
        self._refresh_icons()
        # Re-polish so the [banner=...] selector picks up the new property.
        self.style().unpolish(self)
        self.style().polish(self)
        self.setVisible(True)

    def clear(self) -> None:
        self._text.setText("")
        self._details.setText("")
        self.setVisible(False)

    def dismiss(self) -> None:
        self.clear()
        self.closed.emit()

    def text(self) -> str:
        """The message shown, or "" when the banner is hidden."""
        return "" if self.isHidden() else self._text.text()

    def level(self) -> str:
        return self._level

    def details(self) -> str:
        return self._details.text()

    # -- internals -----------------------------------------------------------------------------
    def _on_action(self) -> None:
        self.actionTriggered.emit()
        if self._action_cb is not None:
            self._action_cb()

    def _refresh_icons(self, _theme: str = "") -> None:
        colours = theme.semantic_colors()
        colour = {"info": colours.info, "success": colours.success, "warning": colours.warning,
                  "error": colours.error}[self._level]
        name = {"info": "info", "success": "info", "warning": "warning", "error": "error"}[self._level]
        self._icon.setPixmap(theme.icon(name, colour).pixmap(20, 20))
        self._close.setIcon(theme.icon("close"))
