"""Augment page: controls generated from the presets, choices in the project, a live preview grid."""

from __future__ import annotations

import pytest
from helpers.images import make_class_folder
from PySide6.QtCore import Qt

from transfer_studio.config import ModelSpec, Project
from transfer_studio.ui.pages.augment import AugmentPage
from transfer_studio.ui.state import AppState


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from transfer_studio.core import dataset

    root = make_class_folder(tmp_path_factory.mktemp("aug") / "ds", {"red": 4, "green": 4}, size=48)
    return dataset.scan(root)


@pytest.fixture
def page(qtbot, report):
    project = Project(model=ModelSpec("resnet18", weights="none"))
    project.train.image_size = 64  # small previews: fast
    state = AppState(project)
    state.set_scan(report)
    page = AugmentPage(state)
    qtbot.addWidget(page)
    page.resize(1100, 700)
    wait_info(qtbot, page)
    yield page
    page.shutdown()


def wait_info(qtbot, page: AugmentPage) -> None:
    """The transforms' description and the check of the saved values come from a background task."""
    qtbot.waitUntil(lambda: page.model.schemas is not None and not page.model.info_job.is_running(), timeout=30000)


def wait_preview(qtbot, page: AugmentPage) -> list[bytes]:
    qtbot.waitUntil(lambda: not page.model.stale and not page._timer.isActive() and not page.busy(), timeout=20000)
    return [bytes(img.constBits()) for img in page.grid.images()]


def test_controls_follow_the_preset_and_write_only_overrides(qtbot, page):
    project = page.state.project
    assert page.preset_combo.currentData() == "light"
    assert page._groups["hflip"].isChecked() and not page._groups["rotation"].isChecked()

    changed: list[str] = []
    page.state.projectChanged.connect(changed.append)
    page.preset_combo.setCurrentIndex(page.preset_combo.findData("medium"))
    assert project.augment.preset == "medium" and project.augment.params == {}
    assert page._groups["rotation"].isChecked() and page._groups["color_jitter"].isChecked()
    assert "augment" in changed

    strength = page.findChild(type(page._fields["color_jitter"]["strength"].widget), "augment_color_jitter_strength")
    strength.setValue(strength.value() + 4)  # 4 steps of 0.05 up from the preset's 0.2
    assert project.augment.params == {"color_jitter": {"strength": pytest.approx(0.4)}}
    assert page.findChild(type(page.override_label), "augment_color_jitter_strength_value").text() == "40 %"
    page._groups["hflip"].setChecked(False)
    assert project.augment.params["hflip"] == {"enabled": False}
    assert "2 settings changed" in page.override_label.text()
    page._groups["hflip"].setChecked(True)  # back to the preset's value: no override left
    assert "hflip" not in project.augment.params

    qtbot.mouseClick(page.reset_button, Qt.MouseButton.LeftButton)
    assert project.augment.params == {}
    assert page._fields["color_jitter"]["strength"].value() == pytest.approx(0.2)


def test_edits_are_undone_from_the_edit_menu_and_a_slider_drag_is_one_step(qtbot, page):
    state, project = page.state, page.state.project
    stack = state.undo_stack
    page.preset_combo.setCurrentIndex(page.preset_combo.findData("medium"))
    assert stack.count() == 1 and "augment" in project.train.user_set  # strategy Auto keeps this choice
    slider = page._fields["color_jitter"]["strength"].widget
    start = slider.value()
    for step in range(1, 5):  # dragged four steps of 0.05 up from the preset's 0.2
        slider.setValue(start + step)
    assert stack.count() == 2 and project.augment.params == {"color_jitter": {"strength": pytest.approx(0.4)}}
    page._groups["hflip"].setChecked(False)
    assert stack.count() == 3 and stack.undoText() == "Turn off Horizontal flip"

    hflip = page._groups["hflip"]
    stack.undo()
    assert page._groups["hflip"].isChecked() and "hflip" not in state.project.augment.params
    assert page._groups["hflip"] is hflip and page._fields["color_jitter"]["strength"].widget is slider  # focus kept
    stack.undo()  # the whole drag at once
    assert state.project.augment.params == {}
    assert page._fields["color_jitter"]["strength"].value() == pytest.approx(0.2)
    assert "0 settings" not in page.override_label.text() and not page.reset_button.isEnabled()
    stack.undo()
    assert page.preset_combo.currentData() == "light" and state.project.augment.preset == "light"
    assert "augment" not in state.project.train.user_set and not page._groups["rotation"].isChecked()
    stack.redo()
    stack.redo()
    assert page.preset_combo.currentData() == "medium"
    assert page._fields["color_jitter"]["strength"].value() == pytest.approx(0.4)
    assert page.override_label.text() == "1 setting changed from the preset" and page.reset_button.isEnabled()


