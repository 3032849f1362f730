"""Numbers in labels: compact counts and shares that never round to what they are not."""

from __future__ import annotations

from transfer_studio.ui.widgets import format_count, format_share


def test_a_share_is_100_or_0_percent_only_when_it_is():
    assert format_share(4_652_008, 4_652_008) == "100%"
    assert format_share(4_640_000, 4_652_008) == "99.7%"
    assert format_share(11_679_104, 11_689_512) == "99.9%"
    assert format_share(999_999, 1_000_000) == ">99.99%"
    assert format_share(37, 100) == "37%"
    assert format_share(1_026, 11_177_538) == "0.01%" and format_share(1, 10**9) == "<0.01%"
    assert format_share(12_810, 4_019_150) == "0.3%"
    assert format_share(0, 10) == "0%" and format_share(3, 0) == "–"
    assert format_count(4_652_008) == "4.7M"
