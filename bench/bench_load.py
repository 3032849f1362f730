"""Load: a folder of 50,000 small images — scan, split, and one epoch of head-only training with
cached features at image size 64, without holding the images in memory; and the GUI's event-loop
stalls while the Data page scans it (issue 14, item 6).

Each step runs in a fresh process so its peak resident memory (``ru_maxrss``, and the peak over
psutil samples of the process and its children) is its own; the baseline is the same process
after its imports. The decoded images would take ``N x 64 x 64 x 3`` bytes (uint8) or four times
that as float tensors: the peaks are compared with that. The GUI step opens the Data page in an
offscreen window, chooses the folder, and records every tick of a 10 ms QTimer on the GUI thread
until the scan and its thumbnails are done. Results are printed and written to docs/benchmarks.md
between the ``<!-- bench_load -->`` markers.

    .venv/bin/python bench/bench_load.py [--images 50000] [--classes 10] [--folder DIR] [--no-write]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MARK = "<!-- bench_load -->"
SIZE = 64
PROBE_MS = 10


# -- the folder ------------------------------------------------------------------------------------
def generate(root: Path, images: int, classes: int) -> float:
    """``images`` JPEGs of SIZE x SIZE in ``classes`` folders (a colour per class plus noise)."""
    import numpy as np
    from PIL import Image

    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (classes, SIZE, SIZE, 3), dtype=np.uint8)
    for c in range(classes):
        (root / f"class_{c:02d}").mkdir(parents=True, exist_ok=True)
    for i in range(images):
        c = i % classes
        noise = rng.integers(0, 60, (SIZE, SIZE, 3), dtype=np.uint8)
        Image.fromarray(base[c] // 2 + noise).save(root / f"class_{c:02d}" / f"{i:06d}.jpg", quality=90)
    (root / ".complete").write_text(str(images))
    return time.perf_counter() - t0


# -- memory sampling -------------------------------------------------------------------------------
class Peak(threading.Thread):
    """Peak RSS (MiB) of this process plus its children, sampled every 20 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process()
        self.peak = 0.0
        self.halt = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.halt.is_set():
            total = 0
            for p in [self.proc, *self.proc.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            self.peak = max(self.peak, total / 2**20)
            time.sleep(0.02)

    def stop(self) -> float:
        self.halt.set()
        self.join()
        return self.peak


def rss_now() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


# -- steps (each in its own process) -----------------------------------------------------------------
def step_scan(folder: Path) -> dict:
    from transfer_studio.core import dataset

    base = rss_now()
    peak = Peak()
    peak.start()
    t0, c0 = time.perf_counter(), time.process_time()
    report = dataset.scan(folder)
    scan_s, scan_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    split = dataset.make_split(report, 0.2, 0.0, 0)
    split_s = time.perf_counter() - t0
    return {"base_mib": base, "peak_mib": peak.stop(), "scan_s": scan_s, "scan_cpu_s": scan_cpu,
            "split_s": split_s, "images": report.num_images, "skipped": len(report.skipped),
            "train": len(split["train"]), "val": len(split["val"])}


def step_train(folder: Path, run_dir: Path, model: str) -> dict:
    import torch

    from transfer_studio.config import AugmentSpec, DataSpec, ModelSpec, Project, TrainSpec
    from transfer_studio.training import events as ev
    from transfer_studio.training import fit

    project = Project(name="load", model=ModelSpec(model, weights="none"),
                      data=DataSpec(root=str(folder), val_split=0.2),
                      augment=AugmentSpec(preset="none"),
                      train=TrainSpec(strategy="head", epochs=1, batch_size=256, image_size=SIZE, device="cpu",
                                      cache_features=True, cache_passes=0))
    base = rss_now()
    peak = Peak()
    peak.start()
    notes: list[str] = []
    phases: dict[str, float] = {}  # peak RSS until each notice (feature extraction, head fit, ...)

    def on_event(e: object) -> None:
        if isinstance(e, ev.Notice):
            notes.append(e.message)
            phases[e.message.split(" ")[0] + f" #{len(notes)}"] = peak.peak
            peak.peak = rss_now()  # the next phase's peak starts from here

    t0, c0 = time.perf_counter(), time.process_time()
    result = fit(project, [on_event], run_dir=run_dir)
    phases["rest"] = peak.stop()
    return {"base_mib": base, "peak_mib": max(phases.values()), "seconds": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0, "status": result.status, "message": result.message,
            "cached": result.cached_features, "val_accuracy": result.val_accuracy,
            "threads": torch.get_num_threads(), "notes": notes[-3:], "phase_peaks_mib": phases}


def step_gui(folder: Path) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from transfer_studio.config import Project
    from transfer_studio.ui import theme
    from transfer_studio.ui.app import tune_interpreter
    from transfer_studio.ui.pages.data import DataPage
    from transfer_studio.ui.state import AppState

    tune_interpreter()
    app = QApplication([])
    theme.apply_theme(app, "light")
    state = AppState(Project(name="load"))
    page = DataPage(state)
    page.resize(1200, 800)
    page.show()
    for _ in range(50):
        app.processEvents()
        time.sleep(0.01)
    ticks: list[float] = []
    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(PROBE_MS)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    base = rss_now()
    peak = Peak()
    peak.start()
    timer.start()
    t0 = time.perf_counter()
    page.choose_folder(str(folder))
    while time.perf_counter() - t0 < 2 or page.busy():
        app.processEvents()
        time.sleep(0.001)
        if time.perf_counter() - t0 > 1800:
            break
    seconds = time.perf_counter() - t0
    for _ in range(100):  # the report's install and first paints
        app.processEvents()
        time.sleep(0.002)
    timer.stop()
    stalls = [max(0.0, (b - a) * 1000 - PROBE_MS) for a, b in zip(ticks, ticks[1:], strict=False)]
    stalls.sort()

    def pct(q: float) -> float:
        return stalls[min(len(stalls) - 1, int(q * len(stalls)))] if stalls else float("nan")

    scan = state.scan
    page.shutdown()
    return {"seconds": seconds, "ticks": len(ticks), "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "p999_ms": pct(0.999), "max_ms": stalls[-1] if stalls else float("nan"),
            "over_50ms": sum(s > 50 for s in stalls), "over_100ms": sum(s > 100 for s in stalls),
            "images": scan.num_images if scan is not None else None, "base_mib": base, "peak_mib": peak.stop()}


def run_step(name: str, *args: str) -> dict:
    # A fresh feature store for every step: the training step extracts every image's features (a
    # store filled by an earlier run would skip that), and the user's own store stays untouched.
    with tempfile.TemporaryDirectory(prefix="ts-bench-features-") as store:
        out = subprocess.run([sys.executable, __file__, "--step", name, *args], capture_output=True, text=True,
                             cwd=ROOT, timeout=7200, env={**os.environ, "TS_FEATURE_CACHE": store})
    if out.returncode != 0:
        raise RuntimeError(f"step {name} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["maxrss_mib"] = result.pop("_maxrss_mib", None)
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--model", default="shufflenet_v2_x0_5")
    parser.add_argument("--folder", type=Path, default=None, help="reuse/generate the folder here")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.step:
        fn = {"scan": step_scan, "train": step_train, "gui": step_gui}[a.step]
        result = fn(*[Path(x) if i < 2 else x for i, x in enumerate(a.args)])
        result["_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return 0

    folder = a.folder or Path(tempfile.gettempdir()) / f"ts-bench-load-{a.images}"
    gen_s = None
    if not (folder / ".complete").is_file():
        print(f"generating {a.images} images in {folder} ...", flush=True)
        gen_s = generate(folder, a.images, a.classes)
        print(f"  {gen_s:.0f}s", flush=True)
    disk_mib = sum(p.stat().st_size for p in folder.rglob("*.jpg")) / 2**20
    scan = run_step("scan", str(folder))
    print("scan", scan, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        train = run_step("train", str(folder), str(Path(tmp) / "run"), a.model)
    print("train", train, flush=True)
    gui = run_step("gui", str(folder))
    print("gui", gui, flush=True)

    decoded_u8 = a.images * SIZE * SIZE * 3 / 2**20
    features_mib = a.images * 1024 * 4 / 2**20
    names = {"backbone": "feature extraction", "head": "head fit (cross-validation, L-BFGS)", "rest": "the rest"}
    phase_text = "; ".join(f"{names.get(k.split(' ')[0], k)} {v - train['base_mib']:.0f} MiB"
                           for k, v in train.get("phase_peaks_mib", {}).items())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "## Load: 50,000 small images (bench/bench_load.py)" if a.images == 50_000 else
        f"## Load: {a.images:,} small images (bench/bench_load.py)",
        "",
        f"{a.images:,} JPEGs of {SIZE}x{SIZE} in {a.classes} classes ({disk_mib:.0f} MiB on disk); "
        f"{platform.machine()} with {os.cpu_count()} cores, load average {load:.1f} at the end. Each step in a "
        f"fresh process; memory is resident memory (RSS, MiB) of the process and its children: the baseline "
        f"after imports, and the peak. Decoded, the images would need {decoded_u8:,.0f} MiB as uint8 and "
        f"{4 * decoded_u8:,.0f} MiB as float32 tensors.",
        "",
        "| step | wall s | CPU s | RSS base | RSS peak | peak - base |",
        "|---|---:|---:|---:|---:|---:|",
        f"| scan ({scan['images']:,} readable, {scan['skipped']} skipped) | {scan['scan_s']:.1f} | "
        f"{scan['scan_cpu_s']:.1f} | {scan['base_mib']:.0f} | {scan['peak_mib']:.0f} | "
        f"{scan['peak_mib'] - scan['base_mib']:.0f} |",
        f"| split ({scan['train']:,} train / {scan['val']:,} val) | {scan['split_s']:.2f} | | | | |",
        f"| one head-only epoch with cached features ({a.model}, random init, {SIZE} px, status "
        f"{train['status']}) | {train['seconds']:.0f} | {train['cpu_s']:.0f} | {train['base_mib']:.0f} | "
        f"{train['peak_mib']:.0f} | {train['peak_mib'] - train['base_mib']:.0f} |",
        f"| Data page scan in the GUI (offscreen; {gui['images']:,} images) | {gui['seconds']:.1f} | | "
        f"{gui['base_mib']:.0f} | {gui['peak_mib']:.0f} | {gui['peak_mib'] - gui['base_mib']:.0f} |",
        "",
        f"GUI event-loop stalls during that scan (a 10 ms QTimer, {gui['ticks']:,} ticks): p50 "
        f"{gui['p50_ms']:.1f} ms, p99 {gui['p99_ms']:.1f} ms, p99.9 {gui['p999_ms']:.1f} ms, max "
        f"{gui['max_ms']:.0f} ms; {gui['over_50ms']} stalls over 50 ms, {gui['over_100ms']} over 100 ms.",
        "",
        f"Peaks of the training step by phase, over its baseline: {phase_text}. The cached features are "
        f"{features_mib:.0f} MiB (one 1024-float vector per image for {a.model}); the images are decoded "
        f"batch by batch and dropped, never held (as float32 they would be {4 * decoded_u8:,.0f} MiB)."
        + (f" Generating the folder took {gen_s:.0f} s." if gen_s else ""),
    ]
    text = "\n".join(lines)
    print(text)
    if not a.no_write:
        sys.path.insert(0, str(Path(__file__).parent))
        from _report import write_section

        write_section(MARK, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
