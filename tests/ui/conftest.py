"""Shared UI fixtures (pytest-qt, offscreen).

- every UI test gets its own settings file and app-data folder (``TS_SETTINGS_FILE``,
  ``TS_DATA_DIR``): nothing touches the user's real settings or sample folder;
- ``app_state``: a fresh ``AppState`` holding a small random-init project (resnet18, no weights);
- ``main_window``: a shown ``MainWindow`` that is shut down after the test (pages' ``shutdown()``,
  every background task cancelled and joined), with the unsaved-changes prompt answered "Discard";
- after every UI test, all background tasks are cancelled and joined (``main_window.finish_tasks``),
  so no thread outlives it.
"""

from __future__ import annotations

import pytest

from transfer_studio.config import ModelSpec, Project


@pytest.fixture(autouse=True)
def _ui_isolation(tmp_path, monkeypatch):
    monkeypatch.setenv("TS_SETTINGS_FILE", str(tmp_path / "settings.ini"))
    monkeypatch.setenv("TS_DATA_DIR", str(tmp_path / "appdata"))
    yield
    from transfer_studio.ui.main_window import finish_tasks

    assert finish_tasks(60000), "a background task did not end within 60 s of being cancelled"


@pytest.fixture
def small_project() -> Project:
    """A project that builds fast and needs no weights file: random-init resnet18 at 64 px."""
    project = Project(name="Test project", model=ModelSpec(name="resnet18", weights="none"))
    project.train.image_size = 64
    return project


@pytest.fixture
def app_state(qtbot, small_project):
    from transfer_studio.ui.state import AppState

    return AppState(small_project)


@pytest.fixture
def main_window(qtbot, app_state):
    from transfer_studio.ui.main_window import MainWindow
    from transfer_studio.ui.settings import Settings

    window = MainWindow(app_state, Settings())
    # pytest-qt closes the window before fixtures are torn down: shut it down first, so closing
    # never asks about unsaved changes (a modal dialog would hang the test run).
    qtbot.addWidget(window, before_close_func=lambda w: w.shutdown())
    window.show()
    qtbot.waitExposed(window)
    yield window
