"""Fixtures for the hardening tests (faults, hostile input, fuzzing, endurance)."""

from __future__ import annotations

import os

import pytest
import torch
from helpers.images import make_class_folder


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """3 classes x 8 images of 32x32 px (6 train / 2 val per class with val_split 0.25)."""
    return make_class_folder(tmp_path_factory.mktemp("data") / "tiny", {"a": 8, "b": 8, "c": 8}, size=32)


@pytest.fixture
def umask():
    """Set the process umask for one test (restored afterwards)."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(saved)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_data):
    """A finished 1-epoch run (random-init shufflenet at 32 px): a run folder to export and load."""
    from helpers.training import make_project

    from transfer_studio.training import fit

    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    result = fit(make_project(tiny_data, strategy="full", epochs=1), run_dir=run_dir)
    assert result.status == "finished"
    return run_dir
