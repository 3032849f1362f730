"""The sample project: scikit-learn digits as class folders + the bundled model, no network."""

from __future__ import annotations

import pytest
from PIL import Image

from transfer_studio.config import Project
from transfer_studio.errors import UserError
from transfer_studio.sample import CLASSES, make_sample_project, sample_project_path


def test_sample_project_writes_digits_and_a_project(tmp_path):
    project = make_sample_project(tmp_path, per_class=3, image_size=16)
    root = tmp_path / "digits"
    assert project.data.root == str(root) and project.data.classes == CLASSES
    assert project.model.name == "efficientnet_lite0" and project.model.weights == "DEFAULT"
    for label in CLASSES:
        files = sorted((root / label).glob("*.png"))
        assert len(files) == 3
        with Image.open(files[0]) as img:
            assert img.size == (16, 16) and img.mode == "L"
            assert img.getextrema()[1] > 100  # real ink, not a blank image
    saved = Project.load(sample_project_path(tmp_path))
    assert saved.to_dict() == project.to_dict()
    assert not list(tmp_path.glob(".digits.*"))  # no temporary folder left behind


def test_sample_dataset_is_reused_and_rebuilt_when_incomplete(tmp_path):
    make_sample_project(tmp_path, per_class=2, image_size=8, save=False)
    first = tmp_path / "digits" / "0" / "0_000.png"
    stamp = first.stat().st_mtime_ns
    make_sample_project(tmp_path, per_class=2, image_size=8, save=False)
    assert first.stat().st_mtime_ns == stamp  # complete: reused
    assert not sample_project_path(tmp_path).exists()
    (tmp_path / "digits" / "7" / "7_001.png").unlink()
    make_sample_project(tmp_path, per_class=2, image_size=8, save=False)
    assert len(list((tmp_path / "digits" / "7").glob("*.png"))) == 2


@pytest.mark.parametrize("kwargs", [{"per_class": 0}, {"per_class": 500}, {"image_size": 4}])
def test_bad_sample_arguments_are_user_errors(tmp_path, kwargs):
    with pytest.raises(UserError):
        make_sample_project(tmp_path, **kwargs)
