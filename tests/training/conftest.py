"""Fixtures for the training engine's tests: tiny image folders and projects that train in seconds."""

from __future__ import annotations

import pytest
import torch
from helpers.images import make_class_folder


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine OpenMP threads
    waiting on each other made a step 15x slower: one thread per test, restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """3 classes x 8 images of 32x32 px (6 train / 2 val per class with val_split 0.25)."""
    return make_class_folder(tmp_path_factory.mktemp("data") / "tiny", {"a": 8, "b": 8, "c": 8}, size=32)


@pytest.fixture(scope="session")
def imbalanced_data(tmp_path_factory):
    return make_class_folder(tmp_path_factory.mktemp("data") / "imb", {"a": 16, "b": 4}, size=32)
