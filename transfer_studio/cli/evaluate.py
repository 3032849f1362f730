"""`transfer-studio evaluate RUN_DIR|BUNDLE [DATA_DIR]`: accuracy, per-class metrics, worst mistakes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

NAME = "evaluate"
HELP = ("Evaluate a training run or an exported bundle: accuracy, top-5, per-class precision/recall/F1, "
        "confusion matrix and the most confidently wrong images.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="RUN_DIR|BUNDLE", help="a training run folder or an exported bundle")
    parser.add_argument("data_dir", metavar="DATA_DIR", nargs="?", default=None,
                        help="a folder of labelled images (one sub-folder per class) to evaluate on; "
                             "default: the run's test split, else its validation split")
    parser.add_argument("--split", choices=("val", "test"), default=None,
                        help="which of the run's splits (or of DATA_DIR's val/test folders) to use")
    parser.add_argument("--worst", type=int, default=10, metavar="N",
                        help="how many of the most confidently wrong images to list (default 10)")
    parser.add_argument("--batch-size", type=int, default=64, metavar="N", help="images per batch (default 64)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                        help="where inference runs (default: auto)")


def progress_printer(label: str) -> Callable[[int, int], None]:
    """A one-line progress counter on stderr (redrawn in place on a terminal)."""
    tty = sys.stderr.isatty()
    state = {"last": -1}

    def show(done: int, total: int) -> None:
        if total <= 0:
            return
        pct = int(100 * done / total)
        if tty:
            end = "\n" if done >= total else ""
            print(f"\r{label}: {done}/{total} ({pct}%)", end=end, file=sys.stderr, flush=True)
        elif pct // 25 != state["last"] // 25 or done >= total:
            print(f"{label}: {done}/{total} ({pct}%)", file=sys.stderr, flush=True)
        state["last"] = pct

    return show


def run(args: argparse.Namespace) -> dict[str, Any]:
    from transfer_studio.core.metrics import evaluate
    from transfer_studio.errors import UserError

    if args.worst < 0:
        raise UserError("--worst must be 0 or more")
    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    report = evaluate(args.source, args.data_dir, split=args.split, worst=args.worst,
                      batch_size=args.batch_size, device=args.device,
                      progress=progress_printer("evaluating"))
    return report.to_json()


_SPLIT_NAMES = {"test": "test split", "val": "validation split", "train": "train folder", "all": "all images"}


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    classes: list[str] = result["classes"]
    lines = [
        f"Evaluated {result['source']} ({result['source_kind']}) on the "
        f"{_SPLIT_NAMES.get(result['split'], result['split'])} of {result['data_root']}: "
        f"{result['num_images']} images",
    ]
    if result.get("note"):  # the optimism caveat, or classes the folder lacks
        lines.append("Note: " + result["note"] + ".")
    lines.append("")
    lines.append(f"accuracy  {result['accuracy']:.4f}")
    if "top5" in result:
        lines.append(f"top-5     {result['top5']:.4f}")
    lines.append("")
    width = max([len("class")] + [len(c) for c in classes])
    lines.append(f"{'class':<{width}}  precision  recall      f1  support")
    for name in classes:
        m = result["per_class"][name]
        lines.append(f"{name:<{width}}  {m['precision']:9.3f}  {m['recall']:6.3f}  {m['f1']:6.3f}  {m['support']:7d}")
    if len(classes) <= 20:
        lines.append("")
        lines.append("confusion matrix (rows: true class, columns: predicted)")
        cm = result["confusion_matrix"]
        cell = max(3, max(len(str(v)) for row in cm for v in row), *(len(c) for c in classes))
        cell = min(cell, 8)
        lines.append(" " * width + "  " + " ".join(f"{c[:cell]:>{cell}}" for c in classes))
        for name, row in zip(classes, cm, strict=True):
            lines.append(f"{name:<{width}}  " + " ".join(f"{v:>{cell}}" for v in row))
    worst = result["worst"]
    if worst:
        lines.append("")
        lines.append(f"most confidently wrong ({len(worst)}):")
        for w in worst:
            lines.append(f"  {w['probability']:.3f}  {w['label']} -> {w['predicted']}  {w['path']}")
    if result.get("skipped"):
        lines.append("")
        lines.append(f"{len(result['skipped'])} image(s) skipped, e.g. {result['skipped'][0]['path']}: "
                     f"{result['skipped'][0]['reason']}")
    return "\n".join(lines)
