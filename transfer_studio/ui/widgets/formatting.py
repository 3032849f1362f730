"""Compact human-readable numbers for labels and graph nodes (pure Python)."""

from __future__ import annotations

from collections.abc import Sequence


def format_count(n: int | float | None) -> str:
    """11689512 -> "11.7M", 9408 -> "9.4K", 0 -> "0"; None -> "–"."""
    if n is None:
        return "–"
    n = float(n)
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            value = n / div
            text = f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}"
            return text.removesuffix(".0") + suffix
    return f"{n:.0f}" if n == int(n) else f"{n:.2f}"


def format_share(part: int | float, total: int | float) -> str:
    """``part`` of ``total`` as a percentage that never rounds to a whole it is not: "100%" only when
    all of it, "0%" only when none (4,640,000 of 4,652,008 -> "99.7%", not "100%")."""
    if not total or total < 0:
        return "–"
    if part >= total:
        return "100%"
    if part <= 0:
        return "0%"
    share = 100.0 * part / total
    for digits in (0, 1, 2):
        text = f"{share:.{digits}f}"
        if 0.0 < float(text) < 100.0:
            return f"{text}%"
    return "<0.01%" if share < 1 else ">99.99%"


def format_shape(shape: Sequence[int] | None, drop_batch: bool = True) -> str:
    """[1, 64, 56, 56] -> "64×56×56" (the batch dimension is dropped)."""
    if not shape:
        return ""
    dims = list(shape[1:]) if drop_batch and len(shape) > 1 else list(shape)
    return "×".join(str(int(d)) for d in dims)


def format_bytes(n: int | float) -> str:
    """Binary units: 1536 -> "1.5 KiB"."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
