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
    parser.add_argument("--image-size", type=int, default=None, metavar="N",
                        help="input size in pixels the advice is for (default: the model's own)")
    parser.add_argument("--val-split", type=float, default=0.2, metavar="F",
                        help="validation share the training images are split from (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="split seed (default 0)")
    parser.add_argument("--quick", action="store_true",
                        help="decide from the image counts alone, with a rough time model (no measurements)")
    parser.add_argument("--probe", action="store_true",
                        help="also report how sure the pretrained classifier is of your images (ImageNet "
                             "similarity; informative only)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import sys

    from transfer_studio.cli.scan import scan_with_progress
    from transfer_studio.config import DataSpec, ModelSpec, Project, TrainSpec
    from transfer_studio.core.catalog import get_info
    from transfer_studio.core.strategy import suggest
    from transfer_studio.errors import UserError

    get_info(args.model)  # an unknown model fails before the scan
    if args.time_budget is not None and not args.time_budget > 0:
        raise UserError(f"the time budget must be a positive number of hours (got {args.time_budget})")
    report = scan_with_progress(args.dir, verify=False, show_progress=not args.json)
    if args.quick:
        suggestion = suggest(report, args.model, device=args.device, time_budget_hours=args.time_budget,
                             probe=args.probe)
        return dataclasses.asdict(suggestion)
    from transfer_studio.training.advice import advise

    project = Project(name="suggest", model=ModelSpec(args.model, "DEFAULT"),
                      data=DataSpec(root=str(args.dir), val_split=args.val_split, seed=args.seed),
                      train=TrainSpec(device=args.device, image_size=args.image_size, seed=args.seed))
    show = not args.json and sys.stderr.isatty()

    def progress(text: str, fraction: float) -> None:
        if show:
            print(f"\r{text} ({fraction:.0%})\x1b[K", end="", file=sys.stderr, flush=True)

    suggestion = advise(project, report, time_budget_hours=args.time_budget, progress=progress)
    if show:
        print("\r\x1b[K", end="", file=sys.stderr)
    if args.probe:
        from transfer_studio.core.strategy import similarity_probe

        suggestion.probe = similarity_probe(report, args.model)
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
    if result["name"] == "head":
        lr = "the output layer fitted to convergence (L-BFGS)"
    else:
        lr = (f"learning rate {result['lr']:.2g} (pretrained blocks {result['lr'] * result['body_lr_factor']:.2g}), "
              f"after {result['head_epochs']} epoch(s) fitting the new output layer alone")
    aug = result["augment"] + (" with " + ", ".join(f"{k} off" for k, v in result["augment_params"].items()
                                                     if v.get("enabled") is False) if result["augment_params"] else "")
    lines.append(f"{lr}, {result['epochs']} epochs, batch size {result['batch_size']}, augmentation '{aug}'")
    if result.get("augment_reason"):
        lines.append(f"Augmentation: {result['augment_reason']}")
    if result.get("estimate_source") == "trial":
        others = ", ".join(f"{k} {_span(v[1], v[2])}" for k, v in result["estimates_s"].items())
        lines.append(f"Estimated time on {result['device']}: {_span(*result['estimate_range_s'])} (timed trial; "
                     f"budget {result['time_budget_hours']:g} h; {others})")
    else:
        others = ", ".join(f"{k} {_hours(v)}" for k, v in result["estimates_hours"].items())
        lines.append(f"Estimated time on {result['device']}: {_hours(result['estimated_hours'])} (rough model; "
                     f"budget {result['time_budget_hours']:g} h; {others})")
    if result.get("probe"):
        p = result["probe"]
        verdict = "similar to" if p["similar"] else "different from"
        lines.append(f"Similarity probe: mean ImageNet confidence {p['mean_confidence']:.0%} on {p['images']} "
                     f"images -> {verdict} ImageNet")
    return "\n".join(lines)


def _span(lo: float, hi: float) -> str:
    if hi < 90:
        return f"{lo:.0f}-{hi:.0f} s"
    if hi < 5400:
        return f"{lo / 60:.0f}-{hi / 60:.0f} min"
    return f"{lo / 3600:.1f}-{hi / 3600:.1f} h"
