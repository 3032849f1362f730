"""Shared by the bench scripts: replace one script's section of docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(mark: str, text: str) -> None:
    """Put ``text`` between the two ``mark`` comments (appended with them if missing), atomically."""
    from transfer_studio.config import atomic_write_text

    old = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n"
    block = f"{mark}\n{text.rstrip()}\n{mark}"
    if old.count(mark) >= 2:
        a = old.index(mark)
        b = old.index(mark, a + len(mark)) + len(mark)
        new = old[:a] + block + old[b:]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    atomic_write_text(DOC, new)
