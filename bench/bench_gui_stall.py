"""GUI responsiveness while training, and training throughput through the GUI worker vs the CLI.

1. Stall probe: the Train page trains the sample project (digits + bundled EfficientNet-Lite0) with
   its live charts for ``--seconds`` (default 60). A QTimer on the GUI thread fires every 10 ms; how
   late each tick arrives is an event-loop stall. Reports p50/p99/p99.9/max, counts over 50/100 ms,
   and what the run was doing when the longest stalls happened.
2. Throughput: the same run (``--epochs`` epochs) through ``transfer-studio train --project`` in a
   subprocess (the CLI) and through the Train page in this process (the GUI worker), interleaved
   ``--pairs`` times; compares the median epoch time of epochs 2.. (epoch 1 includes warm-up).

Results are printed and written to docs/benchmarks.md between the ``<!-- bench_gui -->`` markers.

    .venv/bin/python bench/bench_gui_stall.py [--seconds 60] [--pairs 3] [--epochs 3] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import write_section

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- bench_gui -->"
PROBE_MS = 10


def make_project(dest: Path, image_size: int, batch_size: int, strategy: str, per_class: int):
    from transfer_studio.sample import make_sample_project

    project = make_sample_project(dest, per_class=per_class, save=False)
    t = project.train
    t.strategy, t.image_size, t.batch_size, t.device = strategy, image_size, batch_size, "cpu"
    project.augment.preset = "light"
    return project


class StallProbe:
    """A 10 ms QTimer on the GUI thread; records how late every tick is."""

    def __init__(self):
        from PySide6.QtCore import Qt, QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(PROBE_MS)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def start(self) -> None:
        self.ticks.clear()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def stalls_ms(self):
        import numpy as np

        t = np.asarray(self.ticks)
        return np.maximum(np.diff(t) * 1000.0 - PROBE_MS, 0.0), t[1:]


class StallLog:
    """Stalls collected over several probe windows."""

    def __init__(self):
        self.parts: list = []

    def add(self, probe: StallProbe) -> None:
        self.parts.append(probe.stalls_ms()[0])

    def values(self):
        import numpy as np

        return np.concatenate(self.parts) if self.parts else np.zeros(0)


def wait_until(app, predicate, timeout: float) -> bool:
    """Run the Qt event loop (as the app does) until predicate() holds or timeout seconds pass."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    end = time.monotonic() + timeout

    def check() -> None:
        if predicate() or time.monotonic() >= end:
            loop.quit()

    timer = QTimer()
    timer.setInterval(50)
    timer.timeout.connect(check)
    timer.start()
    if not predicate():
        loop.exec()
    timer.stop()
    return predicate()


def gui_run(app, project, path: Path, *, seconds: float | None, probe: StallProbe | None):
    """Train through the Train page; returns (run_dir, events with times)."""
    from transfer_studio.ui.pages.train import TrainPage
    from transfer_studio.ui.state import AppState

    state = AppState(project.copy())
    state.path = path
    page = TrainPage(state)
    page.resize(1280, 800)
    page.show()
    wait_until(app, lambda: page.model.device_job is None or not page.model.device_job.is_running(), 60)
    events: list[tuple[float, str]] = []
    c = page._controller
    c.fitStarted.connect(lambda _e: events.append((time.perf_counter(), "fit started")))
    c.epochEnded.connect(lambda e: events.append((time.perf_counter(), f"epoch {e.epoch} ended")))
    c.phaseChanged.connect(lambda e: events.append((time.perf_counter(), f"phase {e.phase}")))
    if probe:
        probe.start()
    cpu0 = time.thread_time()  # CPU time of the GUI thread itself
    t0 = time.perf_counter()
    events.append((t0, "start clicked"))
    page.start_button.click()
    if seconds is not None:
        wait_until(app, lambda: not page.busy(), seconds)
        events.append((time.perf_counter(), "stop clicked"))
        page.stop()
    wait_until(app, lambda: not page.busy(), 3600)
    if probe:
        probe.stop()
    gui_cpu = (time.thread_time() - cpu0, time.perf_counter() - t0)
    redraws = page.charts.redraws
    run_dir = Path(state.project.runs[-1].run_dir)
    status = state.project.runs[-1].status
    page.shutdown()
    page.close()
    page.deleteLater()
    app.processEvents()
    return run_dir, events, t0, redraws, status, gui_cpu


