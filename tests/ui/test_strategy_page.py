"""Strategy page: the advisor's card, Apply, another approach, trainable counts, probe, persistence."""

from __future__ import annotations

import pytest
from helpers.images import make_class_folder
from PySide6.QtCore import Qt

from transfer_studio.config import ModelSpec, Project, TrainSpec
from transfer_studio.ui.pages.strategy import StrategyPage
from transfer_studio.ui.state import AppState
from transfer_studio.ui.widgets import format_count


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from transfer_studio.core import dataset

    root = make_class_folder(tmp_path_factory.mktemp("strategy") / "ds", {"a": 10, "b": 10}, size=16)
    return dataset.scan(root)


def make_page(qtbot, project: Project, report=None) -> StrategyPage:
    state = AppState(project)
    if report is not None:
        state.set_scan(report)
    page = StrategyPage(state)
    qtbot.addWidget(page)
    page.resize(1000, 900)
    return page


@pytest.fixture
def page(qtbot, report):
    # small inputs: the advisor measures features and times training steps on them
    page = make_page(qtbot, Project(model=ModelSpec("resnet18", weights="none"),
                                    train=TrainSpec(image_size=32, device="cpu")), report)
    yield page
    page.shutdown()


def wait_suggestion(qtbot, page: StrategyPage, probe: bool = False) -> None:
    before = page.suggestion
    page.refresh(probe=probe)
    qtbot.waitUntil(lambda: not page.busy() and page.suggestion is not before, timeout=60000)
    qtbot.waitUntil(lambda: not page.busy() and not page._count_timer.isActive(), timeout=30000)


def wait_counts(qtbot, page: StrategyPage) -> None:
    qtbot.waitUntil(lambda: not page.busy() and not page._count_timer.isActive(), timeout=30000)


def network(project: Project):
    from transfer_studio.core import network as core_network

    return core_network.build_network(project, weights=False)


def trainable_modules(net) -> set[str]:
    return {name.rpartition(".")[0] for name, p in net.named_parameters() if p.requires_grad}


