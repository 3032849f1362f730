"""The hardening suite's longer profiles (tests/hardening runs bounded versions in CI):

1. fuzzing: tests/hardening/test_fuzz.py with ``--examples`` random (not derandomized) examples per
   property;
2. kill and resume: tests/hardening/test_process_kill.py for ``--seeds`` kill-point seeds (each seed:
   head, full and partial, two SIGKILLs each, then a bit-identical resume);
3. endurance: ``--epochs`` epochs with 2 DataLoader workers, peak RSS and PSS of the training process
   and its workers per epoch (psutil), growth from epoch 2 to the last.

Results are printed and written to docs/benchmarks.md between the ``<!-- bench_hardening -->``
markers.

    .venv/bin/python bench/bench_hardening.py [--examples 500] [--seeds 5] [--epochs 30] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- bench_hardening -->"


def pytest(path: str, env: dict[str, str]) -> tuple[bool, float, str]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", path, "-q", "-x", "-p", "no:cacheprovider"],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}, timeout=7200)
    tail = (out.stdout + out.stderr).strip().splitlines()[-3:]
    return out.returncode == 0, time.perf_counter() - t0, " / ".join(tail)


def endurance(epochs: int) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers.images import make_class_folder
    from helpers.killer import run_function
    from helpers.training import make_project

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data = make_class_folder(tmp_path / "data", {"a": 60, "b": 60, "c": 60}, size=64)
        make_project(data, strategy="full", epochs=epochs, batch_size=8, image_size=64, num_workers=2,
                     head_epochs=0).save(tmp_path / "p.tsproj")
        code = run_function("helpers.endurance.train_and_measure",
                            [tmp_path / "p.tsproj", tmp_path / "run", tmp_path / "memory.json"], timeout=7200)
        if code != 0:
            raise RuntimeError(f"the endurance run failed (exit {code})")
        return json.loads((tmp_path / "memory.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--no-write", action="store_true")
    a = parser.parse_args()

    fuzz_ok, fuzz_s, fuzz_tail = pytest("tests/hardening/test_fuzz.py",
                                        {"TS_FUZZ_EXAMPLES": str(a.examples), "TS_FUZZ_RANDOM": "1"})
    print(f"fuzz: {'passed' if fuzz_ok else 'FAILED'} in {fuzz_s:.0f}s ({fuzz_tail})", flush=True)
    seeds = []
    for seed in range(1, a.seeds + 1):
        ok, secs, tail = pytest("tests/hardening/test_process_kill.py", {"TS_KILL_SEED": str(seed)})
        seeds.append((seed, ok, secs, tail))
        print(f"kill seed {seed}: {'passed' if ok else 'FAILED'} in {secs:.0f}s", flush=True)
    mem = endurance(a.epochs)
    peaks = {int(k): v for k, v in mem["peaks"].items() if int(k) >= 1}
    last = max(peaks)
    rss2, rss_last = peaks[2]["rss"], peaks[last]["rss"]
    pss = {e: v["pss"] for e, v in peaks.items() if v.get("pss")}
    print(f"endurance: RSS epoch 2 {rss2:.0f} MiB, epoch {last} {rss_last:.0f} MiB", flush=True)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    failed = [s for s, ok, _, _ in seeds if not ok]
    rows = "\n".join(f"| {e} | {v['rss']:.0f} | {v['pss']:.0f} | {int(v['processes'])} |"
                     for e, v in sorted(peaks.items()) if e in (1, 2, 3, 5, 10, 20, last) or e == last)
    text = "\n".join([
        "## Hardening, long profiles (bench/bench_hardening.py)",
        "",
        f"{platform.machine()} with {os.cpu_count()} cores, load average {load:.1f} at the end.",
        "",
        f"- Fuzzing, {a.examples} random examples per property (dataset folders, project files, model.json): "
        f"{'all passed' if fuzz_ok else 'FAILED: ' + fuzz_tail} in {fuzz_s:.0f} s.",
        f"- Kill and resume, seeds 1-{a.seeds} (each: head, full and partial runs SIGKILLed twice at seeded "
        f"points, then resumed): {a.seeds - len(failed)} of {a.seeds} seeds bit-identical"
        + (f"; failed: {failed}" if failed else "") + f" ({sum(s[2] for s in seeds):.0f} s).",
        f"- Endurance, {last} epochs with 2 DataLoader workers (shufflenet_v2_x0_5, 180 images of 64 px): peak "
        f"RSS of the training process and its workers {rss2:.0f} MiB in epoch 2, {rss_last:.0f} MiB in epoch "
        f"{last} ({100 * (rss_last / rss2 - 1):+.1f}%); peak PSS (shared pages counted once) "
        f"{pss.get(2, float('nan')):.0f} -> {pss.get(last, float('nan')):.0f} MiB.",
        "",
        "| epoch | peak RSS MiB | peak PSS MiB | processes |",
        "|---:|---:|---:|---:|",
        rows,
    ])
    print(text)
    if not a.no_write:
        sys.path.insert(0, str(Path(__file__).parent))
        from _report import write_section

        write_section(MARK, text)
    return 0 if fuzz_ok and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
