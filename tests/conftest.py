"""Shared fixtures. Qt runs headless; nothing downloads; tests use small generated data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TS_OFFLINE", "1")  # the app never reaches the network in tests

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


@pytest.fixture(autouse=True)
def _isolated_torch_home(tmp_path_factory, monkeypatch):
    """An empty torch hub cache, so 'available offline' depends only on what a test puts there."""
    home = tmp_path_factory.getbasetemp() / "torch_home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("TORCH_HOME", str(home))
    yield
