"""Entry point: no arguments (or GUI options) opens the desktop app; a subcommand runs the CLI."""

from __future__ import annotations

import sys

# Options that belong to the desktop app rather than to a CLI subcommand.
GUI_OPTIONS = ("--sample", "--project", "--reset-settings", "--theme")

# The desktop app's options for the top-level --help (ui/app.py's parser holds the same; a test keeps
# them in step). Plain text: --help must work without Qt.
APP_HELP = """\
desktop app (run without a COMMAND):
  transfer-studio [FILE.tsproj] [--project FILE] [--sample] [--reset-settings] [--theme THEME]

  FILE.tsproj, --project FILE
                 open this project file
  --sample       open the sample project (handwritten digits + the bundled EfficientNet-Lite0),
                 as you last saved it; File > Reset the Sample Project restores its defaults
  --reset-settings
                 forget window layout, recent projects and theme before starting
  --theme {system,light,dark}
                 colour theme for this session
"""


def print_help() -> None:
    """The CLI's commands, then the desktop app's options: one help for the one program."""
    from transfer_studio.cli import build_parser

    parser, _modules = build_parser()
    parser.print_help()
    print()
    print(APP_HELP, end="")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print_help()
        return 0
    if not argv or argv[0].split("=", 1)[0] in GUI_OPTIONS or argv[0] == "gui" or argv[0].endswith(".tsproj"):
        # Imported lazily: the CLI must work without Qt, and the GUI shows a window before torch loads.
        from transfer_studio.ui.app import run_app

        return run_app(argv[1:] if argv and argv[0] == "gui" else argv)
    from transfer_studio.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
