"""The Augment page's model without Qt: the controls follow the preset and the project's overrides,
edits write only what differs from the preset as undoable steps (the user's choice, ``user_set``), a bad
saved value warns, the preview's images, seed and count, stale answers dropped, errors; the preview
rendering itself with the real core. Jobs run in the test's thread."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers.images import make_class_folder
from helpers.page_models import Jobs, record

from transfer_studio.ui.models import augment_model as am
from transfer_studio.ui.models.augment_model import AugmentModel
from transfer_studio.ui.models.base import ProjectEdit

EVENTS = AugmentModel.EVENTS


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from transfer_studio.core import dataset

    root = make_class_folder(tmp_path_factory.mktemp("am") / "ds", {"red": 3, "green": 3, "blue": 3, "grey": 3},
                             size=24)
    return dataset.scan(root)


@pytest.fixture
def s(session):
    jobs = Jobs()
    model = AugmentModel(session, jobs)
    seen = record(model, EVENTS)
    changed = record(session, ("projectChanged",))["projectChanged"]
    model.load_from_project()
    return SimpleNamespace(host=session, jobs=jobs, model=model, seen=seen, changed=changed)


@pytest.fixture
def renders(monkeypatch):
    """``render_previews`` without the core: a row per path; answers an exception when given one."""
    calls: list[dict] = []
    answers: list = []

    def fake(project, paths, n, seed, convert, progress=None, cancel=None):
        calls.append({"paths": list(paths), "n": n, "seed": seed, "preset": project.augment.preset})
        if answers:
            raise answers.pop(0)
        return [am.PreviewRow(p, convert("original"), [convert(i) for i in range(n)]) for p in paths]

    monkeypatch.setattr(am, "render_previews", fake)
    return SimpleNamespace(calls=calls, answers=answers)


def test_the_controls_show_the_preset_with_the_projects_overrides(s):
    m = s.model
    assert s.seen["presetShown"] == [("light", False), ("light", True)]  # enabled once described
    assert set(m.schemas) == set(am.PRESET_TEXT) and s.seen["controlsChanged"] and s.seen["valuesChanged"]
    assert m.values()["hflip"]["enabled"] and not m.values()["rotation"]["enabled"]
    s.host.project.augment.params = {"hflip": {"enabled": False, "p": "lots"}, "nonsense": {"x": 1}}
    s.host.mark_changed("augment")  # from elsewhere (the Strategy page, an undo): the model reloads
    values = m.values()
    assert values["hflip"] == {"enabled": False, "p": 0.5}  # the wrong-typed value stays the preset's
    assert s.seen["message"][-1][1] == "warning" and "must be a number" in s.seen["message"][-1][0]
    assert m.override_count() == 3 and m.overrides_text() == "3 settings changed from the preset"
    assert len(s.jobs.named("augment-info")) == 2


def test_a_preset_is_one_undoable_edit_of_the_users_choice(s):
    m, host = s.model, s.host
    m.set_preset("medium")
    project = host.project
    assert project.augment.preset == "medium" and project.augment.params == {}
    assert "augment" in project.train.user_set and host.modified
    assert s.changed == ["augment", "train"] and len(s.jobs.named("augment-info")) == 1  # no reload of its own
    assert m.values()["rotation"]["enabled"] and [e.text for e in host.done] == ["Augmentation preset: medium"]
    host.undo()
    assert project.augment.preset == "light" and "augment" not in project.train.user_set
    assert m.preset == "light" and s.seen["presetShown"][-1] == ("light", True)
    host.redo()
    assert host.project.augment.preset == "medium" and m.preset == "medium"


def test_values_write_only_what_differs_from_the_preset(s):
    m, host = s.model, s.host
    m.set_preset("medium")
    m.set_field("color_jitter", "strength", 0.4)
    assert host.project.augment.params == {"color_jitter": {"strength": 0.4}}
    m.set_field("hflip", "enabled", False)
    assert host.project.augment.params["hflip"] == {"enabled": False}
    assert m.overrides_text() == "2 settings changed from the preset" and s.seen["overridesChanged"]
    m.set_field("hflip", "enabled", True)  # back to the preset's value: no override left
    m.set_field("color_jitter", "strength", 0.2 + 1e-12)  # the preset's value, within float noise
    assert host.project.augment.params == {} and m.override_count() == 0
    assert [e.text for e in host.done][1:3] == ["Augmentation: Colour jitter, Strength", "Turn off Horizontal flip"]
    host.undo()  # edits of different values stay apart
    assert host.project.augment.params == {"color_jitter": {"strength": 0.4}}


def test_a_value_changed_again_and_again_merges_into_one_step(s):
    m, host = s.model, s.host
    for value in (0.35, 0.4, 0.45):
        m.set_field("color_jitter", "strength", value)
    m.set_field("hflip", "enabled", False)
    drag, toggle = host.done  # the host merges as the Qt undo stack does (mergeWith)
    assert drag.before["augment"].params == {} and drag.after["augment"].params == {"color_jitter": {"strength": 0.45}}
    assert not drag.merge(toggle) and not toggle.merge(ProjectEdit("x", {}, {}))  # other values, toggles: not
    host.undo()
    host.undo()
    assert host.project.augment.params == {} and "augment" not in host.project.train.user_set


def test_a_later_drag_is_a_step_of_its_own_and_a_drag_back_leaves_none(s, monkeypatch):
    m, host = s.model, s.host
    clock = [100.0]
    monkeypatch.setattr("transfer_studio.ui.models.base.time.monotonic", lambda: clock[0])
    m.set_field("color_jitter", "strength", 0.35)
    clock[0] += 0.2
    m.set_field("color_jitter", "strength", 0.4)
    clock[0] += ProjectEdit.MERGE_WINDOW_S + 5  # released, and dragged again later
    m.set_field("color_jitter", "strength", 0.45)
    assert len(host.done) == 2
    host.undo()
    assert host.project.augment.params == {"color_jitter": {"strength": 0.4}}
    clock[0] += 10
    m.set_field("color_jitter", "strength", 0.5)
    clock[0] += 0.2
    m.set_field("color_jitter", "strength", 0.4)  # back where this drag started
    assert len(host.done) == 1


def test_undo_takes_back_only_the_user_choices_the_edit_made(s):
    """The Train page's choices (not on the undo stack) survive undoing an Augment edit."""
    m, host = s.model, s.host
    m.set_field("hflip", "enabled", False)
    assert "augment" in host.project.train.user_set
    host.project.train.epochs = 50
    host.project.train.user_set.append("epochs")  # typed on the Train page afterwards
    host.undo()
    assert host.project.train.user_set == ["epochs"] and host.project.train.epochs == 50
    host.redo()
    assert host.project.train.user_set == ["epochs", "augment"]


