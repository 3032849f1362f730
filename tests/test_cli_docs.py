"""The documentation matches the app: docs/cli.md is what packaging/gen_cli_docs.py generates from
the parsers, and every `transfer-studio ...` command line in the README and docs/ names a real
command with options it accepts."""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from transfer_studio.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _gen():
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "packaging" / "gen_cli_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_cli_reference_is_generated_from_the_current_parsers():
    text = _gen().render()
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == text, (
        "docs/cli.md is out of date: run python packaging/gen_cli_docs.py")


def test_cli_reference_covers_every_command_and_option():
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    parser, _modules = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert sub.choices, "no subcommands"
    for name, subparser in sub.choices.items():
        assert f"## transfer-studio {name}\n" in text
        for action in subparser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}`" in text, f"{name} {option}"


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


def _command_lines() -> list[tuple[str, str]]:
    """(file name, command line) for every transfer-studio invocation in code in the docs."""
    found = []
    for path in DOCS:
        if path.name == "cli.md":  # generated from the parsers (checked above)
            continue
        text = path.read_text(encoding="utf-8")
        code = re.findall(r"```(?:bash|sh|shell|console|text)?\n(.*?)```", text, flags=re.S)
        code += re.findall(r"`([^`\n]*transfer-studio [^`\n]*)`", text)
        for block in code:
            for line in block.replace("\\\n", " ").splitlines():
                line = line.strip().lstrip("$ ")
                m = re.search(r"(?:^|[\s/])transfer-studio(\s.*)?$", line)
                if m and not line.startswith("#") and "pip install" not in line:
                    found.append((path.name, "transfer-studio" + (m.group(1) or "")))
    return found


def test_docs_show_the_commands_in_use():
    lines = _command_lines()
    names = {line.split()[1] for _f, line in lines if len(line.split()) > 1}
    assert {"train", "evaluate", "export", "predict", "settings"} <= names, names


@pytest.mark.parametrize("where, line", _command_lines())
def test_every_documented_command_line_is_accepted_by_the_parser(where, line):
    parser, _modules = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    from transfer_studio.ui.app import build_arg_parser

    words = shlex.split(line.split("#")[0].split("|")[0].split("&&")[0].replace("…", "..."))[1:]
    words = [w for w in words if w not in ("...", "[...]")]
    if not words or words[0].startswith("-") and words[0] not in ("--help", "--version") \
            or words[0].endswith(".tsproj"):
        allowed, command = _options(build_arg_parser()), "(the app)"
    elif words[0] in ("--help", "--version") or words[0].isupper():  # COMMAND: a placeholder
        return
    else:
        commands = words[0].split("/")  # prose may name several: `transfer-studio inspect/predict --weights`
        for name in commands:
            assert name in sub.choices, f"{where}: unknown command {name!r} in `{line}`"
        allowed = set.intersection(*(_options(sub.choices[name]) for name in commands))
        command = words[0]
    for word in words:
        flag = word.split("=", 1)[0].strip("[]")
        if flag.startswith("--"):
            assert flag in allowed, f"{where}: `{command}` has no option {flag} (in `{line}`)"
