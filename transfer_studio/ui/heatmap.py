"""An interactive confusion-matrix heatmap: hover shows counts, a click selects a cell.

A custom-painted QWidget rather than a pyqtgraph ImageItem: a matrix has at most a few hundred
classes, and painting rectangles ourselves gives exact cell geometry for hit-testing, labels that
follow the palette, and keyboard navigation (arrows move the selection, Enter/Space "clicks").

Colours: the intensity of a cell is its share of its row (recall for the diagonal), so a rare class's
confusions are as visible as a common one's. Diagonal cells use the palette's highlight colour,
off-diagonal ones the theme's semantic error colour; both blend from the palette's base colour, so
light and dark themes read equally well.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QEvent, QPoint, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QHelpEvent,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPalette,
    QPen,
)
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from transfer_studio.ui import theme

MAX_CELL = 96  # px: a 2-class matrix should not fill the screen
MIN_CELL = 4
MIN_CELL_FOR_NUMBERS = 20
LABEL_CHARS = 14


def _blend(base: QColor, top: QColor, amount: float) -> QColor:
    a = max(0.0, min(1.0, amount))
    return QColor(round(base.red() + (top.red() - base.red()) * a),
                  round(base.green() + (top.green() - base.green()) * a),
                  round(base.blue() + (top.blue() - base.blue()) * a))


def _elide(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ConfusionMatrixView(QWidget):
    """Rows are true classes, columns predicted classes; ``cellClicked(true, predicted)``."""

    cellClicked = Signal(int, int)
    cellHovered = Signal(int, int)  # (-1, -1) when the pointer leaves the cells

    def __init__(self, parent: QWidget | None = None, *, object_name: str = "confusion_matrix"):
        super().__init__(parent)
        self.setObjectName(object_name)
        self.setAccessibleName("Confusion matrix")
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 160)
        self._matrix: list[list[int]] = []
        self._classes: list[str] = []
        self._row_totals: list[int] = []
        self._hover: tuple[int, int] | None = None
        self._selected: tuple[int, int] | None = None

    # -- data ----------------------------------------------------------------------------------
    def set_matrix(self, matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> None:
        n = len(classes)
        rows = [[int(v) for v in row] for row in matrix]
        if len(rows) != n or any(len(r) != n for r in rows):
            raise ValueError(f"a confusion matrix for {n} classes must be {n}x{n}")
        self._matrix = rows
        self._classes = [str(c) for c in classes]
        self._row_totals = [sum(r) for r in rows]
        self._hover = None
        self._selected = None
        self.setAccessibleDescription(f"{n} by {n} matrix: rows are true classes, columns predicted classes")
        self.updateGeometry()
        self.update()

    def clear(self) -> None:
        self.set_matrix([], [])

    def matrix(self) -> list[list[int]]:
        return [list(r) for r in self._matrix]

    def classes(self) -> list[str]:
        return list(self._classes)

    def count(self, true: int, predicted: int) -> int:
        return self._matrix[true][predicted]

    def selected_cell(self) -> tuple[int, int] | None:
        return self._selected

    def select_cell(self, true: int, predicted: int, *, emit: bool = True) -> None:
        n = len(self._classes)
        if not (0 <= true < n and 0 <= predicted < n):
            raise IndexError(f"no cell ({true}, {predicted}) in a {n}x{n} matrix")
        self._selected = (true, predicted)
        self.update()
        if emit:
            self.cellClicked.emit(true, predicted)

    def tooltip_text(self, true: int, predicted: int) -> str:
        """What hovering a cell says: the classes, the count and its share of the true class."""
        count = self._matrix[true][predicted]
        total = self._row_totals[true]
        share = f" ({count / total:.0%} of {self._classes[true]})" if total else ""
        what = "correct" if true == predicted else "mistaken"
        noun = "image" if count == 1 else "images"
        return (f"True: {self._classes[true]}\nPredicted: {self._classes[predicted]}\n"
                f"{count} {noun} {what}{share}" + ("\nClick to see them" if count else ""))

    # -- geometry ------------------------------------------------------------------------------
    def _label_font(self) -> QFont:
        font = QFont(self.font())
        if font.pointSizeF() > 0:
            font.setPointSizeF(max(7.0, font.pointSizeF() * 0.9))
        return font

    def _layout(self) -> tuple[int, int, int, int, int]:
        """(left, top, cell, label_step, n): where the grid starts and how big its cells are."""
        n = len(self._classes)
        fm = QFontMetrics(self._label_font())
        longest = max((fm.horizontalAdvance(_elide(c)) for c in self._classes), default=0)
        title_h = fm.height() + 6
        left = title_h + longest + 8
        top = title_h + longest + 8  # column labels are drawn rotated
        if n == 0:
            return left, top, 0, 1, 0
        avail = min(self.width() - left - 8, self.height() - top - 8)
        cell = max(MIN_CELL, min(MAX_CELL, avail // n))
        step = max(1, -(-(fm.height() + 2) // cell))  # label every k-th class when cells are small
        return left, top, cell, step, n

    def cell_rect(self, true: int, predicted: int) -> QRect:
        left, top, cell, _step, _n = self._layout()
        return QRect(left + predicted * cell, top + true * cell, cell, cell)

    def cell_at(self, pos: QPoint) -> tuple[int, int] | None:
        left, top, cell, _step, n = self._layout()
        if n == 0 or cell == 0:
            return None
        col = (pos.x() - left) // cell if pos.x() >= left else -1
        row = (pos.y() - top) // cell if pos.y() >= top else -1
        if 0 <= row < n and 0 <= col < n:
            return int(row), int(col)
        return None

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        n = max(1, len(self._classes))
        fm = QFontMetrics(self._label_font())
        longest = max((fm.horizontalAdvance(_elide(c)) for c in self._classes), default=40)
        margin = fm.height() + 6 + longest + 16
        side = margin + min(n * 36, 520)
        return QSize(side, side)

    # -- painting ------------------------------------------------------------------------------
    def cell_colour(self, true: int, predicted: int) -> QColor:
        pal = self.palette()
        base = pal.color(QPalette.ColorRole.Base)
        if true == predicted:
            top = pal.color(QPalette.ColorRole.Highlight)
        else:
            top = theme.semantic_colors(theme.is_dark(pal)).error
        total = self._row_totals[true]
        share = self._matrix[true][predicted] / total if total else 0.0
        # A floor so that any non-zero cell is visibly tinted.
        return _blend(base, top, 0.12 + 0.88 * share if share > 0 else 0.0)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        pal = self.palette()
        text = pal.color(QPalette.ColorRole.WindowText)
        grid = pal.color(QPalette.ColorRole.Mid)
        left, top, cell, step, n = self._layout()
        font = self._label_font()
        p.setFont(font)
        fm = QFontMetrics(font)
        if n == 0:
            p.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No evaluation yet")
            p.end()
            return
        size = cell * n
        # Cells.
        for i in range(n):
            for j in range(n):
                r = QRect(left + j * cell, top + i * cell, cell, cell)
                fill = self.cell_colour(i, j)
                p.fillRect(r, fill)
                if cell >= MIN_CELL_FOR_NUMBERS:
                    value = self._matrix[i][j]
                    if value or i == j:
                        p.setPen(QColor("#ffffff") if fill.lightness() < 140 else QColor("#111111"))
                        p.drawText(r, Qt.AlignmentFlag.AlignCenter, str(value))
        # Grid lines (only while cells are big enough for them to help).
        if cell >= 10:
            p.setPen(QPen(grid, 1))
            for k in range(n + 1):
                p.drawLine(left + k * cell, top, left + k * cell, top + size)
                p.drawLine(left, top + k * cell, left + size, top + k * cell)
        else:
            p.setPen(QPen(grid, 1))
            p.drawRect(left, top, size, size)
        # Hover and selection outlines.
        for cell_pos, colour, width in ((self._hover, text, 1), (self._selected, pal.color(QPalette.ColorRole.Highlight), 3)):
            if cell_pos is not None:
                i, j = cell_pos
                pen = QPen(colour, width)
                pen.setJoinStyle(Qt.PenJoinStyle.MiterJoin)
                p.setPen(pen)
                p.setBrush(Qt.BrushStyle.NoBrush)
                p.drawRect(QRect(left + j * cell, top + i * cell, cell, cell).adjusted(1, 1, -1, -1))
        # Labels: true classes left of the rows, predicted classes above the columns (rotated).
        p.setPen(text)
        for k in range(0, n, step):
            label = _elide(self._classes[k])
            p.drawText(QRect(0, top + k * cell, left - 6, cell),
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, label)
            p.save()
            p.translate(left + k * cell + cell / 2 + fm.ascent() / 2 - 1, top - 6)
            p.rotate(-90)
            p.drawText(0, 0, label)
            p.restore()
        # Axis titles.
        bold = QFont(font)
        bold.setBold(True)
        p.setFont(bold)
        p.drawText(QRectF(left, 0, size, fm.height() + 4), Qt.AlignmentFlag.AlignHCenter, "Predicted class")
        p.save()
        p.translate(fm.ascent() + 1, top + size / 2)
        p.rotate(-90)
        p.drawText(QRectF(-size / 2, -fm.ascent(), size, fm.height() + 4), Qt.AlignmentFlag.AlignHCenter,
                   "True class")
        p.restore()
        if self.hasFocus() and self._selected is None:
            p.setPen(QPen(pal.color(QPalette.ColorRole.Highlight), 1, Qt.PenStyle.DotLine))
            p.drawRect(left - 2, top - 2, size + 3, size + 3)
        p.end()

    # -- interaction ---------------------------------------------------------------------------
    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        cell = self.cell_at(event.position().toPoint())
        if cell != self._hover:
            self._hover = cell
            self.update()
            self.cellHovered.emit(*(cell if cell is not None else (-1, -1)))
            if cell is not None:
                QToolTip.showText(event.globalPosition().toPoint(), self.tooltip_text(*cell), self,
                                  self.cell_rect(*cell))
            else:
                QToolTip.hideText()
        super().mouseMoveEvent(event)

    def leaveEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        if self._hover is not None:
            self._hover = None
            self.update()
            self.cellHovered.emit(-1, -1)
        super().leaveEvent(event)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            cell = self.cell_at(event.pos())
            if cell is None:
                QToolTip.hideText()
                event.ignore()
            else:
                QToolTip.showText(event.globalPos(), self.tooltip_text(*cell), self, self.cell_rect(*cell))
            return True
        return super().event(event)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if event.button() == Qt.MouseButton.LeftButton:
            cell = self.cell_at(event.position().toPoint())
            if cell is not None:
                self.setFocus(Qt.FocusReason.MouseFocusReason)
                self.select_cell(*cell)
                return
        super().mousePressEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        n = len(self._classes)
        if n == 0:
            super().keyPressEvent(event)
            return
        i, j = self._selected if self._selected is not None else (0, 0)
        key = event.key()
        moves = {Qt.Key.Key_Left: (0, -1), Qt.Key.Key_Right: (0, 1), Qt.Key.Key_Up: (-1, 0),
                 Qt.Key.Key_Down: (1, 0)}
        if key in moves:
            di, dj = moves[key]
            if self._selected is not None:
                i, j = min(n - 1, max(0, i + di)), min(n - 1, max(0, j + dj))
            self.select_cell(i, j)
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Space):
            self.select_cell(i, j)
        else:
            super().keyPressEvent(event)
