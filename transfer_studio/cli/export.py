"""`transfer-studio export RUN_DIR --out DIR`: write a verified bundle other programs load."""

from __future__ import annotations

import argparse
from typing import Any

NAME = "export"
HELP = ("Export a training run as a bundle: model.safetensors + model.json, and model.onnx / model.pt2, "
        "each verified against PyTorch.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the training run folder to export")
    parser.add_argument("--out", required=True, metavar="DIR", help="the bundle folder to write")
    parser.add_argument("--format", default="safetensors,onnx,pt2", metavar="LIST",
                        help="comma-separated: safetensors,onnx,pt2 (default: all three; model.safetensors "
                             "and model.json are always written)")
    parser.add_argument("--force", action="store_true", help="replace a bundle already in DIR")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from transfer_studio.cli.evaluate import progress_printer
    from transfer_studio.core import export
    from transfer_studio.errors import UserError

    formats = export.parse_formats(args.format)  # fail on a typo before any work
    if export.bundle_exists(args.out) and not args.force:
        raise UserError(f"{args.out} already holds a bundle: pass --force to replace it, or choose "
                        "another --out folder")
    result = export.export_run(args.run_dir, args.out, formats, progress=progress_printer("exporting"))
    return result.to_json()


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    v = result["verification"]
    lines = [f"Exported {result['model']} ({len(result['classes'])} classes) to {result['out_dir']}"]
    for key, path in result["files"].items():
        lines.append(f"  {key:<12} {path}")
    lines.append(f"Verification on {v['images']} {v['inputs']} (tolerance {v['tolerance']:g}, max abs diff "
                 "of the logits):")
    for fmt in ("safetensors", "pt2", "onnx"):
        if fmt in v:
            r = v[fmt]
            extra = f", {r['exporter']} exporter" if "exporter" in r else ""
            lines.append(f"  {fmt:<12} max abs diff {r['max_abs_diff']:.2e}, top-1 agree "
                         f"{r['top1_agree']}/{r['images']}{extra}: {'ok' if r['passed'] else 'FAILED'}")
    return "\n".join(lines)
