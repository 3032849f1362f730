"""`transfer-studio desktop-entry install|remove`: the applications-menu entry on Linux (XDG)."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

NAME = "desktop-entry"
HELP = ("Add Transfer Studio to your applications menu (Linux/XDG: .desktop entry, icons, *.tsproj "
        "file type), or remove it again.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("install", "remove"),
                        help="install writes the entry for the current user; remove deletes what install wrote")
    parser.add_argument("--exec", dest="exec_command", metavar="COMMAND",
                        help="the command the menu entry runs (default: this installation's transfer-studio)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from transfer_studio import desktop

    if args.action == "install":
        command = shlex.split(args.exec_command) if args.exec_command else None
        result = desktop.install(command)
    else:
        result = desktop.remove()
    return {"action": result.action, "files": result.files, "exec": result.exec_line,
            "refreshed": result.refreshed}


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    if result["action"] == "install":
        lines = [f"Installed the menu entry (Exec={result['exec']}):"]
    elif result["files"]:
        lines = ["Removed:"]
    else:
        return "Nothing to remove: no Transfer Studio menu entry is installed for this user."
    lines += [f"  {f}" for f in result["files"]]
    if result["refreshed"]:
        lines.append(f"Refreshed: {', '.join(result['refreshed'])}")
    return "\n".join(lines)
