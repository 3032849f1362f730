"""The Train page model writes job folders for several GPUs / a cluster (issue 15.3), without Qt."""

from __future__ import annotations

from types import SimpleNamespace

from helpers.images import make_class_folder
from helpers.page_models import FakeTrainer, Jobs

from transfer_studio.ui.models.train_model import TrainModel


def test_write_job_reports_the_folder_or_the_problem(session, tmp_path):
    session.project.data.root = str(make_class_folder(tmp_path / "data", {"a": 3, "b": 3}, size=16))
    model = TrainModel(session, FakeTrainer(), Jobs(), lambda path: tmp_path / "runs")
    written, problems = [], []
    model.jobWritten.connect(written.append)
    model.problem.connect(problems.append)
    assert model.job_gpus() == 2  # nothing probed: a two-GPU job to start from
    model.devices = SimpleNamespace(cuda=[{"name": "A"}] * 8)
    assert model.job_gpus() == 8
    model.write_job(str(tmp_path / "job"), gpus_per_node=8, nodes=4)
    assert [j.folder for j in written] == [tmp_path / "job"] and problems == []
    assert "#SBATCH --nodes=4" in (tmp_path / "job" / "slurm.sbatch").read_text()
    model.write_job(str(tmp_path / "job"), gpus_per_node=8, nodes=4)  # not empty any more
    assert len(written) == 1 and "not empty" in problems[-1].message
    model.write_job("", gpus_per_node=1, nodes=1)
    assert problems[-1].message == "Choose a folder for the job"
