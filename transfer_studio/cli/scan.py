"""`transfer-studio scan DIR [--verify] [--json]`: what is in an image folder and what is wrong with it."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

NAME = "scan"
HELP = ("Check an image folder (one sub-folder per class, or train/ val/ [test/]): classes, counts, "
        "unreadable files, duplicates.")

_LIST_LIMIT = 20  # skipped files / duplicate groups shown in the human output (--json lists all)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="the data folder")
    parser.add_argument("--verify", action="store_true",
                        help="decode every image fully (slower; finds corrupt pixel data the quick check cannot)")


class StderrProgress:
    """A one-line "scanning 1234/20000 files" on stderr, shown only once a scan takes a while."""

    def __init__(self, what: str = "scanning", stream: TextIO | None = None, delay: float = 0.5,
                 interval: float = 0.1) -> None:
        self.what = what
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.delay = delay
        self.interval = interval
        self._last = float("-inf")
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        final = done >= total
        if now - self.start < self.delay or (not final and now - self._last < self.interval):
            return
        self._last = now
        self.shown = True
        end = "\r" if getattr(self.stream, "isatty", lambda: False)() else "\n"
        self.stream.write(f"{self.what} {done:,}/{total:,} files{end}")
        self.stream.flush()

    def close(self) -> None:
        if self.shown and getattr(self.stream, "isatty", lambda: False)():
            self.stream.write("\n")
            self.stream.flush()


def scan_with_progress(directory: str, *, verify: bool, show_progress: bool) -> Any:
    from transfer_studio.core.dataset import scan

    progress = StderrProgress("verifying" if verify else "scanning") if show_progress else None
    try:
        return scan(directory, verify=verify, progress=progress)
    finally:
        if progress is not None:
            progress.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    report = scan_with_progress(args.dir, verify=args.verify, show_progress=not args.json)
    return report.to_json()


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [f"{result['root']}"]
    layout = ("already split into " + "/, ".join(result["split_counts"]) + "/" if result["layout"] == "split"
              else "one sub-folder per class")
    lines.append(f"  {len(result['classes'])} classes, {result['num_images']:,} images ({layout})"
                 + ("; every image decoded" if result.get("verified") else ""))
    size = result.get("image_size_range") or {}
    if size:
        lines.append(f"  image sizes {size['min_width']}x{size['min_height']} to {size['max_width']}x"
                     f"{size['max_height']}; largest/smallest class {result['imbalance']:.1f}x")
    lines.append("")
    splits = list(result["split_counts"])
    header = ["CLASS", "IMAGES", *[s.upper() for s in splits]]
    rows = [header] + [
        [c, f"{result['counts'][c]:,}", *[f"{result['split_counts'][s].get(c, 0):,}" for s in splits]]
        for c in result["classes"]
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        lines.append("  " + "  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                                      for i, (v, w) in enumerate(zip(r, widths, strict=True))).rstrip())
    skipped = result["skipped"]
    if skipped:
        lines += ["", f"Skipped {len(skipped)} file(s):"]
        lines += [f"  {s['path']}: {s['reason']}" for s in skipped[:_LIST_LIMIT]]
        if len(skipped) > _LIST_LIMIT:
            lines.append(f"  ... and {len(skipped) - _LIST_LIMIT} more (--json lists them all)")
    dups = result["duplicates"]
    if dups:
        lines += ["", f"Identical files: {len(dups)} group(s)"]
        lines += ["  " + " = ".join(g) for g in dups[:_LIST_LIMIT]]
        if len(dups) > _LIST_LIMIT:
            lines.append(f"  ... and {len(dups) - _LIST_LIMIT} more groups (--json lists them all)")
    if result["warnings"]:
        lines += ["", "Warnings:"] + [f"  - {w}" for w in result["warnings"]]
    return "\n".join(lines)
