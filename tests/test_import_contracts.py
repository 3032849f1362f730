"""The import contracts in pyproject.toml (``[tool.importlinter]``, issue 13.6) hold: ``lint-imports``
passes, and this test fails with its report when it does not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("importlinter", reason="import-linter is in the dev extra")


def _lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` run from the repository root, from the console script beside this Python when
    there is one (a venv), else through its entry function."""
    script = Path(sys.executable).with_name("lint-imports")
    cmd = [str(script)] if script.exists() else [
        sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]
    return subprocess.run([*cmd, "--no-cache", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_import_contracts_are_kept():
    proc = _lint_imports()
    assert proc.returncode == 0, f"lint-imports failed:\n{proc.stdout}\n{proc.stderr}"
    assert "0 broken" in proc.stdout


def test_external_imports_are_seen(tmp_path: Path):
    """The Qt contract can fail: with the pyproject's graph settings, the pages (which use Qt) break
    the same contract (a contract that cannot fail would pass silently without external packages)."""
    config = tmp_path / "contracts.toml"
    config.write_text(
        '[tool.importlinter]\nroot_package = "transfer_studio"\ninclude_external_packages = true\n\n'
        '[[tool.importlinter.contracts]]\nname = "pages without Qt"\ntype = "forbidden"\n'
        'source_modules = ["transfer_studio.ui.pages"]\nforbidden_modules = ["PySide6"]\n',
        encoding="utf-8")
    proc = _lint_imports("--config", str(config))
    assert proc.returncode != 0 and "BROKEN" in proc.stdout, proc.stdout + proc.stderr
