"""Time to first window of the desktop app, in fresh processes (target: under 2 s).

Each run starts a new Python process that creates the app exactly as ``transfer-studio`` does
(``ui.app.create_window``) and reports when the main window is shown and when its first frame has
been painted, plus whether torch had been imported by then (it must not be). Runs alternate with a
bare PySide6 window in the same conditions, so the result is also a ratio against the floor that
Python + Qt alone cost on this machine.

    python bench/bench_startup.py [--runs 5] [--no-write]

Writes its section of docs/benchmarks.md between <!-- bench_startup --> markers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import write_section

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- bench_startup -->"

APP = """
import json, os, sys, time
from transfer_studio.ui.app import create_window
from PySide6.QtCore import QTimer
marks = {}
def hook(win):
    def shown():
        marks["shown"] = time.time()
        marks["torch_at_show"] = "torch" in sys.modules
        # Queued after the first paint of the window: the user sees it by now.
        QTimer.singleShot(0, lambda: (marks.setdefault("painted", time.time()), win.close_app()))
    win.firstShown.connect(shown)
    win.close_app = lambda: QTimer.singleShot(0, app_quit)
def app_quit():
    from PySide6.QtWidgets import QApplication
    QApplication.instance().quit()
app, win, _ = create_window(["--reset-settings"], before_show=hook)
app.exec()
print(json.dumps(marks), flush=True)
os._exit(0)
"""

BARE = """
import json, os, time
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QLabel
marks = {}
app = QApplication([])
w = QLabel("hello")
w.resize(1280, 820)
w.show()
marks["shown"] = time.time()
marks["torch_at_show"] = False
QTimer.singleShot(0, lambda: (marks.setdefault("painted", time.time()), app.quit()))
app.exec()
print(json.dumps(marks), flush=True)
os._exit(0)
"""


def run_once(code: str, env: dict[str, str]) -> dict[str, float]:
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=300)
    if out.returncode != 0:
        raise SystemExit(f"start-up run failed:\n{out.stderr}")
    marks = json.loads(out.stdout.strip().splitlines()[-1])
    return {"shown": marks["shown"] - t0, "painted": marks["painted"] - t0,
            "torch_at_show": bool(marks["torch_at_show"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="ts-startup-")
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen"),
           "TS_SETTINGS_FILE": str(Path(tmp) / "settings.ini"), "TS_DATA_DIR": str(Path(tmp) / "data")}
    run_once(APP, env)  # warm the OS file cache: measure the app, not the disk
    run_once(BARE, env)
    app_runs, bare_runs = [], []
    for _ in range(args.runs):  # interleaved: both see the same machine load
        app_runs.append(run_once(APP, env))
        bare_runs.append(run_once(BARE, env))
    app_painted = statistics.median(r["painted"] for r in app_runs)
    bare_painted = statistics.median(r["painted"] for r in bare_runs)
    torch_loaded = any(r["torch_at_show"] for r in app_runs)
    lines = [
        f"Time to first window (process start to first painted frame), median of {args.runs} fresh "
        f"processes, interleaved with a bare PySide6 window; `QT_QPA_PLATFORM={env['QT_QPA_PLATFORM']}`, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "| | median | min | max |",
        "|---|---|---|---|",
        f"| Transfer Studio main window | {app_painted:.2f} s | {min(r['painted'] for r in app_runs):.2f} s | "
        f"{max(r['painted'] for r in app_runs):.2f} s |",
        f"| bare PySide6 window | {bare_painted:.2f} s | {min(r['painted'] for r in bare_runs):.2f} s | "
        f"{max(r['painted'] for r in bare_runs):.2f} s |",
        "",
        f"Ratio app / bare Qt: **{app_painted / bare_painted:.2f}x**; target < 2 s: "
        f"**{'met' if app_painted < 2.0 else 'NOT met'}**. torch imported before the window showed: "
        f"**{'yes (regression!)' if torch_loaded else 'no'}** (the compute-device probe imports it afterwards, "
        "on a worker thread). libtorch's shared libraries do start loading on a background thread "
        "before the window is created (``ui.runtime.start_preload``): that costs the first window about "
        "0.3-0.5 s here, and saves a half-second GUI freeze at the first model load (bench_graph).",
    ]
    text = "## Start-up: time to first window (bench/bench_startup.py)\n\n" + "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(MARK, text)
        print("\nwritten to docs/benchmarks.md")
    return 1 if torch_loaded else 0


if __name__ == "__main__":
    sys.exit(main())
