import json

import pytest

from transfer_studio.config import SCHEMA_VERSION, Project, RunRecord, SurgeryOp
from transfer_studio.errors import UserError


def test_round_trip_preserves_every_field(tmp_path):
    p = Project(name="cats")
    p.model.name = "resnet18"
    p.model.weights = "none"
    p.surgery = [SurgeryOp("freeze_before", "layer4"), SurgeryOp("replace_head", params={"num_classes": 3})]
    p.data.root = str(tmp_path)
    p.data.split = {"train": ["a/1.png"], "val": ["b/2.png"]}
    p.augment.preset = "strong"
    p.augment.params = {"hflip": {"enabled": False}}
    p.train.epochs = 3
    p.train.unfreeze_from = "layer4"
    p.runs.append(RunRecord(run_dir="runs/1", val_accuracy=0.9, best_epoch=2))
    p.ui = {"export": {"formats": ["onnx"]}}
    path = tmp_path / "p.tsproj"
    p.save(path)
    q = Project.load(path)
    assert q == p
    assert isinstance(q.surgery[0], SurgeryOp) and isinstance(q.runs[0], RunRecord)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "p.tsproj"
    Project(name="a").save(path)
    Project(name="b").save(path)
    assert [f.name for f in tmp_path.iterdir()] == ["p.tsproj"]
    assert Project.load(path).name == "b"


def test_corrupt_file_is_refused_with_clear_message(tmp_path):
    path = tmp_path / "p.tsproj"
    path.write_text('{"name": "x", "model": ')
    with pytest.raises(UserError, match="corrupt"):
        Project.load(path)
    assert path.read_text() == '{"name": "x", "model": '


def test_newer_version_is_refused(tmp_path):
    path = tmp_path / "p.tsproj"
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1, "name": "future"}))
    with pytest.raises(UserError, match="newer"):
        Project.load(path)


def test_wrong_structure_is_a_user_error(tmp_path):
    path = tmp_path / "p.tsproj"
    path.write_text(json.dumps({"schema_version": 1, "surgery": "not a list"}))
    with pytest.raises(UserError, match="invalid structure"):
        Project.load(path)
    path.write_text("[1, 2]")
    with pytest.raises(UserError, match="not a JSON object"):
        Project.load(path)


def test_unknown_keys_are_ignored_for_forward_compatibility():
    p = Project.from_dict({"schema_version": 1, "name": "x", "later_feature": 1, "train": {"epochs": 4, "new": 2}})
    assert p.train.epochs == 4