def test_reset_to_preset_forgets_the_changes_and_the_warning(s):
    m, host = s.model, s.host
    host.project.augment.params = {"hflip": {"p": 7}}
    host.mark_changed("augment")
    assert m.message_level == "warning" and "between 0.0 and 1.0" in s.seen["message"][-1][0]
    m.reset_to_preset()
    assert host.project.augment.params == {} and m.message_level is None
    assert [e.text for e in host.done] == ["Reset augmentation to the preset"]
    due = len(s.seen["previewDue"])
    assert s.seen["previewDue"][-1] is True  # rendered again at once
    m.reset_to_preset()  # nothing to reset: no edit, no new preview
    assert len(host.done) == 1 and len(s.seen["previewDue"]) == due


def test_preview_images_come_from_the_dataset_or_the_users_choice(s, report, renders):
    m, host = s.model, s.host
    assert m.preview_paths() == []
    m.render()
    assert s.seen["emptied"] and s.seen["sourceChanged"][-1] == ("", False) and renders.calls == []
    host.set_scan(report)
    assert s.seen["previewDue"][-1] is False and m.stale
    paths = m.preview_paths()
    assert len(paths) == 3 and len({Path(p).parent.name for p in paths}) == 3  # one per class, three classes
    m.render()
    assert not m.stale and s.seen["sourceChanged"][-1] == ("3 images from the dataset (one per class)", False)
    assert renders.calls[-1] == {"paths": paths, "n": am.DEFAULT_COUNT, "seed": 0, "preset": "light"}
    assert [r.path for r in m.rows] == paths and len(m.rows[0].samples) == am.DEFAULT_COUNT

    mine = [f"/pics/{i}.png" for i in range(6)]
    m.set_images(mine)
    assert host.project.ui.augment_images == mine[:am.MAX_IMAGES] and host.modified and s.changed[-1] == "ui"
    assert s.seen["previewDue"][-1] is True and m.preview_paths() == mine[:4]
    m.render()
    assert s.seen["sourceChanged"][-1] == ("4 images you chose", True)  # the dataset is there to go back to
    m.set_images(None)
    assert host.project.ui.augment_images == [] and m.preview_paths() == paths
    n = len(s.changed)
    m.set_images(None)  # nothing chosen: nothing written
    assert len(s.changed) == n


