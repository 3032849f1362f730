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
def _isolated_caches(tmp_path_factory, monkeypatch):
    """Feature store and trial timings in the test session's own folder, never the user's cache."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("TS_FEATURE_CACHE", str(base / "feature_cache"))
    monkeypatch.setenv("TS_TRIAL_CACHE", str(base / "trials.json"))
    yield


@pytest.fixture(autouse=True)
def _isolated_torch_home(tmp_path_factory, monkeypatch):
    """An empty torch hub cache, so 'available offline' depends only on what a test puts there."""
    home = tmp_path_factory.getbasetemp() / "torch_home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("TORCH_HOME", str(home))
    yield


@pytest.fixture(autouse=True)
def _isolated_machine_settings(tmp_path_factory, monkeypatch):
    """No user's machine defaults (settings.json, TS_DEVICE, ...) reach a test unless it sets them."""
    monkeypatch.setenv("TS_CONFIG_DIR", str(tmp_path_factory.mktemp("ts_config")))
    for var in ("TS_DEVICE", "TS_NUM_WORKERS", "TS_WEIGHTS_DIR", "TS_RUNS_DIR"):
        monkeypatch.delenv(var, raising=False)
    yield
