"""Time to first window of an installed app or a PyInstaller bundle, timed from outside the process.

    python packaging/measure_startup.py [--runs 5] [--json] -- COMMAND [ARGS...]

e.g. ``-- .venv/bin/transfer-studio`` (the source install) or
``-- /tmp/ts-build/dist/transfer-studio/transfer-studio`` (the bundle). Each run starts COMMAND in
a fresh process with ``TS_STARTUP_PROBE`` set: the app writes the time its first frame was painted
and quits (``transfer_studio.ui.app``). The figure is that time minus the moment just before the
process was started. Settings and data go to a temporary folder (``--reset-settings`` is passed),
so every run starts like a first start. Uses ``$DISPLAY`` when set (a real or virtual X server),
else Qt's offscreen platform. The first run warms the OS file cache and is not counted.
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


def run_once(command: list[str], env: dict[str, str], workdir: Path, timeout: float = 120.0) -> dict:
    probe = workdir / "probe.json"
    probe.unlink(missing_ok=True)
    env = {**env, "TS_STARTUP_PROBE": str(probe)}
    t0 = time.time()
    proc = subprocess.run([*command, "--reset-settings"], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=workdir)
    if not probe.is_file():
        raise SystemExit(f"{command[0]} exited with {proc.returncode} before painting a window:\n"
                         f"{proc.stderr[-3000:]}")
    marks = json.loads(probe.read_text())
    return {"painted_s": marks["painted"] - t0, "torch_at_show": bool(marks["torch_at_show"]),
            "exit_s": time.time() - t0}


def measure(command: list[str], runs: int = 5) -> dict:
    with tempfile.TemporaryDirectory(prefix="ts-startup-") as tmp:
        work = Path(tmp)
        env = dict(os.environ)
        env.update({"TS_SETTINGS_FILE": str(work / "settings.ini"), "TS_DATA_DIR": str(work / "data"),
                    "TS_CONFIG_DIR": str(work / "config")})
        if not env.get("DISPLAY"):
            env["QT_QPA_PLATFORM"] = "offscreen"
        run_once(command, env, work)  # warm-up: measure the app, not the disk
        results = [run_once(command, env, work) for _ in range(runs)]
    times = [r["painted_s"] for r in results]
    return {"command": command, "runs": runs, "median_s": statistics.median(times), "min_s": min(times),
            "max_s": max(times), "torch_at_show": any(r["torch_at_show"] for r in results),
            "platform": "xcb (DISPLAY=" + os.environ["DISPLAY"] + ")" if os.environ.get("DISPLAY")
            else "offscreen", "cpus": os.cpu_count(), "load_avg": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv[:split])
    command = argv[split + 1:]
    if command and os.sep in command[0]:
        command[0] = str(Path(command[0]).resolve())  # the runs start in a temporary folder
    result = measure(command, args.runs)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{' '.join(result['command'])}: first window in {result['median_s']:.2f} s (median of "
              f"{result['runs']}; min {result['min_s']:.2f}, max {result['max_s']:.2f}) on {result['platform']}, "
              f"torch imported before the window: {'yes' if result['torch_at_show'] else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