def test_without_a_dataset_the_page_points_to_the_data_page(qtbot):
    page = make_page(qtbot, Project())
    assert page.empty.isVisibleTo(page) and not page.content.isVisibleTo(page)
    with qtbot.waitSignal(page.state.navigateRequested, timeout=1000) as blocker:
        qtbot.mouseClick(page.go_data_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["data"]
    page.shutdown()


def test_apply_sets_the_freeze_map_and_training_settings(qtbot, page):
    from transfer_studio.core import surgery

    state = page.state
    wait_suggestion(qtbot, page)
    s = page.suggestion
    assert s.approach == 1 and s.name == "head"  # 10 images per class
    assert page.card_title.text().endswith("Train only a new output layer")
    assert page.reason_label.text() == s.reason and s.reason
    assert page.facts["frozen"].text().startswith(s.frozen[0])
    assert "new output layer" in page.facts["trainable"].text()
    assert page.facts["epochs"].text() == str(s.epochs)
    assert not page.facts["probe"].isVisibleTo(page)
    full_before = network(state.project)
    assert all(p.requires_grad for p in full_before.parameters())

    changed: list[str] = []
    state.projectChanged.connect(changed.append)
    qtbot.mouseClick(page.apply_button, Qt.MouseButton.LeftButton)
    assert {"surgery", "train", "augment"} <= set(changed)
    t = state.project.train
    assert (t.strategy, t.lr, t.epochs, t.batch_size) == ("head", s.lr, s.epochs, s.batch_size)
    assert [op.op for op in state.project.surgery] == ["freeze", "replace_head"]
    assert state.project.surgery[1].params["num_classes"] == 2

    net = network(state.project)
    assert trainable_modules(net) == {"fc"} and net.fc.out_features == 2
    trainable, total = surgery.param_counts(net)
    qtbot.waitUntil(lambda: f"trains {trainable:,} of {total:,}" in page.trainable_label.text(), timeout=30000)
    assert "✓" in page.applied_label.text()

    state.undo_stack.undo()  # one undoable step
    assert state.project.surgery == [] and state.project.train.strategy == "auto"
    assert all(p.requires_grad for p in network(state.project).parameters())
    state.undo_stack.redo()
    assert [op.op for op in state.project.surgery] == ["freeze", "replace_head"]


def test_another_approach_and_adjusted_values_change_what_trains(qtbot, page):
    state = page.state
    wait_suggestion(qtbot, page)
    qtbot.mouseClick(page.apply_button, Qt.MouseButton.LeftButton)
    wait_counts(qtbot, page)
    head_only = page.counts["current"][0]
    assert page.counts["1"][0] == head_only < page.counts["2"][0] < page.counts["3"][0]
    assert page.approach_notes[1].text().startswith(f"{format_count(head_only)} parameters learn")

    page.approach_buttons[2].click()  # retrain the last blocks
    t = state.project.train
    cut = page.unfreeze_combo.currentData()
    assert t.strategy == "partial" and t.unfreeze_from == cut and cut
    assert page.unfreeze_combo.isEnabled()
    freeze = [op for op in state.project.surgery if op.op == "freeze_before"]
    assert [op.target for op in freeze] == [cut]
    net = network(state.project)
    trained = trainable_modules(net)
    assert "fc" in trained and "conv1" not in trained and any(m.startswith(cut) for m in trained)
    wait_counts(qtbot, page)
    assert page.counts["current"] == page.counts["2"]
    assert f"— was {head_only:,}" in page.trainable_label.text()

    advisor_cut = page.counts["current"][0]
    earlier = page.unfreeze_combo.itemData(0)
    page.unfreeze_combo.setCurrentIndex(0)  # learn from an earlier block: more parameters train
    assert state.project.train.unfreeze_from == earlier
    wait_counts(qtbot, page)
    assert page.counts["current"][0] > advisor_cut > head_only
    assert page.counts["2"] == page.counts["current"]  # approach 2's note follows the chosen block

    page.epochs_spin.setValue(7)
    page.lr_spin.setValue(3e-4)
    assert (state.project.train.epochs, state.project.train.lr) == (7, pytest.approx(3e-4))
    assert page.lr_spin.text() == "0.0003"
    assert "other settings" in page.applied_label.text()

    page.approach_buttons[3].click()  # everything learns; the user's values stay
    assert state.project.train.strategy == "full" and state.project.train.epochs == 7
    assert all(p.requires_grad for p in network(state.project).parameters())


def test_similarity_probe_shows_its_verdict(qtbot, tmp_path):
    from transfer_studio.core import dataset

    tiny = dataset.scan(make_class_folder(tmp_path / "tiny", {"a": 3, "b": 3}, size=16))
    page = make_page(qtbot, Project(model=ModelSpec("efficientnet_lite0"),  # bundled weights
                                    train=TrainSpec(image_size=32, device="cpu")), tiny)
    try:
        assert not page.facts["probe"].isVisibleTo(page)
        wait_suggestion(qtbot, page, probe=True)
        probe = page.suggestion.probe
        assert probe is not None and probe["images"] == 6
        assert page.facts["probe"].isVisibleTo(page)
        assert f"{probe['mean_confidence']:.0%} sure" in page.facts["probe"].text()
    finally:
        page.shutdown()


def test_probe_without_pretrained_weights_is_a_message(qtbot, page):
    wait_suggestion(qtbot, page)
    shown = page.suggestion
    page.refresh(probe=True)
    qtbot.waitUntil(lambda: not page.busy(), timeout=60000)
    assert page.banner.level() == "error" and "needs the pretrained weights" in page.banner.text()
    assert page.suggestion is shown and page.apply_button.isEnabled()


def test_the_applied_suggestion_survives_save_and_open(qtbot, page, report, tmp_path):
    state = page.state
    wait_suggestion(qtbot, page)
    page.budget_spin.setValue(1.5)
    qtbot.waitUntil(lambda: page.suggestion.time_budget_hours == 1.5 and not page.busy(), timeout=60000)
    qtbot.mouseClick(page.apply_button, Qt.MouseButton.LeftButton)
    applied = page.suggestion
    path = tmp_path / "p.tsproj"
    state.save(path)

    state.new_project()
    assert page.empty.isVisibleTo(page)
    state.open_project(path)
    state.set_scan(report)  # the Data page re-reads the folder
    assert page.content.isVisibleTo(page)
    qtbot.waitUntil(lambda: page.suggestion is not None and not page.busy(), timeout=30000)
    assert page.suggestion.reason == applied.reason and page.suggestion.frozen == applied.frozen
    assert page.budget_spin.value() == 1.5
    assert page.approach_buttons[1].isChecked()
    assert "✓" in page.applied_label.text()


def test_apply_recolours_the_model_pages_graph(qtbot, main_window, report):
    """In the app: Apply on the Strategy page shows the new freeze map in the Model page's graph."""
    w, state = main_window, main_window.state
    w.show_page("model")
    model_page = w.pages["model"]
    qtbot.waitUntil(lambda: model_page.display is not None and model_page._build_task is None, timeout=60000)
    view = model_page.view
    assert view.status_of("n:conv1").freeze == "trainable"

    state.set_scan(report)  # what the Data page does after a scan
    w.show_page("strategy")
    page = w.pages["strategy"]
    qtbot.waitUntil(lambda: page.suggestion is not None and not page.busy(), timeout=60000)
    qtbot.mouseClick(page.apply_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.status_of("n:conv1").freeze == "frozen", timeout=60000)
    fc = view.status_of("n:fc")
    assert fc.freeze == "trainable" and fc.modified and fc.total == 512 * 2 + 2  # the new 2-class head

    state.undo_stack.undo()
    qtbot.waitUntil(lambda: view.status_of("n:conv1").freeze == "trainable", timeout=60000)


def test_the_trainable_share_reads_as_a_percentage(qtbot, page):
    """Issue 12.5: the page printed "(1e+02 %)" when the whole network trains."""
    page.show()
    qtbot.waitUntil(lambda: "parameters" in page.trainable_label.text(), timeout=60000)
    wait_counts(qtbot, page)
    text = page.trainable_label.text()
    assert text.endswith("parameters (100%)") and "e+" not in text


def test_another_device_is_written_and_asks_the_advisor_again(qtbot, page):
    """The device field went through mark_user_set, which raised in the slot: the project's device
    changed unannounced and the advice was not asked for again."""
    changed: list[str] = []
    page.state.projectChanged.connect(changed.append)
    page._suggest_timer.stop()
    page.device_combo.setCurrentIndex(page.device_combo.findData("auto"))
    assert page.state.project.train.device == "auto" and changed == ["train"]
    assert page.state.project.train.user_set == [] and page._suggest_timer.isActive()
    page._suggest_timer.stop()
