"""Opening a project whose dataset folder moved asks to locate it, from the main window."""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog, QMessageBox

from transfer_studio.config import Project


def test_open_asks_for_a_moved_dataset_and_updates_the_project(qtbot, tmp_path, monkeypatch):
    from helpers.images import make_class_folder

    from transfer_studio.ui import worker
    from transfer_studio.ui.main_window import MainWindow
    from transfer_studio.ui.settings import Settings
    from transfer_studio.ui.state import AppState

    data = make_class_folder(tmp_path / "pets", {"cat": 3, "dog": 3}, size=16)
    project = Project(name="Pets")
    project.model.weights = "none"
    project.model.name = "resnet18"
    project.data.root = str(tmp_path / "was_here")  # the folder the project remembers is gone
    project.data.classes = ["cat", "dog"]
    path = tmp_path / "pets.tsproj"
    project.save(path)

    asked = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: (asked.append(a[1]), QMessageBox.StandardButton.Yes)[1])
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(data))
    window = MainWindow(AppState(), Settings())
    qtbot.addWidget(window)
    try:
        assert window.open_project(path, ask=False)
        assert asked == ["Dataset folder not found"]
        assert window.state.project.data.root == str(data.resolve())
        assert window.state.modified  # the new location is a change to save
        assert Project.load(path).data.root == str(tmp_path / "was_here")  # nothing written unasked
    finally:
        window.shutdown()
        worker.cancel_all()
