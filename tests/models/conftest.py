"""Page models are tested without Qt: a ``Session`` host, jobs run in the calling thread
(``helpers.page_models``), and fakes for what runs elsewhere in the app (the training thread)."""

from __future__ import annotations

import pytest
from helpers.page_models import Jobs

from transfer_studio.config import ModelSpec, Project
from transfer_studio.ui.models.session import Session


@pytest.fixture
def jobs() -> Jobs:
    return Jobs()


@pytest.fixture
def session(tmp_path) -> Session:
    project = Project(name="tiny", model=ModelSpec("resnet18", weights="none"))
    project.train.image_size = 64
    return Session(project, tmp_path / "tiny.tsproj")
