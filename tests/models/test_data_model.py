"""The Data page's model without Qt: scanning, the split and its fields, the project's data section,
a replaced head following the classes, cancel and errors, reopening a project. Jobs run in the test's
thread (``helpers.page_models.Jobs``)."""

from __future__ import annotations

import shutil

import pytest
from helpers.images import make_class_folder
from helpers.page_models import Jobs, record

from transfer_studio.config import Project, SurgeryOp
from transfer_studio.ui.models import data_model as dm
from transfer_studio.ui.models.data_model import DataModel
from transfer_studio.ui.models.session import Session

EVENTS = ("folderText", "message", "messageCleared", "busyStarted", "busyText", "busyStopped", "reportShown",
          "emptied", "splitShown", "splitPending", "splitFailed", "fieldsChanged", "scanned")


@pytest.fixture
def setup():
    host, jobs = Session(Project()), Jobs()
    model = DataModel(host, jobs)
    return host, jobs, model, record(model, EVENTS)


def test_a_scan_fills_the_project_and_says_what_is_in_the_folder(setup, tmp_path):
    host, jobs, model, seen = setup
    root = make_class_folder(tmp_path / "pets", {"cat": 12, "dog": 20, "fox": 3}, size=16)
    (root / "cat" / "empty.jpg").write_bytes(b"")
    shutil.copy(root / "dog" / "dog_0001.png", root / "dog" / "copy.png")
    statuses: list[str] = []
    host.statusMessage.connect(lambda text, _ms: statuses.append(text))
    changed: list[str] = []
    host.projectChanged.connect(changed.append)

    model.choose_folder(f"  {root}  ")
    report = model.report
    assert host.scan is report and seen["reportShown"] == [report] and seen["scanned"] == [str(root.resolve())]
    assert seen["folderText"] == [str(root), str(root.resolve())]
    assert seen["busyStarted"] == [] and not model.busy()  # the job was over before it could show
    data = host.project.data
    assert data.root == str(root.resolve()) and data.classes == ["cat", "dog", "fox"]
    assert sorted(f for part in data.split.values() for f in part) == sorted(report.files)
    assert model.split == data.split and host.modified and "data" in changed
    assert sum(model.split_counts["val"]) == len(data.split["val"])
    assert model.part_count("val", 1) == model.split_counts["val"][1] and model.part_count("test", 0) == 0
    assert statuses == [f"Scanned {root.resolve()}: 36 images in 3 classes"]

    assert dm.class_counts(report) == [12, 21, 3]
    assert dm.under_represented([12, 21, 3]) == [False, False, True]
    assert "<b>36 images</b> in <b>3 classes</b>" in dm.summary_text(report)
    assert "'fox' has only 3 image(s)" in dm.warnings_text(report)
    assert "'fox'" in dm.chart_legend(report, [False, False, True], "■")
    assert dm.chart_legend(report, [False] * 3, "■").endswith("reasonably balanced.")
    skipped, duplicates, tab = dm.problems_texts(report)
    assert "1 file left out" in skipped and "1 group of identical files" in duplicates and tab == "Problems (2)"
    assert model.split_text().startswith(f"{len(data.split['train'])} training · ")
    assert "test" not in model.split_text()
    assert sorted(model.gallery_files(2)) == ["fox/fox_0000.png", "fox/fox_0001.png", "fox/fox_0002.png"]
    assert len(model.gallery_files(-1)) == 36
    assert model.folder_of("dog/copy.png") == str(root.resolve() / "dog")


