"""Fixtures for the training engine's tests: tiny image folders and projects that train in seconds."""

from __future__ import annotations

import pytest
import torch
from helpers.images import make_class_folder

from transfer_studio.config import AugmentSpec, DataSpec, ModelSpec, Project, TrainSpec

# A 1.4 M-parameter torchvision network with BatchNorm and a Linear head; random init at 32 px keeps
# each epoch of 18 images well under a second on two cores.
SMALL_MODEL = "shufflenet_v2_x0_5"


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


def make_project(root, *, strategy: str = "head", epochs: int = 2, **train) -> Project:
    spec = dict(strategy=strategy, epochs=epochs, batch_size=8, image_size=32, device="cpu",
                num_workers=0, seed=0, lr=3e-3, head_epochs=1)
    spec.update(train)
    return Project(name="test", model=ModelSpec(SMALL_MODEL, weights="none"),
                   data=DataSpec(root=str(root), val_split=0.25, seed=0),
                   augment=AugmentSpec(preset="light"), train=TrainSpec(**spec))


class Recorder:
    """A callback that keeps every event."""

    def __init__(self):
        self.events = []

    def __call__(self, event):
        self.events.append(event)

    def of(self, kind):
        return [e for e in self.events if isinstance(e, kind)]
