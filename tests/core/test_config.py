import json

import pytest

from transfer_studio.config import SCHEMA_VERSION, Project, RunRecord, SurgeryOp, UiState
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
    p.ui = UiState(selected_run="runs/1", try_images=["x.png"], extra={"export": {"formats": ["onnx"]}})
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


# An old-style project file: ``ui`` was a free-form dict the pages wrote keys into.
OLD_UI = {
    "selected_run": "/runs/b", "evaluate_run": "/runs/a", "evaluate_data": "/data/other",
    "try_run": "/runs/a", "try_images": ["/p/1.png", "/p/2.png"], "try_top_k": 3, "try_heatmap": True,
    "export_run": "/runs/b", "export_formats": ["safetensors", "onnx"], "export_dir": "/out", "export_name": "m",
    "augment_images": ["/p/3.png"], "strategy_time_budget_hours": 2, "strategy_suggestion": {"name": "head"},
    "train_launch_settings": {"/runs/b": {"epochs": 10}},
    "a_later_versions_key": {"kept": [1, 2]},
}


def test_old_style_ui_dict_loads_typed_and_saves_the_same_object(tmp_path):
    path = tmp_path / "old.tsproj"
    path.write_text(json.dumps({"schema_version": 2, "name": "old", "ui": OLD_UI}))
    p = Project.load(path)
    ui = p.ui
    assert isinstance(ui, UiState)
    assert (ui.selected_run, ui.evaluate_run, ui.evaluate_data) == ("/runs/b", "/runs/a", "/data/other")
    assert (ui.try_run, ui.try_images, ui.try_top_k, ui.try_heatmap) == ("/runs/a", ["/p/1.png", "/p/2.png"], 3, True)
    assert (ui.export_run, ui.export_formats, ui.export_dir, ui.export_name) == (
        "/runs/b", ["safetensors", "onnx"], "/out", "m")
    assert ui.augment_images == ["/p/3.png"] and ui.strategy_time_budget_hours == 2
    assert ui.strategy_suggestion == {"name": "head"} and ui.train_launch_settings == {"/runs/b": {"epochs": 10}}
    assert ui.extra == {"a_later_versions_key": {"kept": [1, 2]}}
    p.save(path)
    assert json.loads(path.read_text())["ui"] == OLD_UI  # the same flat object: older versions read it


def test_ui_unset_values_are_left_out_and_an_empty_ui_loads():
    assert Project().to_dict()["ui"] == {}
    assert Project.from_dict({"schema_version": 2}).ui == UiState()
    assert Project.from_dict({"schema_version": 2, "ui": {}}).ui == UiState()


def test_ui_values_of_the_wrong_type_are_dropped_not_fatal():
    p = Project.from_dict({"schema_version": 2, "ui": {
        "try_top_k": "five", "strategy_time_budget_hours": "a lot", "try_images": ["/a.png", 3, None],
        "selected_run": 7, "try_heatmap": "yes"}})
    assert p.ui.try_top_k is None and p.ui.strategy_time_budget_hours is None and p.ui.selected_run is None
    assert p.ui.try_images == ["/a.png"] and p.ui.try_heatmap is False
    with pytest.raises(UserError, match="invalid structure"):
        Project.from_dict({"schema_version": 2, "ui": ["not", "an", "object"]})


def test_ui_dict_style_access_maps_to_the_typed_fields():
    ui = UiState()
    assert "selected_run" not in ui and ui.get("selected_run", "x") == "x" and ui["try_images"] == []
    ui["selected_run"] = "/r"
    assert ui.selected_run == "/r" and "selected_run" in ui
    with pytest.raises(TypeError, match="try_top_k"):
        ui["try_top_k"] = "3"
    ui.setdefault("train_launch_settings", {})["/r"] = {"epochs": 1}  # filled in place
    assert ui.train_launch_settings == {"/r": {"epochs": 1}}
    ui.update(export_dir="/out", other=1)
    assert ui.export_dir == "/out" and ui.extra == {"other": 1}
    assert ui.pop("export_dir") == "/out" and ui.export_dir is None and ui.pop("export_dir", None) is None
    del ui["other"]
    assert ui.extra == {} and Project(ui={"try_top_k": 2}).ui.try_top_k == 2
