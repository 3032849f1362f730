"""A real training-run folder without training: project.json snapshot with a split + best.safetensors.

The weights are a random-init network built from the project (as the trainer builds it); the head
is rescaled so that predictions differ between images, which gives the metrics something to count.
"""

from __future__ import annotations

from pathlib import Path

import torch
from helpers.images import make_class_folder
from safetensors.torch import save_file

from transfer_studio.config import DataSpec, ModelSpec, Project, SurgeryOp
from transfer_studio.core import dataset
from transfer_studio.core.network import build_network


def make_run(tmp_path: Path, classes: dict[str, int], *, model: str = "resnet18", image_size: int = 32,
             val: float = 0.3, test: float = 0.0, seed: int = 0, name: str = "run",
             extra_ops: tuple[SurgeryOp, ...] = (), head: dict | None = None) -> Path:
    data = make_class_folder(tmp_path / f"{name}_data", classes, size=image_size, seed=seed)
    project = Project(name=name, model=ModelSpec(name=model, weights="none"),
                      data=DataSpec(root=str(data), val_split=val, test_split=test, seed=seed))
    project.train.image_size = image_size
    dataset.assign_split(project, dataset.scan(data))
    project.surgery.append(SurgeryOp("freeze", target="*"))
    project.surgery.extend(extra_ops)
    project.surgery.append(SurgeryOp("replace_head", params={"num_classes": len(classes), **(head or {})}))
    torch.manual_seed(seed)
    net = build_network(project, weights=False)
    with torch.no_grad():
        head = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
        head.weight.mul_(20.0)
    run_dir = tmp_path / name
    run_dir.mkdir()
    project.save(run_dir / "project.json")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(run_dir / "best.safetensors"))
    return run_dir
