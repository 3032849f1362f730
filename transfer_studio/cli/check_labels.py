"""`transfer-studio check-labels DIR --model MODEL [--json]`: images whose labels look wrong,
near-duplicates across classes or splits, and images that fit no class."""

from __future__ import annotations

import argparse
import sys
from typing import Any

NAME = "check-labels"
HELP = ("Find probably mislabelled images (ranked, with a suggested class), near-duplicates across classes "
        "or splits, and images that fit no class, from the model's features.")

_SHOWN = 20  # ranked images printed without --json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="the data folder (class sub-folders, or images with labels.csv)")
    parser.add_argument("--model", required=True, metavar="MODEL", help="catalog model name (see `models`)")
    parser.add_argument("--weights", default="DEFAULT", metavar="W",
                        help="DEFAULT (the catalog's pretrained weights), none, or a weights file (default DEFAULT)")
    parser.add_argument("--image-size", type=int, default=None, metavar="N",
                        help="input size in pixels (default: the model's own)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                        help="where the features are computed (default: auto)")
    parser.add_argument("--top", type=int, default=None, metavar="N",
                        help="list only the N most doubtful images (default: all with --json, 20 otherwise)")
    parser.add_argument("--similarity", type=float, default=None, metavar="S",
                        help="cosine similarity of features from which two images count as near-duplicates "
                             "(default 0.97)")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="fold seed (default 0)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from transfer_studio.cli.scan import scan_with_progress
    from transfer_studio.config import DataSpec, ModelSpec, Project, TrainSpec
    from transfer_studio.core import label_issues
    from transfer_studio.core.catalog import get_info
    from transfer_studio.errors import UserError
    from transfer_studio.training.label_check import check_labels

    get_info(args.model)  # an unknown model fails before the scan
    if args.top is not None and args.top < 0:
        raise UserError(f"--top must be 0 or more (got {args.top})")
    similarity = label_issues.DUPLICATE_SIMILARITY if args.similarity is None else args.similarity
    if not 0.0 < similarity <= 1.0:
        raise UserError(f"--similarity must be in (0, 1] (got {similarity})")
    report = scan_with_progress(args.dir, verify=False, show_progress=not args.json)
    project = Project(name="check-labels", model=ModelSpec(args.model, args.weights),
                      data=DataSpec(root=str(args.dir), seed=args.seed),
                      train=TrainSpec(device=args.device, image_size=args.image_size, seed=args.seed))
    show = not args.json and sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if show:
            print(f"\rchecking labels ({done / max(total, 1):.0%})\x1b[K", end="", file=sys.stderr, flush=True)

    result = check_labels(project, report, progress=progress, duplicate_similarity=similarity)
    if show:
        print("\r\x1b[K", end="", file=sys.stderr)
    limit = args.top if args.top is not None else (None if args.json else _SHOWN)
    return result.to_json(limit)


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    m = result["method"]
    lines = [result["root"],
             f"  {result['num_images']:,} images, {len(result['classes'])} classes; {result['flagged']} probably "
             f"mislabelled, {result['outliers']} fit no class well",
             f"  (out-of-fold linear probes on {m['model']} features, {m['folds']} folds, cross-validated "
             f"accuracy {m['cv_accuracy']:.1%}; {m['seconds']:.1f} s)", ""]
    rows = [["#", "IMAGE", "LABEL", "SUGGESTED", "P(LABEL)", ""]]
    for i in result["images"]:
        mark = "mislabelled?" if i["flagged"] else ""
        if i["outlier"]:
            mark = (mark + ", " if mark else "") + "fits no class"
        rows.append([str(i["rank"]), i["file"], i["given"], f"{i['suggested']} ({i['suggested_probability']:.0%})",
                     f"{i['self_confidence']:.0%}", mark])
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    lines += ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if len(result["images"]) < result["num_images"]:
        lines.append(f"  ... {result['num_images'] - len(result['images']):,} more, less doubtful (--top N, --json)")
    dups = result["near_duplicates"]
    if dups:
        lines += ["", f"Near-duplicates across classes or splits: {len(dups)}"]
        lines += [f"  {d['a']} = {d['b']} ({d['similarity']:.3f}; {d['kind']})" for d in dups[:_SHOWN]]
        if len(dups) > _SHOWN:
            lines.append(f"  ... and {len(dups) - _SHOWN} more (--json lists them all)")
    lines += ["", "Correct them in the app (Review labels): every move is journalled and can be undone."]
    return "\n".join(lines)
