"""`transfer-studio suggest DIR --model MODEL [...]`: which layers to retrain, given the data and compute."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

NAME = "suggest"
HELP = ("Suggest a transfer-learning strategy (train the head, the last blocks, or everything) for a "
        "model and an image folder.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="the data folder")
    parser.add_argument("--model", required=True, metavar="MODEL", help="catalog model name (see `models`)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                        help="device the time estimate is for (default: auto)")
    parser.add_argument("--time-budget", type=float, default=None, metavar="HOURS",
                        help="longest acceptable training time in hours (default: 2)")
    parser.add_argument("--probe", action="store_true",
                        help="run the pretrained model on ~64 images to judge how different the images "
                             "are from ImageNet (needs the pretrained weights offline)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from transfer_studio.cli.scan import scan_with_progress
    from transfer_studio.core.catalog import get_info
    from transfer_studio.core.strategy import suggest

    get_info(args.model)  # an unknown model fails before the scan
    report = scan_with_progress(args.dir, verify=False, show_progress=not args.json)
    suggestion = suggest(report, args.model, device=args.device, time_budget_hours=args.time_budget,
                         probe=args.probe)
    return dataclasses.asdict(suggestion)


def _names(names: list[str], limit: int = 8) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[: limit // 2]) + f", ... ({len(names) - limit} more), " + ", ".join(names[-limit // 2:])


def _hours(h: float) -> str:
    return f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h"


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    what = {
        "head": "train only a new output layer; the pretrained network stays frozen",
        "partial": f"train the blocks from {result['unfreeze_from']} on and a new output layer",
        "full": "fine-tune the whole network from its pretrained weights",
    }[result["name"]]
    lines = [f"Suggested strategy {result['approach']} ({result['name']}): {what}", "", result["reason"], ""]
    if result["frozen"]:
        lines.append(f"Frozen ({len(result['frozen'])}): {_names(result['frozen'])}")
    lines.append(f"Trained ({len(result['trainable'])}): {_names(result['trainable'])} "
                 "(the last one replaced by a new output layer for your classes)")
    lr = f"learning rate {result['lr']:g}"
    if result["name"] != "head":
        lr += f" (pretrained blocks {result['lr'] * result['body_lr_factor']:g})"
    lines.append(f"{lr}, {result['epochs']} epochs, batch size {result['batch_size']}, "
                 f"augmentation '{result['augment']}'")
    others = ", ".join(f"{k} {_hours(v)}" for k, v in result["estimates_hours"].items())
    lines.append(f"Estimated time on {result['device']}: {_hours(result['estimated_hours'])} (budget "
                 f"{result['time_budget_hours']:g} h; {others})")
    if result.get("probe"):
        p = result["probe"]
        verdict = "similar to" if p["similar"] else "different from"
        lines.append(f"Similarity probe: mean ImageNet confidence {p['mean_confidence']:.0%} on {p['images']} "
                     f"images -> {verdict} ImageNet")
    return "\n".join(lines)
