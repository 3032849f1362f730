"""Light and dark palettes, the stylesheet and icons from ``resources/``.

Resources live in the repository's top-level ``resources/`` folder; the wheel maps that folder into
the package as ``transfer_studio/resources`` (pyproject's force-include).
``transfer_studio.resources_path`` finds it either way.

Widgets use palette roles for everything except *semantic* colours (frozen / trainable / modified,
and message levels), which come from ``semantic_colors()`` in a light and a dark variant.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QByteArray, QObject, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QApplication

from transfer_studio.resources_path import resource_path, resources_dir  # noqa: F401 - re-exported

THEMES = ("system", "light", "dark")

# Icons are drawn with this stroke colour and recoloured to the palette's text colour on load.
_ICON_INK = "#1f2933"


# -- resources ---------------------------------------------------------------------------------
# Found without Qt (transfer_studio.resources_path): the CLI's desktop-entry command needs them too.
def resource_text(name: str) -> str:
    return resource_path(name).read_text(encoding="utf-8")


# -- colours -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SemanticColors:
    frozen: QColor
    trainable: QColor
    modified: QColor
    neutral: QColor  # layers without parameters (ReLU, add, pooling)
    info: QColor
    success: QColor
    warning: QColor
    error: QColor
    highlight: QColor  # search matches


_LIGHT_SEMANTIC = dict(frozen="#4f7cb3", trainable="#2e9a55", modified="#e07b16", neutral="#8a939c",
                       info="#2f6fb3", success="#2e9a55", warning="#b7791f", error="#c53030",
                       highlight="#d69e2e")
_DARK_SEMANTIC = dict(frozen="#79a6dc", trainable="#4cc276", modified="#f4a340", neutral="#8b949e",
                      info="#6fb1f2", success="#4cc276", warning="#e3b341", error="#f26d6d",
                      highlight="#f2cc60")


def semantic_colors(dark: bool | None = None) -> SemanticColors:
    if dark is None:
        dark = is_dark()
    table = _DARK_SEMANTIC if dark else _LIGHT_SEMANTIC
    return SemanticColors(**{k: QColor(v) for k, v in table.items()})


def is_dark(palette: QPalette | None = None) -> bool:
    if palette is None:
        app = QGuiApplication.instance()
        if app is None:
            return False
        palette = app.palette()  # type: ignore[union-attr]
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def _palette(dark: bool) -> QPalette:
    if dark:
        colours = dict(window="#1f2329", window_text="#e6e9ed", base="#16191d", alt="#262b31",
                       text="#e6e9ed", button="#2b3138", button_text="#e6e9ed", highlight="#3d8bd9",
                       highlighted_text="#ffffff", link="#6fb1f2", tooltip="#2b3138", mid="#3a4048",
                       dark="#121417", light="#3d444d", placeholder="#8b949e", disabled="#6b737c")
    else:
        colours = dict(window="#f3f4f6", window_text="#1f2933", base="#ffffff", alt="#f0f2f5",
                       text="#1f2933", button="#e9ecef", button_text="#1f2933", highlight="#2f6fb3",
                       highlighted_text="#ffffff", link="#1f5fa3", tooltip="#ffffff", mid="#b8c0c8",
                       dark="#8a939c", light="#ffffff", placeholder="#7b8794", disabled="#9aa5b1")
    p = QPalette()
    R = QPalette.ColorRole
    c = {k: QColor(v) for k, v in colours.items()}
    for role, key in ((R.Window, "window"), (R.WindowText, "window_text"), (R.Base, "base"),
                      (R.AlternateBase, "alt"), (R.Text, "text"), (R.Button, "button"),
                      (R.ButtonText, "button_text"), (R.Highlight, "highlight"),
                      (R.HighlightedText, "highlighted_text"), (R.Link, "link"),
                      (R.ToolTipBase, "tooltip"), (R.ToolTipText, "text"), (R.Mid, "mid"),
                      (R.Dark, "dark"), (R.Light, "light"), (R.Midlight, "alt"),
                      (R.PlaceholderText, "placeholder"), (R.BrightText, "highlighted_text")):
        p.setColor(role, c[key])
    disabled = QPalette.ColorGroup.Disabled
    for role in (R.WindowText, R.Text, R.ButtonText):
        p.setColor(disabled, role, c["disabled"])
    p.setColor(disabled, R.Highlight, c["mid"])
    return p


# -- applying a theme --------------------------------------------------------------------------
class _Notifier(QObject):
    themeChanged = Signal(str)  # effective theme: "light" | "dark"


_notifier: _Notifier | None = None


def notifier() -> _Notifier:
    """Emits ``themeChanged`` after ``apply_theme``; widgets holding icons refresh them."""
    global _notifier
    if _notifier is None:
        _notifier = _Notifier()
    return _notifier


def _system_prefers_dark() -> bool:
    hints = QGuiApplication.styleHints()
    scheme = getattr(hints, "colorScheme", None)
    if scheme is None:
        return False
    return scheme() == Qt.ColorScheme.Dark


def effective_theme(name: str) -> str:
    if name not in THEMES:
        name = "system"
    if name == "system":
        return "dark" if _system_prefers_dark() else "light"
    return name


def stylesheet(dark: bool) -> str:
    """style.qss with its @variables filled in for the light or dark theme."""
    sem = semantic_colors(dark)
    variables = {
        "@sidebar_bg": "#181b20" if dark else "#e8ebef",
        "@sidebar_sel": "#2d4a6b" if dark else "#cfdff0",
        "@info_bg": "#1d3046" if dark else "#e3eef9",
        "@success_bg": "#1c3526" if dark else "#e3f4e8",
        "@warning_bg": "#3a3020" if dark else "#fbf1dd",
        "@error_bg": "#45242a" if dark else "#fbe5e5",
        "@info_fg": sem.info.name(),
        "@success_fg": sem.success.name(),
        "@warning_fg": sem.warning.name(),
        "@error_fg": sem.error.name(),
    }
    text = resource_text("style.qss")
    # Longest names first so "@info_bg" is not clobbered by a shorter prefix.
    for key in sorted(variables, key=len, reverse=True):
        text = text.replace(key, variables[key])
    return text


def apply_theme(app: QApplication, name: str = "system") -> str:
    """Fusion style + our palette + stylesheet; returns the effective theme ("light" | "dark")."""
    effective = effective_theme(name)
    dark = effective == "dark"
    app.setStyle("Fusion")
    app.setPalette(_palette(dark))
    app.setStyleSheet(stylesheet(dark))
    _icon_cache.clear()
    notifier().themeChanged.emit(effective)
    return effective


# -- icons -------------------------------------------------------------------------------------
_icon_cache: dict[tuple[str, str], QIcon] = {}


def icon(name: str, color: QColor | str | None = None) -> QIcon:
    """An icon from resources/icons/<name>.svg, drawn in the palette's text colour (or ``color``)."""
    if color is None:
        app = QGuiApplication.instance()
        pal = app.palette() if app is not None else QPalette()  # type: ignore[union-attr]
        color = pal.color(QPalette.ColorRole.WindowText)
    hex_colour = QColor(color).name()
    key = (name, hex_colour)
    cached = _icon_cache.get(key)
    if cached is not None:
        return cached
    path = resource_path(f"icons/{name}.svg")
    if not path.is_file():
        return QIcon()
    svg = path.read_text(encoding="utf-8").replace(_ICON_INK, hex_colour)
    pixmap = QPixmap()
    # Render at 64 px: sharp on HiDPI sidebars, scaled down elsewhere.
    pixmap.loadFromData(QByteArray(svg.replace('width="24" height="24"', 'width="64" height="64"')
                                   .encode("utf-8")), "SVG")
    result = QIcon(pixmap)
    _icon_cache[key] = result
    return result


def app_icon() -> QIcon:
    """The application icon: the PNG sizes generated from the SVG (packaging/make_icons.py), which
    need no SVG plugin (a frozen build may lack it), plus the SVG itself for any other size."""
    result = QIcon()
    for png in sorted(resource_path("app-icon").glob("transfer-studio-*.png")):
        result.addFile(str(png))
    svg = resource_path("transfer-studio.svg")
    if svg.is_file():
        result.addFile(str(svg))
    return result


def swatch(color: QColor, size: int = 12) -> QPixmap:
    """A small rounded colour square, for legends."""
    pm = QPixmap(size, size)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setPen(color.darker(130))
    p.setBrush(color)
    p.drawRoundedRect(0.5, 0.5, size - 1, size - 1, 3, 3)
    p.end()
    return pm