def test_preview_has_the_expected_images_and_changes_with_the_seed(qtbot, page):
    page.show()
    first = wait_preview(qtbot, page)
    assert len(page.rows) == 2  # one image per class
    assert len(first) == 2 * page.count_spin.value() == 12
    assert all(r.original is not None and r.original.width() > 0 for r in page.rows)
    seed = page.model.seed

    qtbot.mouseClick(page.reshuffle_button, Qt.MouseButton.LeftButton)
    assert page.model.seed != seed
    second = wait_preview(qtbot, page)
    assert len(second) == 12 and second != first

    page.model.seed = seed  # the same seed draws the same versions again
    page.model.schedule_preview(immediate=True)
    assert wait_preview(qtbot, page) == first

    page.count_spin.setValue(3)  # debounced re-render with fewer versions per image
    assert len(wait_preview(qtbot, page)) == 6

    page.preset_combo.setCurrentIndex(page.preset_combo.findData("none"))
    none = wait_preview(qtbot, page)
    assert none[:3] == [none[0]] * 3  # no augmentation: every version is the same image


def test_chosen_images_and_settings_survive_save_and_open(qtbot, page, report, tmp_path):
    from pathlib import Path

    state = page.state
    image = str(Path(report.root) / report.files[0])
    page.show()
    page.set_images([image])
    assert state.project.ui.augment_images == [image]
    wait_preview(qtbot, page)
    assert len(page.rows) == 1 and "you chose" in page.source_label.text()
    page.preset_combo.setCurrentIndex(page.preset_combo.findData("strong"))
    page._groups["random_erasing"].setChecked(False)
    path = tmp_path / "p.tsproj"
    state.save(path)

    state.new_project()
    assert page.preset_combo.currentData() == "light"
    state.open_project(path)
    wait_info(qtbot, page)
    assert page.banner.text() == ""
    assert page.preset_combo.currentData() == "strong"
    assert not page._groups["random_erasing"].isChecked()
    assert page.preview_paths() == [image]
    assert not state.modified


def test_changes_from_elsewhere_reload_the_controls_and_bad_values_warn(qtbot, page):
    state = page.state
    state.project.augment.preset = "strong"  # e.g. the Strategy page applied its suggestion
    state.mark_changed("augment")
    assert page.preset_combo.currentData() == "strong" and page._groups["auto_augment"].isChecked()

    state.project.augment.params = {"hflip": {"p": 7}}
    state.mark_changed("augment")
    wait_info(qtbot, page)
    assert page.banner.level() == "warning" and "between 0.0 and 1.0" in page.banner.text()
    assert page._fields["hflip"]["p"].value() == 1.0  # the control shows the value clamped
    page.show()
    qtbot.waitUntil(lambda: page.banner.level() == "error", timeout=20000)
    assert "Could not render the preview" in page.banner.text()  # the page keeps working
    qtbot.mouseClick(page.reset_button, Qt.MouseButton.LeftButton)
    assert len(wait_preview(qtbot, page)) == 12


def test_without_images_the_page_says_where_to_get_them(qtbot):
    state = AppState(Project(model=ModelSpec("resnet18", weights="none")))
    page = AugmentPage(state)
    qtbot.addWidget(page)
    page.show()
    qtbot.waitUntil(lambda: not page.model.stale, timeout=5000)
    wait_info(qtbot, page)
    assert page.empty.isVisibleTo(page) and not page.preview_scroll.isVisibleTo(page)
    with qtbot.waitSignal(state.navigateRequested, timeout=1000) as blocker:
        qtbot.mouseClick(page.findChild(type(page.reset_button), "augment_go_data"), Qt.MouseButton.LeftButton)
    assert blocker.args == ["data"]
    page.shutdown()
