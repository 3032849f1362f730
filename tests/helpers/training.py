"""Projects and an event recorder for the training engine's tests.

A module, not conftest.py: every test folder has a conftest, and ``from conftest import ...`` picks
whichever was imported last when the whole suite runs.
"""

from __future__ import annotations

from transfer_studio.config import AugmentSpec, DataSpec, ModelSpec, Project, TrainSpec

# A 1.4 M-parameter torchvision network with BatchNorm and a Linear head; random init at 32 px keeps
# each epoch of 18 images well under a second on two cores.
SMALL_MODEL = "shufflenet_v2_x0_5"



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
