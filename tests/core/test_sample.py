"""The sample project: scikit-learn digits as class folders + the bundled model, no network."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from transfer_studio.config import Project, RunRecord
from transfer_studio.errors import UserError
from transfer_studio.sample import (
    CLASSES,
    make_sample_project,
    open_sample_project,
    reset_sample_project,
    sample_project_path,
)


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


def test_a_saved_sample_opens_as_saved_and_only_an_explicit_reset_replaces_it(tmp_path):
    """Issue 12.1: opening the sample again rewrote the user's saved sample project."""
    project, path = open_sample_project(tmp_path)
    assert path == sample_project_path(tmp_path.resolve()) and path.is_file()
    project.train.epochs = 3
    project.runs.append(RunRecord(run_dir=str(tmp_path / "runs" / "a"), status="finished"))
    project.save(path)
    saved = path.read_bytes()
    (tmp_path / "digits" / "4" / "4_000.png").unlink()  # the user's change to the images

    again, same = open_sample_project(tmp_path)
    assert same == path and path.read_bytes() == saved
    assert again.train.epochs == 3 and len(again.runs) == 1
    assert len(list((tmp_path / "digits" / "4").glob("*.png"))) == 39  # left as the user made it
    with pytest.raises(UserError, match="already exists"):
        make_sample_project(tmp_path)
    assert path.read_bytes() == saved

    fresh, _ = reset_sample_project(tmp_path)
    assert fresh.runs == [] and fresh.train.epochs == 10
    assert Project.load(path).to_dict() == fresh.to_dict()
    assert len(list((tmp_path / "digits" / "4").glob("*.png"))) == 40


def test_a_sample_whose_images_were_deleted_gets_them_back_without_touching_the_project(tmp_path):
    open_sample_project(tmp_path)
    path = sample_project_path(tmp_path.resolve())
    before = path.read_bytes()
    shutil.rmtree(tmp_path / "digits")
    project, _ = open_sample_project(tmp_path)
    assert path.read_bytes() == before
    assert all(len(list((tmp_path / "digits" / c).glob("*.png"))) == 40 for c in CLASSES)
    path.write_text("{not json")
    with pytest.raises(UserError, match="corrupt"):
        open_sample_project(tmp_path)
    assert path.read_text() == "{not json"  # an unreadable file is reported, never replaced


def _worked_example() -> list[str]:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("A worked example on the digits sample", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.strip().splitlines()]


def test_the_readme_worked_example_leaves_nothing_untracked_and_can_run_twice(tmp_path):
    """Issue 12.10: the worked example left sample/ and exported/ untracked in the repository."""
    repo = Path(__file__).resolve().parents[2]
    lines = _worked_example()
    written = {"sample"}
    for line in lines:
        written |= {m.split("/")[0] for m in re.findall(r"--out (\S+)", line)}
    assert written == {"sample", "runs", "exported"}
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    for folder in written:
        probe = subprocess.run(["git", "check-ignore", "-q", f"{folder}/digits/x.png"], cwd=repo)
        assert probe.returncode == 0, f"{folder}/ is not ignored by git"
    # Its first step makes the sample; again, it opens the saved one instead of failing.
    make = lines[0].replace(".venv/bin/python", sys.executable, 1)
    for _ in range(2):
        done = subprocess.run(make, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "sample" / "digits-sample.tsproj").is_file()



def test_the_sample_project_does_not_mirror_digits(tmp_path):
    from transfer_studio.core import augment
    from transfer_studio.sample import default_sample_project

    project = default_sample_project(tmp_path)
    assert project.augment.preset == "light"  # random crops stay
    values = augment.resolve_params(project.augment)
    assert values["hflip"]["enabled"] is False and values["random_resized_crop"]["enabled"] is True
    assert project.augment.params == {"hflip": {"enabled": False}}  # one change from the preset, shown as one