def test_split_fields_change_the_split_reproducibly(setup, tmp_path):
    host, jobs, model, seen = setup
    model.choose_folder(make_class_folder(tmp_path / "ds", {"a": 20, "b": 20}, size=8))
    data = host.project.data
    assert len(data.split["val"]) == 8  # 20 % of 20 per class

    model.edit_split_settings(30, 10, 0)
    assert (data.val_split, data.test_split) == (0.3, 0.1) and seen["splitPending"] == [()]
    assert len(data.split["val"]) == 8  # the split follows when the page's delay is over
    model.start_split()
    assert (len(data.split["val"]), len(data.split["test"])) == (12, 4) and model.split == data.split
    assert "4 test" in model.split_text()
    first = {k: list(v) for k, v in data.split.items()}
    model.edit_split_settings(30, 10, 5)
    model.start_split()
    assert data.split != first
    model.edit_split_settings(30, 10, 0)
    model.start_split()
    assert data.split == first  # same seed, same split
    assert seen["fieldsChanged"] == []  # the model's own edits do not reload the fields

    pending = len(seen["splitPending"])
    model.edit_split_settings(60, 40, 0)
    assert seen["message"][-1] == ("Validation and test together take almost every image: leave at least 5 % "
                                   "for training.", "warning")
    assert len(seen["splitPending"]) == pending

    host.project.data.seed = 9  # another page (or undo) changed the section: the fields follow
    host.mark_changed("data")
    assert seen["fieldsChanged"][-1] == (60.0, 40.0, 9)


def test_a_failed_split_is_a_message(setup, tmp_path, monkeypatch):
    host, jobs, model, seen = setup
    model.choose_folder(make_class_folder(tmp_path / "ds", {"a": 5, "b": 5}, size=8))

    def broken(*_args):
        raise RuntimeError("no room")

    monkeypatch.setattr(dm, "split_dataset", broken)
    model.edit_split_settings(30, 0, 0)
    model.start_split()
    assert seen["splitFailed"] == [()] and seen["message"][-1][0].startswith("Could not split the dataset: ")


def test_cancel_keeps_the_previous_dataset(setup, tmp_path):
    host, jobs, model, seen = setup
    first = make_class_folder(tmp_path / "first", {"a": 4, "b": 4}, size=8)
    model.choose_folder(first)
    report = host.scan
    jobs.sync = False
    model.choose_folder(make_class_folder(tmp_path / "second", {"x": 4, "y": 4}, size=8))
    job = jobs.started[-1]
    assert model.busy() and seen["busyStarted"][-1][1] is job
    model.cancel_scan()
    assert job.cancelled and seen["busyText"][-1] == "Cancelling…"
    job.callbacks["progress"](3, 8)  # a late progress report does not overwrite "Cancelling…"
    assert seen["busyText"][-1] == "Cancelling…"
    jobs.run(job)
    assert seen["message"][-1] == (f"Scan cancelled. Still showing {first.resolve()}.", "info")
    assert seen["folderText"][-1] == str(first.resolve()) and seen["busyStopped"]
    assert host.scan is report and host.project.data.root == str(first.resolve()) and not model.busy()


def test_a_newer_scan_voids_the_older_ones_answer(setup, tmp_path):
    host, jobs, model, seen = setup
    jobs.sync = False
    model.choose_folder(make_class_folder(tmp_path / "old", {"a": 3, "b": 3}, size=8))
    model.choose_folder(make_class_folder(tmp_path / "new", {"c": 3, "d": 3}, size=8))
    old, new = jobs.started
    assert old.cancelled
    jobs.run(new)
    jobs.run(old)
    assert host.project.data.classes == ["c", "d"] and seen["reportShown"] == [model.report]


@pytest.mark.parametrize("make, expected", [
    (lambda tmp: make_class_folder(tmp / "single", {"only": 3}, size=8), "only one class ('only')"),
    (lambda tmp: tmp / "missing", "data folder not found"),
])
def test_bad_folders_are_messages_and_change_nothing(setup, tmp_path, make, expected):
    host, jobs, model, seen = setup
    model.choose_folder(make(tmp_path))
    text, level = seen["message"][-1]
    assert level == "error" and expected in text and model.shown_message == (text, level)
    assert host.scan is None and host.project.data.root == "" and not host.modified
    model.choose_folder("")
    assert seen["message"][-1] == ("Choose a folder first.", "error")
    model.choose_folder(make_class_folder(tmp_path / "good", {"a": 3, "b": 3}, size=8))
    assert model.shown_message is None and host.project.data.classes == ["a", "b"]
    model.choose_folder(tmp_path / "gone")
    assert "still showing the previous dataset" in seen["message"][-1][0]


