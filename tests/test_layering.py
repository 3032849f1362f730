"""core, training and the CLI never import Qt: they must work on a machine without PySide6. The page
models (ui/models) don't either: they are tested without a QApplication."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "transfer_studio"
QT_ROOTS = {"PySide6", "shiboken6", "pyqtgraph", "PyQt5", "PyQt6", "qtpy"}

BLOCKER = """
import sys
class _BlockQt:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {roots!r}:
            raise ImportError(name + ' is blocked')
sys.meta_path.insert(0, _BlockQt())
"""


def _qt_free_modules() -> list[str]:
    mods = []
    for sub in ("core", "training", "cli", "ui/models"):
        for path in sorted((PKG / sub).rglob("*.py")):
            rel = path.relative_to(PKG.parent).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods.append(".".join(parts))
    return mods + ["transfer_studio.config", "transfer_studio.sample"]


def _imports(path: Path) -> list[tuple[ast.stmt, list[str]]]:
    """The import statements of a file, each with the names it imports (``from X import Y``: ``X.Y``)."""
    out: list[tuple[ast.stmt, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.append((node, [a.name for a in node.names]))
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node, [f"{node.module}.{a.name}" for a in node.names]))
    return out


def test_no_qt_import_statements_in_qt_free_packages():
    offenders = []
    for sub in ("core", "training", "cli", "ui/models"):
        for path in (PKG / sub).rglob("*.py"):
            for node, names in _imports(path):
                # a page model may use other page models and the Qt-free import gate, nothing else of the UI
                allowed = ("transfer_studio.ui.models", "transfer_studio.ui.runtime") if sub == "ui/models" else ()
                if any(n.split(".")[0] in QT_ROOTS or (n.startswith("transfer_studio.ui") and not n.startswith(allowed))
                       for n in names):
                    offenders.append(f"{path.relative_to(PKG)}:{node.lineno}")
    assert offenders == []


def test_qt_free_packages_import_and_cli_runs_with_qt_blocked():
    mods = [m for m in _qt_free_modules() if (PKG.parent / (m.replace(".", "/") + ".py")).exists()
            or (PKG.parent / m.replace(".", "/") / "__init__.py").exists()]
    code = BLOCKER.format(roots=QT_ROOTS) + f"""
import importlib
for m in {mods!r}:
    importlib.import_module(m)
from transfer_studio.cli import main
raise SystemExit(main(['models', '--json']))
"""
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"efficientnet_lite0"' in proc.stdout


def test_pages_do_not_import_each_other():
    """Issue 13.3: a page uses shared widgets (ui/widgets) and page models (ui/models), not another page;
    only its own helper modules (``<page>_widgets``, ``model_catalog`` for ``model``) are its to import."""
    pages = PKG / "ui" / "pages"
    offenders = []
    for path in pages.glob("*.py"):
        for node, names in _imports(path):
            for name in names:
                if not name.startswith("transfer_studio.ui.pages."):
                    continue
                other = name.split(".")[3]
                own = other == path.stem or other.startswith(path.stem + "_") or path.stem.startswith(other + "_")
                if not own:
                    offenders.append(f"{path.name}:{node.lineno} imports {name}")
    assert offenders == []
