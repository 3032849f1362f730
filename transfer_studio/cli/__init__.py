"""Command-line interface: argparse subcommands that drive the same engine as the GUI.

Each subcommand lives in its own module under ``transfer_studio.cli`` and exposes:

    NAME: str                                   the subcommand's name
    HELP: str                                   one line for ``--help``
    def add_arguments(parser) -> None           its arguments (``--json`` is added for every command)
    def run(args) -> Any                        does the work; returns a JSON-able result
    def render(result, args) -> str             the human-readable text printed without --json

Contract: with ``--json`` stdout carries exactly one JSON document (library chatter is redirected to
stderr while ``run`` executes). A ``UserError`` prints one line on stderr and exits 2; any other
failure prints one line (traceback only with TS_DEBUG=1) and exits 1; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import traceback
from typing import Any

from transfer_studio.errors import Cancelled, ExitQuietly, UserError

# Subcommand modules, in the order --help lists them.
COMMANDS = ["models", "inspect", "predict", "scan", "check_labels", "suggest", "train", "evaluate", "export",
            "settings", "desktop_entry"]


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's default exit code is 2 already; keep it one line
        self.print_usage(sys.stderr)
        raise UserError(message)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Any]]:
    parser = _ArgumentParser(
        prog="transfer-studio",
        description="Transfer Studio: transfer learning for image classifiers. "
        "Run without arguments to open the desktop app.",
    )
    from transfer_studio import __version__

    parser.add_argument("--version", action="version", version=f"transfer-studio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules: dict[str, Any] = {}
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"transfer_studio.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"transfer_studio.cli.{name}":
                continue  # not built yet
            raise
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.add_argument("--json", action="store_true", help="print exactly one JSON document on stdout")
        modules[mod.NAME] = mod
    return parser, modules


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, paths, numpy scalars/arrays -> plain JSON values."""
    import dataclasses
    from pathlib import PurePath

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, PurePath):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy / torch
        return obj.tolist()
    if isinstance(obj, float) and obj != obj:  # NaN is not JSON
        return None
    return obj


def _tolerant_streams() -> None:
    """File names that are not valid UTF-8 reach us as lone surrogates (os.fsdecode): print them
    escaped (\\udcff) rather than failing on a terminal whose encoding is strict."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and getattr(stream, "errors", "") == "strict":
            stream.reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    as_json = "--json" in argv
    _tolerant_streams()
    from transfer_studio.machine_settings import apply_environment

    apply_environment()  # the settings file's feature-cache folder, for training.feature_store
    try:
        parser, modules = build_parser()
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help()
            return 2
        mod = modules[args.command]
        # Keep stdout clean for the JSON document: anything printed during run() goes to stderr.
        redirect = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
        with redirect:
            result = mod.run(args)
        if as_json:
            sys.stdout.write(json.dumps(to_jsonable(result), indent=2) + "\n")
        else:
            text = mod.render(result, args)
            if text:
                sys.stdout.write(text.rstrip("\n") + "\n")
        sys.stdout.flush()
        return 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ExitQuietly as exc:
        return exc.code
    except Cancelled as exc:
        print(f"cancelled: {exc}" if str(exc) else "cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if os.environ.get("TS_DEBUG"):
            traceback.print_exc()
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
