"""The Try page's model without Qt: pictures added and remembered as view state, both models' answers
per picture, a failed job halting until the user changes something, heat maps for the selected picture.
The networks are replaced by fakes (the UI tests run real ones); jobs run in the test's thread."""

from __future__ import annotations

from collections import defaultdict

import pytest
from helpers.images import make_class_folder
from helpers.page_models import Jobs, record

from transfer_studio.config import ModelSpec, Project
from transfer_studio.ui.models import try_model as tm
from transfer_studio.ui.models.session import Session
from transfer_studio.ui.models.try_model import NO_TRAINED_NOTE, HeatMap, ModelInfo, Predictions, TryModel

EVENTS = ("message", "messageCleared", "busyStarted", "busyStopped", "imagesChanged", "added", "currentChanged",
          "previewChanged")


class Page:
    """What the model asks of the page."""

    def __init__(self) -> None:
        self.source, self.selected, self.shown = "", None, True


@pytest.fixture
def fakes(monkeypatch):
    calls: dict[str, list] = defaultdict(list)

    def predict(cache, info, paths, want_trained, want_pre, progress=None, cancel=None):
        calls["predict"].append((info.kind, list(paths), want_trained, want_pre))
        out = Predictions(trained_key=info.key, pretrained_key=("catalog", info.base_model, info.base_weights))
        for p in paths:
            if p.endswith("broken.png"):
                out.unreadable[p] = "truncated"
                continue
            rows = [(f"class{i}", 1.0 / (i + 2)) for i in range(10)]
            if want_trained:
                out.trained[p] = rows
            if want_pre:
                out.pretrained[p] = rows[::-1]
        return out

    def heatmap(cache, info, path, progress=None, cancel=None):
        calls["heatmap"].append(path)
        return HeatMap(path, info.key, None, "class0", 0.9, "layer4")

    def describe(source):
        if "damaged" in source:
            from transfer_studio.errors import UserError
            raise UserError(f"{source}/model.json is damaged")
        return ModelInfo(source, "run", ("run", source, 1.0), "resnet18", "DEFAULT")

    monkeypatch.setattr(tm, "predict_task", predict)
    monkeypatch.setattr(tm, "heatmap_task", heatmap)
    monkeypatch.setattr(tm, "describe_source", describe)
    return calls


@pytest.fixture
def setup(fakes):
    host, jobs, page = Session(Project(model=ModelSpec("resnet18", weights="none"))), Jobs(), Page()
    model = TryModel(host, jobs, source=lambda: page.source, selected=lambda: page.selected, shown=lambda: page.shown)
    return host, jobs, page, model, record(model, EVENTS)


def test_pictures_are_classified_by_the_projects_own_network(setup, fakes, tmp_path):
    host, jobs, page, model, seen = setup
    folder = make_class_folder(tmp_path / "pics", {"a": 3}, size=8)
    (folder / "a" / "broken.png").write_bytes(b"")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    assert model.add_paths([str(folder), str(notes), str(tmp_path / "gone.png")]) == 4
    assert seen["message"][0] == ("Not image files, so not added: notes.txt. The Try page reads JPEG, PNG, BMP, "
                                  "GIF, WebP and TIFF images.", "warning", None)
    first = model.paths[0]
    assert seen["imagesChanged"] == [first] and seen["added"] == [4]
    assert host.project.ui["try_images"] == model.paths and not host.modified  # view state, not an edit
    (kind, todo, want_trained, want_pre), = fakes["predict"]
    assert kind == "pretrained" and not want_trained and want_pre and todo == model.paths
    assert model.info.kind == "pretrained" and not model.busy()
    broken = str(folder / "a" / "broken.png")
    assert model.unreadable == {broken: "truncated"}
    assert seen["message"][-1][0] == "1 file(s) could not be read as images: broken.png"

    trained, pretrained = model.columns(first)
    assert trained.title == "Your trained model" and trained.note == NO_TRAINED_NOTE and trained.rich
    assert pretrained.title == "Original pretrained resnet18 (ImageNet classes)"
    assert len(pretrained.rows) == 5 and pretrained.rows[0][0] == "class9" and pretrained.note == ""
    assert model.columns(broken)[1].note == "Not readable: truncated"
    model.set_top_k(2)
    assert len(model.columns(first)[1].rows) == 2 and host.project.ui["try_top_k"] == 2
    model.set_top_k(3, remember=False)
    assert host.project.ui["try_top_k"] == 2

    assert model.add_paths([str(folder)]) == 0  # all known: nothing new, nothing predicted again
    assert len(fakes["predict"]) == 1 and seen["added"][-1] == 0
    assert model.add_paths([str(tmp_path / "empty-nothing")]) == 0
    assert seen["message"][-1][0].startswith("No images there")
    model.clear_images()
    assert model.paths == [] and host.project.ui["try_images"] == [] and seen["imagesChanged"][-1] is None