def test_a_replaced_head_follows_the_classes_and_says_so(setup, tmp_path):
    host, jobs, model, seen = setup
    host.project.surgery = [SurgeryOp("freeze", "*"), SurgeryOp("replace_head", params={"num_classes": 5})]
    changed: list[str] = []
    host.projectChanged.connect(changed.append)
    model.choose_folder(make_class_folder(tmp_path / "three", {"a": 3, "b": 3, "c": 3}, size=8))
    assert host.project.surgery[1].params["num_classes"] == 3
    assert {"surgery", "data"} <= set(changed)
    assert seen["message"][-1] == ("The model's new output layer now predicts 3 classes (it had 5) to match "
                                   "this dataset.", "info")


def test_reopening_keeps_the_saved_split_and_is_no_edit(tmp_path):
    root = make_class_folder(tmp_path / "ds", {"a": 10, "b": 10}, size=8)
    host = Session(Project())
    DataModel(host, Jobs()).choose_folder(root)
    host.project.data.val_split = 0.4  # saved with another split than the seed alone would give
    saved = {"train": host.project.data.split["train"][2:], "val": host.project.data.split["val"]
             + host.project.data.split["train"][:2], "test": []}
    host.project.data.split = saved
    project = host.project.copy()

    reopened = Session()
    model = DataModel(reopened, Jobs())
    seen = record(model, EVENTS)
    reopened.new_project(project, tmp_path / "p.tsproj")
    assert seen["fieldsChanged"][-1] == (40.0, 0.0, 0) and seen["emptied"]
    assert reopened.project.data.split == saved and model.split == saved and not reopened.modified
    assert model.part_count("val", 0) + model.part_count("val", 1) == len(saved["val"])

    (root / "a" / "a_0000.png").unlink()  # the folder changed since: split again, and say so
    changed = Session()
    model = DataModel(changed, Jobs())
    seen = record(model, EVENTS)
    changed.new_project(project.copy(), tmp_path / "p.tsproj")
    assert changed.project.data.split != saved and changed.modified
    assert seen["message"][-1] == ("The dataset folder changed since the project was saved, so it was split "
                                   "again.", "info")

    unsplit = project.copy()
    unsplit.data.split, unsplit.data.classes = None, []  # the sample: a project that never stored its split
    derived = Session()
    DataModel(derived, Jobs())
    derived.new_project(unsplit, tmp_path / "s.tsproj")
    assert derived.project.data.split and not derived.modified

    known = Session()  # the scan is already there (another page scanned): shown without a new scan
    known.scan = reopened.scan
    jobs = Jobs()
    model = DataModel(known, jobs)
    known.project = project.copy()
    model.load_from_project()
    assert model.report is reopened.scan and jobs.started == [] and model.split == saved

    gone = project.copy()
    gone.data.root = str(tmp_path / "moved-away")
    lost = Session()
    model = DataModel(lost, Jobs())
    seen = record(model, EVENTS)
    lost.new_project(gone)
    assert seen["message"][-1] == (f"The project's dataset folder {gone.data.root} no longer exists. Choose its "
                                   "new location.", "error")


def test_fields_stay_within_their_ranges(setup):
    host, _jobs, model, seen = setup
    project = Project()
    project.data.val_split, project.data.test_split = 0.0, 0.95
    host.new_project(project)
    assert seen["fieldsChanged"][-1] == (float(dm.VAL_RANGE[0]), float(dm.TEST_RANGE[1]), 0)


def test_a_project_opened_while_scanning_voids_the_scan(setup, tmp_path):
    host, jobs, model, seen = setup
    jobs.sync = False
    model.choose_folder(make_class_folder(tmp_path / "ds", {"a": 3, "b": 3}, size=8))
    job = jobs.started[-1]
    host.new_project(Project(name="other"))
    assert job.cancelled and model.scan_job is None and seen["busyStopped"]
    jobs.run(job)
    assert host.scan is None and host.project.data.root == ""

