"""`transfer-studio models [--json]`: the model catalog and whether each model's weights are offline."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

NAME = "models"
HELP = "List the pretrained models (torchvision's zoo and the bundled offline model) and their weights."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--offline", action="store_true",
                        help="only the models whose pretrained weights are available offline now")


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from transfer_studio.core.catalog import list_models

    return [dataclasses.asdict(info) for info in list_models()
            if info.weights_available_offline or not args.offline]


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render(result: list[dict[str, Any]], args: argparse.Namespace) -> str:
    header = ("MODEL", "FAMILY", "SOURCE", "PARAMS", "GFLOPS", "TOP-1", "INPUT", "OFFLINE")
    rows = [header]
    for m in result:
        rows.append((m["name"], m["family"], m["source"], f"{m['params'] / 1e6:.1f}M", _fmt(m["gflops"], ".2f"),
                     _fmt(m["imagenet_top1"], ".1f"), str(m["input_size"]),
                     "yes" if m["weights_available_offline"] else "no"))
    right = {3, 4, 5, 6}  # numbers are right-aligned
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
             for r in rows]
    offline = sum(m["weights_available_offline"] for m in result)
    lines.append(f"{len(result)} models, {offline} with weights available offline "
                 "(others download on request into the torch hub cache)")
    return "\n".join(lines)
