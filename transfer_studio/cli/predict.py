"""`transfer-studio predict MODEL IMAGE...`: classify images with a catalog model or an exported bundle."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

NAME = "predict"
HELP = ("Classify images with a pretrained catalog model (ImageNet classes) or an exported bundle folder.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a catalog model name, or an exported bundle folder")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files to classify")
    parser.add_argument("--top-k", type=int, default=5, metavar="K", help="classes listed per image (default 5)")
    parser.add_argument("--weights", default="DEFAULT", metavar="DEFAULT|none|PATH",
                        help="catalog models: pretrained (DEFAULT), random init (none) or a state-dict file")
    parser.add_argument("--allow-download", action="store_true",
                        help="download missing pretrained weights into the torch hub cache")
    parser.add_argument("--device", default="cpu", metavar="DEVICE", help="auto, cpu, cuda or mps (default cpu)")


def download_printer() -> Callable[[int, int], None]:
    """Download progress in MB on stderr, a line per 10% (or per 10 MB when the size is unknown)."""
    state = {"step": -1}

    def show(done: int, total: int) -> None:
        step = int(10 * done / total) if total > 0 else done // (10 << 20)
        if step != state["step"]:
            state["step"] = step
            size = f" of {total / 1e6:.1f}" if total > 0 else ""
            print(f"downloading weights: {done / 1e6:.1f}{size} MB", file=sys.stderr, flush=True)

    return show


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from transfer_studio.core.predict import Predictor
    from transfer_studio.errors import UserError

    if args.top_k < 1:
        raise UserError(f"--top-k must be 1 or more, got {args.top_k}")
    for image in args.images:  # fail on a typo before loading a model
        path = Path(image)
        if not path.exists():
            raise UserError(f"image not found: {image}")
        if not path.is_file():
            raise UserError(f"not an image file: {image}")
    predictor = Predictor.from_source(args.model, weights=args.weights, device=args.device,
                                      allow_download=args.allow_download, progress=download_printer())
    return predictor.predict_paths(args.images, top_k=args.top_k)


def render(result: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines: list[str] = []
    for item in result:
        lines.append(item["image"])
        for entry in item["top_k"]:
            lines.append(f"  {entry['probability'] * 100:6.2f}%  {entry['label']} ({entry['index']})")
    return "\n".join(lines)
