"""A one-line label that shortens its text to the width it is given ("…"), never the other way round."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter, QResizeEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget


class ElidedLabel(QLabel):
    """Plain text on one line, elided to the label's width; the full text is its tooltip when cut.

    A plain QLabel asks for the width of its whole text: a long status line then pushes its
    neighbours aside (the Model page's catalog lost its columns to a training message). This one
    asks for its text's width but accepts a few characters' worth, and shortens what it draws.
    ``text()`` is always the full text.
    """

    def __init__(self, text: str = "", parent: QWidget | None = None, *,
                 mode: Qt.TextElideMode = Qt.TextElideMode.ElideRight, min_chars: int = 8, hint: str = ""):
        super().__init__(text, parent)
        self._mode = mode
        self._min_chars = min_chars
        self._hint = hint
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setWordWrap(False)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self._sync_tooltip()

    def setText(self, text: str) -> None:  # noqa: N802 - Qt override
        super().setText(text)
        self._sync_tooltip()

    def set_hint(self, hint: str) -> None:
        """A tooltip of its own, shown after the full text when the text is cut."""
        self._hint = hint
        self._sync_tooltip()

    def displayed_text(self) -> str:
        """The text as drawn now (elided to the current width)."""
        return self.fontMetrics().elidedText(self.text(), self._mode, max(0, self.contentsRect().width()))

    def is_elided(self) -> bool:
        return self.displayed_text() != self.text()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        fm = self.fontMetrics()
        width = min(fm.horizontalAdvance(self.text()), fm.averageCharWidth() * self._min_chars)
        margins = self.contentsMargins()
        return QSize(width + margins.left() + margins.right(), super().minimumSizeHint().height())

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        self.style().drawItemText(painter, self.contentsRect(), int(self.alignment()), self.palette(),
                                  self.isEnabled(), self.displayed_text(), self.foregroundRole())
        painter.end()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._sync_tooltip()

    def _sync_tooltip(self) -> None:
        parts = [self.text()] if self.text() and self.is_elided() else []
        if self._hint:
            parts.append(self._hint)
        self.setToolTip("\n\n".join(parts))