def cli_run(app, project, tmp: Path, name: str, probe: StallProbe | None) -> Path:
    """The CLI trains in a subprocess; meanwhile this process runs an idle Qt event loop, probed:
    the control, i.e. the stalls this machine causes by itself while a training runs next door."""
    proj_file = tmp / f"{name}.tsproj"
    project.save(proj_file)
    out = tmp / "runs" / name
    cmd = [sys.executable, "-m", "transfer_studio", "train", "--project", str(proj_file), "--out", str(out),
           "--json"]
    log = tmp / f"{name}.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
        if probe:
            # from the first epoch on, as the GUI rows (the child's start-up is its own)
            wait_until(app, lambda: (out / "checkpoint_last.pt").exists() or proc.poll() is not None, 3600)
            probe.start()
        wait_until(app, lambda: proc.poll() is not None, 3600)
        if probe:
            probe.stop()
    if proc.returncode != 0:
        raise SystemExit(f"CLI run failed ({proc.returncode}): {log.read_text().strip().splitlines()[-1:]}")
    return out


def epoch_seconds(run_dir: Path) -> float:
    history = json.loads((run_dir / "history.json").read_text())
    secs = [h["seconds"] for h in history[1:]] or [h["seconds"] for h in history]
    return statistics.median(secs)


def binding_keeps_references(app) -> bool:
    from PySide6.QtCore import QObject, Signal

    class Emitter(QObject):
        sig = Signal(object)

    e = Emitter()
    e.sig.connect(lambda _v: None)
    none0, true0 = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(200):
        e.sig.emit(1)
        app.processEvents()
    return sys.getrefcount(None) > none0 - 20 and sys.getrefcount(True) > true0 - 20


