"""Train page: "Run on several GPUs / a cluster…" writes a job folder and says how to use it (issue 15.3)."""

from __future__ import annotations

from pathlib import Path

from helpers.images import make_class_folder
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog

from transfer_studio.config import ModelSpec, Project
from transfer_studio.ui.pages import train_widgets
from transfer_studio.ui.pages.train import TrainPage
from transfer_studio.ui.state import AppState


def _page(qtbot, tmp_path: Path) -> TrainPage:
    p = Project(name="tiny", model=ModelSpec("mobilenet_v3_small", weights="none"))
    p.data.root = str(make_class_folder(tmp_path / "data", {"cat": 4, "dog": 4}, size=16))
    state = AppState(p)
    state.path = tmp_path / "tiny.tsproj"
    page = TrainPage(state)
    qtbot.addWidget(page)
    page.show()
    return page


def test_the_button_writes_a_job_folder_and_shows_how_to_run_it(qtbot, tmp_path, monkeypatch):
    page = _page(qtbot, tmp_path)
    chosen = {}

    def accept(dialog):  # the user fills the dialog and presses "Write Job Folder"
        assert dialog.folder_edit.text() == str(tmp_path / "tiny-job")  # beside the project file
        dialog.folder_edit.setText(str(tmp_path / "cluster-job"))
        dialog.gpus_spin.setValue(4)
        dialog.nodes_spin.setValue(3)
        chosen["shown"] = True
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(train_widgets.JobFolderDialog, "exec", accept)
    assert page.cluster_button.isVisible() and page.cluster_button.isEnabled()
    qtbot.mouseClick(page.cluster_button, Qt.MouseButton.LeftButton)
    job = tmp_path / "cluster-job"
    qtbot.waitUntil(lambda: (job / "README.md").exists() and page.banner.isVisible(), timeout=120_000)
    assert chosen["shown"]
    assert "#SBATCH --nodes=3" in (job / "slurm.sbatch").read_text()
    assert 'NPROC="${NPROC:-4}"' in (job / "run_local.sh").read_text()
    text = page.banner.text()
    assert "Job folder written" in text and "run_local.sh" in text and "sbatch slurm.sbatch" in text
    assert "Job folder written" in page.log_view.toPlainText()


def test_a_folder_in_use_is_refused_in_the_banner(qtbot, tmp_path):
    page = _page(qtbot, tmp_path)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("x")
    page.write_job_folder(str(tmp_path / "busy"), gpus=2)
    qtbot.waitUntil(page.banner.isVisible, timeout=10_000)
    assert "The job folder was not written" in page.banner.text() and "not empty" in page.banner.text()
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["mine.txt"]
