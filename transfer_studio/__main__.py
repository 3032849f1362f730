"""Entry point: no arguments (or GUI options) opens the desktop app; a subcommand runs the CLI."""

from __future__ import annotations

import sys

# Options that belong to the desktop app rather than to a CLI subcommand.
GUI_OPTIONS = ("--sample", "--project", "--reset-settings")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in GUI_OPTIONS or argv[0] == "gui" or argv[0].endswith(".tsproj"):
        # Imported lazily: the CLI must work without Qt, and the GUI shows a window before torch loads.
        from transfer_studio.ui.app import run_app

        return run_app(argv[1:] if argv and argv[0] == "gui" else argv)
    from transfer_studio.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
