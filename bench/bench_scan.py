"""Scan speed: 20,000 files of 64x64 in under 10 s without --verify (issue 3).

Generates the folder once in a temporary directory (20 classes, half PNG / half JPEG, 64x64), then in
one run on the same machine times the quick scan (header + end-marker checks, no decode) several
times, and the full-decode scan (--verify) once as the reference, and reports the ratio. Results
are printed and written to docs/benchmarks.md between the ``<!-- bench_scan -->`` markers.

    .venv/bin/python bench/bench_scan.py [--files 20000] [--runs 3] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import write_section
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MARK = "<!-- bench_scan -->"
TARGET_S = 10.0


def generate(root: Path, files: int, classes: int = 20, size: int = 64) -> None:
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class_{c:02d}").mkdir(parents=True, exist_ok=True)
    base = rng.integers(0, 255, (classes, size, size, 3), dtype=np.uint8)
    for i in range(files):
        c = i % classes
        noise = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
        img = Image.fromarray(base[c] // 2 + noise)
        ext = "png" if i % 2 else "jpg"
        img.save(root / f"class_{c:02d}" / f"img_{i:05d}.{ext}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3, help="quick-scan runs (the median is reported)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()

    from transfer_studio.core.dataset import scan

    tmp = Path(tempfile.mkdtemp(prefix="ts_bench_scan_"))
    try:
        t0 = time.perf_counter()
        generate(tmp / "data", args.files)
        gen_s = time.perf_counter() - t0
        print(f"generated {args.files:,} files in {gen_s:.1f} s")

        quick: list[float] = []
        quick_cpu: list[float] = []
        for _ in range(args.runs):
            t0, c0 = time.perf_counter(), time.process_time()
            report = scan(tmp / "data")
            quick.append(time.perf_counter() - t0)
            quick_cpu.append(time.process_time() - c0)
            assert report.num_images == args.files, report.num_images
        t0, c0 = time.perf_counter(), time.process_time()
        verified = scan(tmp / "data", verify=True)
        verify_s = time.perf_counter() - t0
        verify_cpu = time.process_time() - c0
        assert verified.num_images == args.files
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    median = statistics.median(quick)
    lines = [
        "## Folder scan (bench/bench_scan.py)",
        "",
        f"{args.files:,} files of 64x64 (20 classes, half PNG, half JPEG), {platform.machine()} with "
        f"{os.cpu_count()} cores, load average {load:.1f} at the end of the run.",
        "",
        "| scan | wall seconds | CPU seconds | files/s |",
        "|---|---:|---:|---:|",
        f"| quick (headers + end markers), median of {len(quick)} | {median:.2f} | "
        f"{statistics.median(quick_cpu):.2f} | {args.files / median:,.0f} |",
        f"| --verify (full decode), 1 run | {verify_s:.2f} | {verify_cpu:.2f} | {args.files / verify_s:,.0f} |",
        "",
        f"Quick scan runs: {', '.join(f'{q:.2f}' for q in quick)} s. Target: under {TARGET_S:.0f} s "
        f"without --verify: {'met' if median < TARGET_S else 'NOT met'}. The full decode takes "
        f"{verify_s / median:.1f}x as long as the quick scan.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(MARK, text)
        print("written to docs/benchmarks.md")
    return 0 if median < TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