def percentile(values, q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the stall-probe run")
    ap.add_argument("--pairs", type=int, default=3, help="interleaved CLI/GUI throughput runs")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of each throughput run")
    ap.add_argument("--image-size", type=int, default=48)
    ap.add_argument("--per-class", type=int, default=16, help="sample images per digit")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--strategy", default="full", choices=("head", "partial", "full"))
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()

    import PySide6
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    if not binding_keeps_references(app):
        raise SystemExit(f"PySide6 {PySide6.__version__} drops references to None/True on every signal and "
                         "event (tests/ui/test_train_worker.py); a long run would abort. Use another release.")
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="ts-bench-gui-"))
    project = make_project(tmp / "sample", args.image_size, args.batch_size, args.strategy, args.per_class)

    # 1. stall probe during a long run with live charts
    project.train.epochs = 1000  # stopped after --seconds
    probe = StallProbe()
    run_dir, events, t0, redraws, _, gui_cpu = gui_run(app, project, tmp / "stall.tsproj",
                                                       seconds=args.seconds, probe=probe)
    stalls, at = probe.stalls_ms()
    elapsed = probe.ticks[-1] - probe.ticks[0]
    fit_t = next((t for t, what in events if what == "fit started"), t0)
    steady = stalls[at > fit_t + 2.0]
    worst = sorted(zip(stalls, at, strict=True), reverse=True)[:5]

    def context(t: float) -> str:
        before = [what for et, what in events if et <= t]
        return f"{t - t0:.1f} s after Start, after '{before[-1] if before else 'start'}'"

    epochs_done = sum(1 for _, w in events if w.startswith("epoch"))
    stall_rows = [
        (f"Train page, {elapsed:.0f} s run: from the Start click (incl. start-up)", stalls),
        ("Train page, same run: training (from 2 s after FitStart)", steady),
    ]

    # 2. throughput: CLI vs GUI worker, interleaved; probes in both (the CLI's is the control)
    project.train.epochs = args.epochs
    cli_s, gui_s = [], []
    loads = []
    control, in_pairs = StallLog(), StallLog()
    for i in range(args.pairs):
        p = StallProbe()
        cli_s.append(epoch_seconds(cli_run(app, project, tmp, f"cli{i}", p)))
        control.add(p)
        p = StallProbe()
        gui_dir, *_ = gui_run(app, project, tmp / f"gui{i}.tsproj", seconds=None, probe=p)
        gui_s.append(epoch_seconds(gui_dir))
        in_pairs.add(p)
        loads.append(os.getloadavg()[0])
        print(f"pair {i + 1}: CLI epoch {cli_s[-1]:.2f} s, GUI epoch {gui_s[-1]:.2f} s, load {loads[-1]:.1f}",
              flush=True)
    # Per pair, then the median: the two runs of a pair are minutes apart, the pairs much further.
    ratios = [c / g for c, g in zip(cli_s, gui_s, strict=True)]  # GUI throughput relative to the CLI's
    ratio = statistics.median(ratios)
    stall_rows += [
        ("Train page during the throughput runs (training in this process)", in_pairs.values()),
        ("control: idle event loop while the CLI trains in another process", control.values()),
    ]

    n_train = len(json.loads((run_dir / "project.json").read_text())["data"]["split"]["train"])
    lines = [
        "## GUI responsiveness while training (bench/bench_gui_stall.py)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, CPU training; "
        f"{time.strftime('%Y-%m-%d')}, PySide6 {PySide6.__version__}, load average {load_before[0]:.1f} before "
        f"and {os.getloadavg()[0]:.1f} after (other jobs shared the 2 cores). Sample project (digits, {n_train} training images), bundled "
        f"EfficientNet-Lite0, strategy {args.strategy}, {args.image_size} px, batch {args.batch_size}, "
        "augmentation light, offscreen Qt. The page is opened and its engine warm-up has finished before "
        "Start is pressed, as when a user opens the Train page.",
        "",
        f"Stall probe: a {PROBE_MS} ms QTimer on the GUI thread during {elapsed:.0f} s of training with the "
        f"Train page's live charts ({epochs_done} epochs, {redraws} chart redraws); a tick's stall is how "
        f"much later than 10 ms it fired. The GUI thread itself used {gui_cpu[0]:.1f} s of CPU in "
        f"{gui_cpu[1]:.0f} s ({100 * gui_cpu[0] / gui_cpu[1]:.0f}% of one core).",
        "",
        "| window | ticks | p50 ms | p99 ms | p99.9 ms | max ms | > 50 ms | > 100 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, values in stall_rows:
        lines.append(f"| {name} | {len(values)} | {percentile(values, 50):.1f} | {percentile(values, 99):.1f} | "
                     f"{percentile(values, 99.9):.1f} | {max(values, default=0):.1f} | "
                     f"{int((values > 50).sum())} | {int((values > 100).sum())} |")
    lines += ["", "Longest stalls: " + "; ".join(f"{s:.0f} ms ({context(t)})" for s, t in worst) + ".", ""]
    lines += [
        f"Throughput, GUI worker vs CLI (`transfer-studio train --project`), same run, {args.epochs} epochs, "
        f"median epoch time of epochs 2-{args.epochs}, {args.pairs} interleaved pairs (CLI, then GUI): CLI "
        f"{', '.join(f'{s:.2f}' for s in cli_s)} s; GUI {', '.join(f'{s:.2f}' for s in gui_s)} s; "
        f"CLI/GUI per pair {', '.join(f'{r:.2f}' for r in ratios)}. Median: the GUI worker trains at "
        f"**{ratio:.2f}x** the CLI's throughput (target >= 0.90). Load average after each pair: "
        f"{', '.join(f'{x:.1f}' for x in loads)}.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(MARK, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
