"""The job folder writer (issue 15.3): refuses what it cannot pack; the scripts' run and resume
branches (shellcheck and a real torchrun launch are in tests/training/test_distributed.py)."""

from __future__ import annotations

import os
import subprocess

import pytest
from helpers.images import make_class_folder

from transfer_studio.config import ModelSpec, Project
from transfer_studio.core.job_folder import JobSpec, write_job_folder
from transfer_studio.errors import UserError


def _project(root) -> Project:
    p = Project(name="My flowers / v2", model=ModelSpec("resnet18", weights="none"))
    p.data.root = str(root)
    return p


def test_a_job_folder_starts_the_run_then_resumes_it(tmp_path):
    data = make_class_folder(tmp_path / "data", {"a": 4, "b": 4}, size=16)
    job = write_job_folder(_project(data), tmp_path / "job", JobSpec(gpus_per_node=4, nodes=3))
    assert job.run_name == "My-flowers-v2"
    assert sorted(p.name for p in job.folder.iterdir()) == ["README.md", "project.tsproj", "run_local.sh",
                                                            "slurm.sbatch"]
    saved = Project.load(job.folder / "project.tsproj")
    assert sorted(saved.data.split["train"] + saved.data.split["val"]) == sorted(
        f"{c}/{c}_{i:04d}.png" for c in "ab" for i in range(4))  # the split is frozen for every machine
    env = dict(os.environ, PYTHON="echo")

    def command() -> list[str]:
        return subprocess.run([str(job.folder / "run_local.sh")], env=env, capture_output=True, text=True,
                              check=True).stdout.split()

    first = command()
    assert first[first.index("--nproc-per-node") + 1] == "4"
    assert first[-4:] == ["--project", "project.tsproj", "--out", f"runs/{job.run_name}"]
    (job.folder / "runs" / job.run_name).mkdir(parents=True)
    (job.folder / "runs" / job.run_name / "project.json").write_text("{}")
    assert command()[-2:] == ["--resume", f"runs/{job.run_name}"]
    slurm = (job.folder / "slurm.sbatch").read_text()
    assert "#SBATCH --nodes=3" in slurm and "#SBATCH --gpus-per-node=4" in slurm
    assert f"runs/{job.run_name}" in (job.folder / "README.md").read_text()


def test_it_refuses_a_folder_in_use_and_a_project_without_data(tmp_path):
    data = make_class_folder(tmp_path / "data", {"a": 2, "b": 2}, size=16)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        write_job_folder(_project(data), tmp_path / "busy")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    with pytest.raises(UserError, match="no data folder"):
        write_job_folder(_project(""), tmp_path / "new")
