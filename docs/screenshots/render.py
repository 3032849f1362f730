"""Render the README's screenshots: every page of the sample project, as a new user sees it.

    .venv/bin/python docs/screenshots/render.py [--out docs/screenshots] [--sizes 1440x900,1280x720]

Drives the real app headless (``QT_QPA_PLATFORM=offscreen``) through the sample workflow: open the
sample, scan, suggest, preview augmentation, train (the sample's own settings, a few minutes on a
CPU), evaluate, try four images, export; then grabs each page at each window size. The first size
is saved as ``<page>.png`` (the README's images), the others as ``<page>-<W>x<H>.png``. Settings and
the sample live in a temporary folder: the user's own are never touched.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PAGES = ("welcome", "model", "data", "review", "strategy", "augment", "train", "evaluate", "try", "export", "runs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent))
    parser.add_argument("--sizes", default="1440x900,1280x720")
    parser.add_argument("--pages", default=",".join(PAGES), help="pages to grab (all by default)")
    parser.add_argument("--no-train", action="store_true", help="skip training (quick layout checks)")
    parser.add_argument("--workdir", help="keep settings and the sample here; a finished run found there is "
                        "reused instead of training again (default: a new temporary folder)")
    args = parser.parse_args(argv)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    tmp = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="ts-shots-"))
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["TS_DATA_DIR"] = str(tmp / "appdata")
    os.environ["TS_SETTINGS_FILE"] = str(tmp / "settings.ini")

    from PySide6.QtCore import QCoreApplication, QEventLoop

    from transfer_studio.ui.app import create_window

    app, window, _ = create_window(["--sample", "--theme", "light"])
    t0 = time.monotonic()

    def pump(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
            time.sleep(0.005)

    def wait(what: str, cond: Callable[[], bool], timeout: float = 600.0) -> None:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise SystemExit(f"timed out waiting for: {what}")
            pump(0.05)
        print(f"[{time.monotonic() - t0:6.1f} s] {what}", flush=True)

    def idle(key: str) -> Callable[[], bool]:
        page = window.page(key)
        busy = getattr(page, "busy", lambda: False)
        return lambda: not busy() and not window.busy_bar.is_busy()

    state = window.state
    wait("sample opened", lambda: state.path is not None and state.project.model.name == "efficientnet_lite0")
    model = window.page("model")
    wait("model graph shown", lambda: model.current_label.text().startswith("efficientnet_lite0")
         and idle("model")())
    for key in ("data", "strategy", "augment"):
        window.show_page(key)
        wait(f"{key} page ready", idle(key))
        pump(1.0)
    wait("dataset scanned", lambda: state.scan is not None)
    if not args.no_train:
        window.show_page("train")
        train = window.page("train")
        wait("training engine warmed up", lambda: train.model.device_job is None or not train.model.device_job.is_running())
        if not any(r.status == "finished" for r in state.project.runs):
            train.start()
            wait("training finished", lambda: not train.busy(), timeout=1800)
            window.save()  # the next --workdir render reuses this run
        window.show_page("evaluate")
        evaluate = window.page("evaluate")
        pump(0.5)
        if evaluate.evaluate_button.isEnabled():
            evaluate.evaluate()
        wait("evaluated", idle("evaluate"))
        window.show_page("try")
        try_page = window.page("try")
        root = Path(state.project.data.root)
        try_page.add_paths([str(root / d / f"{d}_000.png") for d in ("3", "5", "7", "8")])
        wait("predictions shown", idle("try"))
        pump(1.0)
        window.show_page("export")
        export = window.page("export")
        if (export.target() / "model.json").exists():  # --workdir again: replacing it would ask first
            print("the export is already there: not exported again (the Export page shows no results)")
        else:
            export.export()
            wait("exported", idle("export"), timeout=900)
    if "review" in args.pages.split(","):  # check the labels, decide two images (nothing is applied)
        window.show_page("review")
        review = window.page("review")
        wait("label journal read", idle("review"))
        review.model.start_check()
        wait("labels checked", lambda: idle("review")() and review.model.result is not None, timeout=900)
        review.model.decide(":accept")
        review.model.decide(":keep")
        review.model.select(1)
    for key in ("runs", "welcome"):
        window.show_page(key)
        wait(f"{key} page ready", idle(key))

    state.undo_stack.setClean()
    for w, h in sizes:
        window.resize(w, h)
        suffix = "" if (w, h) == sizes[0] else f"-{w}x{h}"
        for key in args.pages.split(","):
            window.show_page(key)
            window.statusBar().clearMessage()  # "Exported to …" from the last step is not the page's
            pump(0.6)
            wait(f"{key} at {w}x{h}", idle(key), timeout=120)  # a resize may start work (previews)
            pump(0.3)
            path = out / f"{key}{suffix}.png"
            window.grab().save(str(path))
            print(f"  {path}", flush=True)
        if (w, h) == sizes[0]:
            window.show_page("model")
            pump(0.6)
            model.view.grab().save(str(out / "graph.png"))
    state.modified = False  # nothing to save: the sample stays as it was
    window.shutdown()
    app.processEvents()
    print(f"done in {time.monotonic() - t0:.0f} s; temporary files in {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