def test_a_trained_model_answers_too_and_a_failure_halts(setup, fakes, tmp_path):
    host, jobs, page, model, seen = setup
    pic = str(make_class_folder(tmp_path / "pics", {"a": 1}, size=8) / "a" / "a_0000.png")
    page.source = "/runs/damaged"
    model.add_paths([pic])
    assert seen["message"][-1] == ("/runs/damaged/model.json is damaged", "error", None) and not fakes["predict"]
    page.source = "/runs/run-1"
    model.source_changed()
    (kind, todo, want_trained, want_pre), = fakes["predict"]
    assert kind == "run" and want_trained and want_pre
    trained, pretrained = model.columns(pic)
    assert trained.title == "Your trained model (run-1)" and trained.rows[0][0] == "class0"
    assert pretrained.title == "Original pretrained resnet18 (ImageNet classes)"

    def failing(*_args, **_kwargs):
        raise RuntimeError("out of memory")

    tm.predict_task, real = failing, tm.predict_task  # (monkeypatch restores the fake afterwards)
    page.source = "/runs/run-2"
    model.source_changed()
    assert model.halted and seen["message"][-1] == ("RuntimeError: out of memory", "error", "traceback")
    assert model.refresh() is None  # no retry by itself
    tm.predict_task = real
    model.refresh(retry=True)
    assert not model.halted and fakes["predict"][-1][0] == "run"


def test_heat_maps_for_the_selected_picture(setup, fakes, tmp_path):
    host, jobs, page, model, seen = setup
    pic = str(make_class_folder(tmp_path / "pics", {"a": 1}, size=8) / "a" / "a_0000.png")
    page.source, page.selected = "/runs/run-1", pic
    model.add_paths([pic])
    assert model.heatmap_for(pic) is None and fakes["heatmap"] == []  # heat map off
    model.set_heatmap(True)
    assert host.project.ui["try_heatmap"] is True and seen["previewChanged"] == [pic]
    assert model.heatmap_for(pic) is None  # computed now (a synchronous job), shown when it arrives
    assert fakes["heatmap"] == [pic] and seen["previewChanged"][-1] == pic
    hm = model.heatmap_for(pic)
    assert hm.label == "class0" and model.has_heatmap(pic) and fakes["heatmap"] == [pic]

    page.source = ""  # the project's own network explains nothing: no Grad-CAM for it
    model.source_changed()
    assert model.heatmap_for(pic) is None and fakes["heatmap"] == [pic] and model.pending_heatmap is None


def test_opening_a_project_brings_back_its_pictures(setup, fakes, tmp_path):
    host, jobs, page, model, seen = setup
    pics = [str(p) for p in sorted((make_class_folder(tmp_path / "pics", {"a": 2}, size=8) / "a").iterdir())]
    project = Project(model=ModelSpec("resnet18", weights="none"), ui={"try_images": pics + [3]})  # a file's form
    host.project = project
    page.shown = False
    model.load_from_project()
    assert model.paths == pics and seen["imagesChanged"][-1] == pics[0] and fakes["predict"] == []
    page.shown = True
    model.refresh()
    assert fakes["predict"][-1][1] == pics

    host.project.model = ModelSpec("mobilenet_v3_small", weights="none")
    assert model.base_model_changed()  # the project's own network answered: it answers anew
    assert fakes["predict"][-1][1] == pics and model.info.base_model == "mobilenet_v3_small"
    page.source = "/runs/run-1"
    model.source_changed()
    assert not model.base_model_changed()


def test_expand_paths_limits_and_rejects(tmp_path):
    folder = make_class_folder(tmp_path / "many", {"a": 5}, size=8)
    (folder / "a" / "readme.md").write_text("x")
    rejected: list[str] = []
    paths, left_out = tm.expand_paths([str(folder), str(folder / "a" / "readme.md")], limit=3, rejected=rejected)
    assert len(paths) == 3 and left_out == 2 and rejected == [str(folder / "a" / "readme.md")]
