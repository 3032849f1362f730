"""Memory of a training process and its DataLoader workers, sampled while it trains (psutil).

``train_and_measure`` runs in a fresh process (``killer.run_function``) so that only the run's own
memory is measured; it writes per-epoch peaks as JSON.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import psutil


class MemorySampler(threading.Thread):
    """Peak resident (RSS) and proportional (PSS: shared pages split between the processes that
    share them, so forked workers are not counted twice) memory of this process plus its child
    processes, per epoch; ``epoch`` is set by the caller as training moves on."""

    def __init__(self, interval: float = 0.05, pss_every: int = 10):
        super().__init__(name="memory-sampler", daemon=True)
        self.interval, self.pss_every = interval, pss_every
        self.detail: dict[int, dict] | None = None
        self.epoch = 0
        self.peaks: dict[int, dict[str, float]] = {}
        self._halt = threading.Event()
        self._proc = psutil.Process()

    def sample(self, pss: bool) -> dict[str, float]:
        procs = [self._proc, *self._proc.children(recursive=True)]
        out = {"rss": 0.0, "processes": float(len(procs))}
        if pss:
            out["pss"] = 0.0
        for p in procs:
            try:
                if pss:  # reads /proc/PID/smaps: tens of milliseconds for a process with torch loaded
                    info = p.memory_full_info()
                    out["pss"] += getattr(info, "pss", info.rss) / 2**20
                else:
                    info = p.memory_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            out["rss"] += info.rss / 2**20
        return out

    def run(self) -> None:
        n = 0
        while not self._halt.is_set():
            s = self.sample(pss=n % self.pss_every == 0)
            if n % self.pss_every == 0 and self.detail is not None:
                row = {}
                for p in [self._proc, *self._proc.children(recursive=True)]:
                    try:
                        i = p.memory_full_info()
                        row[p.pid] = (round(i.rss / 2**20), round(i.pss / 2**20), round(i.uss / 2**20))
                    except psutil.Error:
                        pass
                self.detail.setdefault(self.epoch, row)
            n += 1
            peak = self.peaks.setdefault(self.epoch, {"rss": 0.0, "pss": 0.0, "processes": 0.0})
            for k, v in s.items():
                peak[k] = max(peak[k], v)
            time.sleep(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def train_and_measure(project_file: str, run_dir: str, out_file: str) -> int:
    """Train the project (in this process) while sampling memory; per-epoch peaks to ``out_file``."""
    import torch

    from transfer_studio.config import Project
    from transfer_studio.training import events as ev
    from transfer_studio.training import fit

    torch.set_num_threads(1)
    sampler = MemorySampler(interval=0.05, pss_every=2)
    seconds: dict[int, float] = {}
    t0 = [time.perf_counter()]

    def on_event(e: Any) -> None:
        if isinstance(e, ev.BatchEnd):
            sampler.epoch = e.epoch
        elif isinstance(e, ev.EpochEnd):
            seconds[e.epoch] = time.perf_counter() - t0[0]
            t0[0] = time.perf_counter()

    sampler.detail = {}
    sampler.start()
    result = fit(Project.load(project_file), [on_event], run_dir=run_dir)
    sampler.stop()
    Path(out_file).write_text(json.dumps({"status": result.status, "seconds": seconds,
                                          "peaks": {str(k): v for k, v in sampler.peaks.items()},
                                          "detail": {str(k): v for k, v in sampler.detail.items()}}))
    return 0 if result.status == "finished" else 1
