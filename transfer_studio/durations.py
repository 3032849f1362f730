"""Durations in words, as the advisor and the app say them (no torch, no core: the GUI thread imports
this)."""

from __future__ import annotations


def hours_text(hours: float, about: str = "about ") -> str:
    """A duration as the advisor says it ("about 7 min"; the app's cards write ``about="≈ "``)."""
    if hours < 1 / 60:
        return "under a minute"
    if hours < 1:
        return f"{about}{max(1, round(hours * 60))} min"
    return f"{about}{hours:.1f} h"


def range_text(low_s: float, high_s: float, about: str = "about ", dash: str = "-") -> str:
    """An estimate's range in words ("7-10 min"; the app's cards write ``about="≈ ", dash="–"``)."""
    if high_s < 60:
        return "under a minute"
    if high_s < 3600:
        a, b = max(1, round(low_s / 60)), max(1, round(high_s / 60))
        return f"{about}{a} min" if a == b else f"{a}{dash}{b} min"
    return f"{low_s / 3600:.1f}{dash}{high_s / 3600:.1f} h"
