"""`transfer-studio settings`: this machine's defaults (the Settings dialog's file), shown or changed."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

NAME = "settings"
HELP = ("Show or change this machine's defaults (device and loader workers where a project says auto, "
        "the weights, runs and feature-cache folders), shared with the app's Settings dialog.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="store a value: device=auto|cpu|cuda|cuda:N|mps, num_workers=auto|N, "
                             "weights_dir=FOLDER, runs_dir=FOLDER, feature_cache_dir=FOLDER (an empty value "
                             "restores the default); repeatable")
    parser.add_argument("--reset", action="store_true", help="forget every stored value (before any --set)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from transfer_studio import machine_settings as ms
    from transfer_studio.errors import UserError

    path = ms.settings_path()
    changes: dict[str, Any] = {}
    for item in args.assignments:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise UserError(f"--set {item!r}: write KEY=VALUE, e.g. --set device=cpu")
        changes[key] = ms.parse_value(key, value, f"--set {item}")
    if args.reset:
        ms.reset(path)
    if changes:
        ms.save(dataclasses.replace(ms.load_file(path), **changes), path)
    settings, sources = ms.resolved()
    return {"file": str(path), "file_exists": path.is_file(), "settings": settings.to_json(),
            "sources": sources, "environment": ms.ENV_VARS}


_DEFAULT_TEXT = {"weights_dir": "(torch hub cache)", "runs_dir": "(beside the project)",
                 "feature_cache_dir": "(~/.cache/transfer-studio/features)"}


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [f"Settings file: {result['file']}" + ("" if result["file_exists"] else " (not written yet)")]
    for key, value in result["settings"].items():
        shown = "auto" if value is None else (value if value != "" else _DEFAULT_TEXT.get(key, "(default)"))
        source = result["sources"][key]
        lines.append(f"  {key:<17} {shown:<24} from {source}   (override: {result['environment'][key]})")
    lines.append("device and num_workers apply where a project says auto; a project's own value wins.")
    return "\n".join(lines)