def test_seed_count_and_stale_answers(s, report, renders):
    m = s.model
    s.host.set_scan(report)
    m.reshuffle()
    assert m.seed != 0 and s.seen["previewDue"][-1] is True
    m.set_count(3)
    assert s.seen["previewDue"][-1] is False
    s.jobs.sync = False
    m.render()
    first = s.jobs.started[-1]
    assert s.seen["busyStarted"][-1][0] == "Rendering preview…" and m.busy()
    m.render()  # a newer preview: the older one is cancelled and its answer dropped
    assert first.cancelled
    first.cancelled = False  # it had finished before it saw the cancel: its answer still arrives
    s.jobs.run(first)
    assert m.rows == [] and not s.seen["busyStopped"]
    s.jobs.run()
    assert len(m.rows) == 3 and len(m.rows[0].samples) == 3 and s.seen["busyStopped"] and not m.busy()
    assert renders.calls[-1]["seed"] == m.seed


def test_a_preview_that_fails_says_so_until_one_works(s, report, renders):
    m = s.model
    s.host.set_scan(report)
    renders.answers.append(RuntimeError("boom"))
    m.render()
    assert s.seen["message"][-1] == ("Could not render the preview: RuntimeError: boom", "error")
    m.render()
    assert m.message_level is None and s.seen["messageCleared"] and len(m.rows) == 3


def test_changes_elsewhere_reload_or_rerender(s):
    m, host = s.model, s.host
    host.project.augment.preset = "strong"
    host.mark_changed("augment")
    assert m.preset == "strong" and m.values()["auto_augment"]["enabled"]
    due = len(s.seen["previewDue"])
    host.project.train.image_size = 96
    host.mark_changed("train")
    assert len(s.seen["previewDue"]) == due + 1
    host.project.augment.preset = "sideways"  # unknown: shown as the default preset, and the check says why
    host.mark_changed("augment")
    assert m.preset == am.DEFAULT_PRESET and s.seen["message"][-1][1] == "warning"
    host.navigateRequested.connect(lambda key: s.seen["navigated"].append(key))
    m.go_to_data()
    assert s.seen["navigated"] == ["data"]


def test_field_positions_and_texts():
    pct = {"type": "float", "min": 0.0, "max": 1.0, "step": 0.05, "value": 0.3}
    degrees = {"type": "float", "min": 0.0, "max": 180.0, "step": 1.0, "value": 15.0}
    ratio = {"type": "float", "min": 1.0, "max": 2.0, "step": 0.05, "value": 4 / 3}
    ops = {"type": "int", "min": 1, "max": 5, "step": 1, "value": 2}
    assert am.field_steps(pct) == 20 and am.field_steps(degrees) == 180 and am.field_steps(ops) == 4
    assert am.field_value(pct, 8) == 0.4 and am.field_position(pct, 0.4) == 8
    assert am.field_position(pct, 7) == 20 and am.field_value(pct, 25) == 1.0  # clamped to the range
    assert am.field_value(ops, 1) == 2 and isinstance(am.field_value(ops, 1), int)
    assert am.field_text("strength", pct, 0.4) == "40 %" and am.field_text("degrees", degrees, 15.0) == "15"
    assert am.field_text("ratio_max", ratio, 4 / 3) == "1.33" and am.field_text("ratio_max", ratio, 1.5) == "1.5"
    assert am.field_text("num_ops", ops, 2) == "2"
    assert am.same_kind(0.5, 1) and not am.same_kind(True, 1) and not am.same_kind(1, False)
    assert am.same_kind("rand_augment", "trivial_augment_wide") and not am.same_kind(3, "x")
    assert am.overrides_text(1) == "1 setting changed from the preset" and am.overrides_text(0) == ""


def test_render_previews_with_the_core(session, report, tmp_path):
    """The real rendering: the validation view and n versions per image, an unreadable file as a row
    with its error, the same seed drawing the same versions, each picture passed through ``convert``."""
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    paths = [str(Path(report.root) / report.files[0]), str(bad)]
    rows = am.render_previews(session.project, paths, 3, 5)
    assert rows[1].original is None and rows[1].error and rows[1].samples == []
    good = rows[0]
    assert good.error is None and len(good.samples) == 3
    assert good.original.shape == (64, 64, 3) and good.original.dtype == np.uint8
    again = am.render_previews(session.project, paths[:1], 3, 5, convert=lambda a: a.sum())
    assert [int(x) for x in again[0].samples] == [int(a.sum()) for a in good.samples]
    session.project.augment.params = {"hflip": {"p": 7}}
    with pytest.raises(am.UserError):
        am.render_previews(session.project, paths, 3, 5)
