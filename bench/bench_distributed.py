"""Throughput of `transfer-studio train --nproc N` for N = 1, 2, ... processes (GPUs, or CPU processes).

Run on the machine to measure (no network needed: random-init weights, generated images):

    .venv/bin/python bench/bench_distributed.py                       # 1..#GPUs on CUDA, else 1,2 on CPU
    .venv/bin/python bench/bench_distributed.py --nprocs 1,2,4,8 --model resnet50 --batch-size 64
    .venv/bin/python bench/bench_distributed.py --write                # also record in docs/distributed.md

Every N trains the same generated folder with the whole network trainable (strategy full, its
first epoch is the cached head phase) for ``--epochs`` epochs; epochs after the first full
fine-tuning epoch are timed (start-up, cuDNN autotuning and worker spin-up stay out). ``--batch-size``
is per process, as in the engine, so the global batch grows with N (the usual DDP setting: keep each
GPU busy). images/s = training images (padded to a multiple of N, as DistributedSampler pads) per
second of epoch; speed-up is against N = 1 measured in the same run of this script.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
DOC = ROOT / "docs" / "distributed.md"
MARK = "<!-- bench_distributed -->"


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run_once(data: Path, out: Path, n: int, a: argparse.Namespace, device: str) -> dict:
    cmd = [sys.executable, "-m", "transfer_studio", "train", str(data), "--model", a.model, "--weights", "none",
           "--strategy", "full", "--epochs", str(a.epochs), "--batch-size", str(a.batch_size),
           "--image-size", str(a.image_size), "--device", device, "--val-split", "0.1", "--out", str(out),
           "--json"]
    if a.workers is not None:
        cmd += ["--workers", str(a.workers)]
    if n > 1:
        cmd += ["--nproc", str(n)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"N={n} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    doc = json.loads(done.stdout)
    full = [h for h in doc["history"] if h.get("lr") is not None]  # fine-tuning epochs (not the probe)
    timed = full[1:] or full
    seconds = sum(h["seconds"] for h in timed) / len(timed)
    n_train = round(len(json.loads((out / "project.json").read_text())["data"]["split"]["train"]))
    padded = math.ceil(n_train / n) * n
    return {"nproc": n, "device": doc["device"], "global_batch": a.batch_size * n, "epoch_s": seconds,
            "images_per_s": padded / seconds, "wall_s": wall, "val_accuracy": doc["val_accuracy"]}


def table(rows: list[dict], a: argparse.Namespace) -> str:
    base = rows[0]["images_per_s"]
    lines = [f"`bench/bench_distributed.py` on {platform.node() or 'this machine'} "
             f"({time.strftime('%Y-%m-%d')}): {a.model}, {a.image_size}px, {a.classes} classes x "
             f"{a.per_class} images, batch {a.batch_size} per process, {a.epochs} epochs",
             "", "| processes | device | global batch | s/epoch | images/s | speed-up | efficiency | wall s |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        up = r["images_per_s"] / base
        lines.append(f"| {r['nproc']} | {r['device']} | {r['global_batch']} | {r['epoch_s']:.2f} | "
                     f"{r['images_per_s']:.1f} | {up:.2f}x | {up / r['nproc']:.0%} | {r['wall_s']:.0f} |")
    return "\n".join(lines)


def write_section(text: str) -> None:
    from transfer_studio.config import atomic_write_text

    old = DOC.read_text(encoding="utf-8")
    block = f"{MARK}\n{text.rstrip()}\n{MARK}"
    if old.count(MARK) >= 2:
        a = old.index(MARK)
        b = old.index(MARK, a + len(MARK)) + len(MARK)
        new = old[:a] + block + old[b:]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    atomic_write_text(DOC, new)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nprocs", help="comma-separated process counts (default: 1..#GPUs, or 1,2 on CPU)")
    ap.add_argument("--device", default="auto", help="auto | cuda | cpu")
    ap.add_argument("--model", default=None, help="network (default resnet18 on CUDA, shufflenet_v2_x0_5 on CPU)")
    ap.add_argument("--image-size", type=int, default=None, help="default 224 on CUDA, 64 on CPU")
    ap.add_argument("--batch-size", type=int, default=None, help="per process (default 64 on CUDA, 16 on CPU)")
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--per-class", type=int, default=None, help="images per class (default 1000 CUDA, 60 CPU)")
    ap.add_argument("--epochs", type=int, default=4, help="the first fine-tuning epoch is not timed")
    ap.add_argument("--workers", type=int, default=None, help="data-loading workers per process")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds one N may take")
    ap.add_argument("--write", action="store_true", help="record the table in docs/distributed.md")
    a = ap.parse_args()
    gpus = _gpus()
    cuda = a.device == "cuda" or (a.device == "auto" and gpus > 0)
    device = "cuda" if cuda else "cpu"
    a.model = a.model or ("resnet18" if cuda else "shufflenet_v2_x0_5")
    a.image_size = a.image_size or (224 if cuda else 64)
    a.batch_size = a.batch_size or (64 if cuda else 16)
    a.per_class = a.per_class or (1000 if cuda else 60)
    counts = [int(x) for x in a.nprocs.split(",")] if a.nprocs else (list(range(1, gpus + 1)) if cuda else [1, 2])
    if cuda and max(counts) > gpus:
        raise SystemExit(f"{max(counts)} processes need {max(counts)} GPUs; this machine has {gpus} "
                         "(NCCL runs one process per GPU)")
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(counts))))
    from helpers.images import make_class_folder

    with tempfile.TemporaryDirectory() as tmp:
        data = make_class_folder(Path(tmp) / "data", {f"c{i}": a.per_class for i in range(a.classes)},
                                 size=a.image_size)
        rows = []
        for n in counts:
            rows.append(run_once(data, Path(tmp) / f"run-{n}", n, a, device))
            print(f"N={n}: {rows[-1]['images_per_s']:.1f} images/s", file=sys.stderr, flush=True)
    text = table(rows, a)
    print(text)
    if a.write:
        write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
