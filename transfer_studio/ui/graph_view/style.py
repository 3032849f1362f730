"""How the graph looks: palette colours, fonts, prepared text and the sizes the parts share."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPalette, QStaticText

from transfer_studio.core.freeze_status import FROZEN, MIXED, NONE, TRAINABLE
from transfer_studio.ui import theme

LOD_TEXT = 0.45  # below this zoom, boxes are drawn without text
LOD_OVERVIEW = 0.3  # below this zoom, one item draws everything (no per-box Python calls)
MIN_ZOOM, MAX_ZOOM = 0.02, 4.0
BADGE = 14.0  # side of the freeze badge and of the +/- toggle


class Colors:
    """Colours for the current palette, refreshed in place on theme change (holders keep the object)."""

    def __init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        self._tints: dict[tuple[int, float], QColor] = {}
        dark = theme.is_dark()
        sem = theme.semantic_colors(dark)
        app_pal = QPalette() if not _app_palette() else _app_palette()
        self.base = app_pal.color(QPalette.ColorRole.Base)
        self.window = app_pal.color(QPalette.ColorRole.Window)
        self.text = app_pal.color(QPalette.ColorRole.Text)
        self.muted = app_pal.color(QPalette.ColorRole.PlaceholderText)
        self.mid = app_pal.color(QPalette.ColorRole.Mid)
        self.selected = app_pal.color(QPalette.ColorRole.Highlight)
        self.edge = QColor(self.text)
        self.edge.setAlphaF(0.45)
        self.state = {FROZEN: sem.frozen, TRAINABLE: sem.trainable, MIXED: sem.trainable, NONE: sem.neutral}
        self.frozen = sem.frozen
        self.trainable = sem.trainable
        self.modified = sem.modified
        self.neutral = sem.neutral
        self.match = sem.highlight
        self.dark = dark
        self.frame_fill = QColor(self.text)
        self.frame_fill.setAlphaF(0.035 if not dark else 0.05)

    def tint(self, c: QColor, amount: float) -> QColor:
        """``c`` mixed into the base colour: light fills that keep text readable in both themes."""
        key = (c.rgba(), amount)
        cached = self._tints.get(key)
        if cached is None:
            b = self.base
            cached = QColor(round(b.red() + (c.red() - b.red()) * amount),
                            round(b.green() + (c.green() - b.green()) * amount),
                            round(b.blue() + (c.blue() - b.blue()) * amount))
            self._tints[key] = cached
        return cached


def _app_palette() -> QPalette | None:
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    return app.palette() if app is not None else None  # type: ignore[union-attr]


_FONT_CACHE: dict[str, QFont] = {}


def font(kind: str) -> QFont:
    """The shared font of a kind of text: "title", "small" or anything else (body)."""
    f = _FONT_CACHE.get(kind)
    if f is None:
        f = QFont()
        if kind == "title":
            f.setPointSizeF(9.5)
            f.setBold(True)
        elif kind == "small":
            f.setPointSizeF(8.0)
        else:
            f.setPointSizeF(9.0)
        _FONT_CACHE[kind] = f
    return f


def static_text(text: str) -> QStaticText:
    """Plain text laid out once and cached by Qt: items prepare theirs on first paint."""
    st = QStaticText(text)
    st.setTextFormat(Qt.TextFormat.PlainText)
    st.setPerformanceHint(QStaticText.PerformanceHint.AggressiveCaching)
    return st


def elide_left(text: str, f: QFont, width: float) -> str:
    fm = QFontMetricsF(f)
    if fm.horizontalAdvance(text) <= width:
        return text
    return fm.elidedText(text, Qt.TextElideMode.ElideLeft, width)


def elide_right(text: str, f: QFont, width: float) -> str:
    return QFontMetricsF(f).elidedText(text, Qt.TextElideMode.ElideRight, width)
