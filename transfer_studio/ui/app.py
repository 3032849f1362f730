"""Start the desktop app: ``transfer-studio`` (no arguments), ``transfer-studio FILE.tsproj``,
``--project FILE``, ``--sample`` or ``--reset-settings``.

Nothing heavy is imported here: torch and the pages' dependencies load after the window is up.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from transfer_studio.config import PROJECT_SUFFIX
from transfer_studio.machine_settings import apply_environment
from transfer_studio.ui import theme
from transfer_studio.ui.main_window import APP_NAME, MainWindow
from transfer_studio.ui.runtime import start_preload, tune_interpreter
from transfer_studio.ui.settings import ORGANIZATION, Settings
from transfer_studio.ui.state import AppState
from transfer_studio.ui.worker import warm_qt_classes


def build_arg_parser() -> argparse.ArgumentParser:
    """The desktop app's options (docs/cli.md is generated from this parser and the CLI's)."""
    parser = argparse.ArgumentParser(prog="transfer-studio", description=f"Open the {APP_NAME} desktop app.")
    parser.add_argument("file", nargs="?", help=f"a project file (*{PROJECT_SUFFIX}) to open")
    parser.add_argument("--project", metavar="FILE", help="open this project file")
    parser.add_argument("--sample", action="store_true",
                        help="open the sample project (handwritten digits + the bundled EfficientNet-Lite0)")
    parser.add_argument("--reset-settings", action="store_true",
                        help="forget window layout, recent projects and theme before starting")
    parser.add_argument("--theme", choices=("system", "light", "dark"), help="colour theme for this session")
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    if args.file and args.project:
        parser.error("give the project file either as an argument or with --project, not both")
    if args.sample and (args.file or args.project):
        parser.error("--sample opens the sample project: leave out the project file")
    return args


def create_window(argv: list[str] | None = None, *, before_show: Callable[[MainWindow], None] | None = None
                  ) -> tuple[QApplication, MainWindow, argparse.Namespace]:
    """The application and its main window, shown, with the requested project opening next.

    ``before_show(window)`` runs just before the window is first shown (start-up measurements).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    tune_interpreter()
    # libtorch loads while Qt starts and builds the window. Started later, its load blocked the GUI
    # thread natively for 0.45-0.5 s if the first model load coincided (measured: bench_graph);
    # started here it costs the first window about 0.3 s instead, before anything is visible.
    start_preload()
    app = QApplication.instance()
    if app is None:
        # Qt options come from the environment (QT_QPA_PLATFORM, QT_SCALE_FACTOR), not argv.
        app = QApplication([sys.argv[0] if sys.argv else "transfer-studio"])
    app.setApplicationName("transfer-studio")
    app.setApplicationDisplayName(APP_NAME)
    app.setOrganizationName(ORGANIZATION)
    app.setDesktopFileName("transfer-studio")
    app.setWindowIcon(theme.app_icon())
    settings = Settings()
    apply_environment()  # the settings file's feature-cache folder, for training.feature_store
    if args.reset_settings:
        settings.reset()
    theme.apply_theme(app, args.theme or settings.theme())  # type: ignore[arg-type]
    window = MainWindow(AppState(), settings)
    if before_show is not None:
        before_show(window)
    window.show()
    QTimer.singleShot(200, warm_qt_classes)  # before a page preloads pyqtgraph (ui.worker.preload_module)
    project = args.project or args.file
    if project:
        path = str(Path(project).expanduser())
        QTimer.singleShot(0, lambda: window.open_project(path, ask=False))
    elif args.sample:
        QTimer.singleShot(0, window.open_sample)
    return app, window, args  # type: ignore[return-value]


def _startup_probe(path: str) -> Callable[[MainWindow], None]:
    """``TS_STARTUP_PROBE=FILE``: once the first frame is painted, write its time (``time.time()``)
    to FILE as JSON and quit. packaging/measure_startup.py times an installed app or a PyInstaller
    bundle this way, from outside the process."""
    import json
    import time

    def hook(window: MainWindow) -> None:
        def painted() -> None:
            marks = {"painted": time.time(), "torch_at_show": "torch" in sys.modules}
            Path(path).write_text(json.dumps(marks), encoding="utf-8")
            window.close()

        # Queued after the first paint of the window: the user sees it by now.
        window.firstShown.connect(lambda: QTimer.singleShot(0, painted))

    return hook


def run_app(argv: list[str] | None = None) -> int:
    probe = os.environ.get("TS_STARTUP_PROBE")
    app, window, _args = create_window(argv, before_show=_startup_probe(probe) if probe else None)
    code = app.exec()
    window.shutdown()
    return int(code)
