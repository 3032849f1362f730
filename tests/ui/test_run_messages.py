"""Pages hear of other pages' runs through AppState's signals (issue 13.3), not by reading
``project.ui`` on every change: the Train page's new run (``runSelected``) and the Runs page's
"Open evaluation" (``evaluateRequested``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from transfer_studio.config import ModelSpec, Project, RunRecord
from transfer_studio.ui.pages.evaluate import EvaluatePage
from transfer_studio.ui.pages.export import ExportPage
from transfer_studio.ui.pages.try_page import TryPage
from transfer_studio.ui.state import AppState


@pytest.fixture
def state(tmp_path: Path) -> AppState:
    project = Project(name="p", model=ModelSpec("resnet18", weights="none"))
    for name in ("run_a", "run_b"):
        (tmp_path / name).mkdir()
        project.runs.append(RunRecord(run_dir=str(tmp_path / name), model="resnet18", status="finished"))
    project.ui.selected_run = project.runs[0].run_dir
    return AppState(project)


def _pages(qtbot, state: AppState) -> tuple[EvaluatePage, TryPage, ExportPage]:
    pages = (EvaluatePage(state), TryPage(state), ExportPage(state))
    for page in pages:
        qtbot.addWidget(page)
    return pages


def test_a_new_run_from_the_train_page_is_followed_unless_one_was_chosen(qtbot, state, tmp_path):
    evaluate, try_page, export = _pages(qtbot, state)
    a, b = (str(tmp_path / n) for n in ("run_a", "run_b"))
    assert [p.source_combo.current_path() for p in (evaluate, try_page, export)] == [a, a, a]
    # the Train page's run model writes the field and marks "ui" (as train_run.py does)
    state.project.ui["selected_run"] = b
    state.mark_changed("ui")
    assert [p.source_combo.current_path() for p in (evaluate, try_page, export)] == [b, b, b]
    assert state.project.ui.evaluate_run == b  # the Evaluate page remembers what it shows

    try_page.set_source(a)  # a choice made on the page stays when the next run finishes
    state.select_run(a)
    state.select_run(b)
    assert try_page.source_combo.current_path() == a and evaluate.source_combo.current_path() == b


def test_open_evaluation_from_the_runs_page_reaches_the_evaluate_page(qtbot, state, tmp_path):
    evaluate, _try, _export = _pages(qtbot, state)
    b = str(tmp_path / "run_b")
    state.request_evaluation(b)
    assert evaluate.source_combo.current_path() == b and state.project.ui.evaluate_run == b
    assert state.modified
    # a page made later opens with the run asked for
    later = EvaluatePage(state)
    qtbot.addWidget(later)
    assert later.source_combo.current_path() == b
