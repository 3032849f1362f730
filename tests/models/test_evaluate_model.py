"""The Evaluate page's model without Qt: the choice remembered in the project, reports kept per source,
data folder and weights time, evaluating on its own when a finished run is shown, errors, cancel, and
the texts of a report and of a confusion-matrix cell. ``core.metrics.evaluate`` is replaced by a fake
(the UI tests run the real one); jobs run in the test's thread."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
from helpers.page_models import Jobs, record

from transfer_studio.config import RunRecord
from transfer_studio.core import run_folder
from transfer_studio.errors import UserError
from transfer_studio.ui.models import evaluate_model as em
from transfer_studio.ui.models.evaluate_model import EvaluateModel, cell_paths, report_texts

EVENTS = EvaluateModel.EVENTS


def fake_report(split: str = "test", *, optimistic: bool = False, note: str = "", worst: int = 1) -> SimpleNamespace:
    metric = SimpleNamespace(precision=1.0, recall=0.5, f1=2 / 3, support=2)
    return SimpleNamespace(
        accuracy=0.75, top5=None, num_images=4, split=split, data_root="/data", source_kind="run",
        skipped=[], optimistic=optimistic, note=note, classes=["cat", "dog"],
        per_class={"cat": metric, "dog": metric}, confusion_matrix=np.array([[1, 1], [0, 2]]),
        paths=["/d/cat/1.png", "/d/cat/2.png", "/d/dog/3.png", "/d/dog/4.png"],
        labels=np.array([0, 0, 1, 1]), predictions=np.array([0, 1, 1, 1]),
        probabilities=np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8], [0.4, 0.6]]),
        worst=[SimpleNamespace(path="/d/cat/2.png", label="cat", predicted="dog", probability=0.7)][:worst])


class Page:
    """What the model asks of the page."""

    def __init__(self) -> None:
        self.source: str | None = None
        self.folder: str | None = None
        self.folder_chosen = False
        self.sources = True


@pytest.fixture
def run(tmp_path):
    folder = tmp_path / "run_a"
    folder.mkdir()
    (folder / run_folder.BEST).write_bytes(b"weights")
    return str(folder)


@pytest.fixture
def setup(session, monkeypatch):
    calls: list[tuple[str, str | None]] = []
    answers: list = []

    def evaluate(source, data_dir, progress=None, cancel=None):
        calls.append((source, data_dir))
        answer = answers.pop(0) if answers else fake_report()
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(em, "run_evaluation", evaluate)
    jobs, page = Jobs(), Page()
    model = EvaluateModel(session, jobs, source=lambda: page.source, data_folder=lambda: page.folder,
                          folder_chosen=lambda: page.folder_chosen, has_sources=lambda: page.sources)
    return SimpleNamespace(host=session, jobs=jobs, page=page, model=model, calls=calls, answers=answers,
                           seen=record(model, EVENTS))


def test_without_a_source_it_asks_for_one(setup):
    s = setup
    assert s.model.evaluate() is None and s.calls == []
    assert s.seen["message"][-1][1] == "warning" and "Choose a model" in s.seen["message"][-1][0]
    s.page.sources = False
    s.model.refresh()
    assert s.seen["emptyShown"][-1][0] == "No trained model yet"


def test_reports_are_kept_per_source_folder_and_weights_time(setup, run, tmp_path):
    s = setup
    s.page.source = run
    s.model.refresh()
    assert s.seen["emptyShown"][-1] == ("Not evaluated yet", "Press Evaluate to measure this model on "
                                              "images it did not train on.", True)
    s.model.evaluate()
    assert s.calls == [(run, None)] and s.model.report is not None and s.seen["reportShown"]
    assert s.seen["messageCleared"] and s.seen["busyStopped"] and s.model.job is None

    s.page.folder_chosen, s.page.folder = True, str(tmp_path)  # another folder: not evaluated yet
    s.model.refresh()
    assert s.model.report is None and s.seen["emptyShown"][-1][0] == "Not evaluated yet"
    s.page.folder_chosen, s.page.folder = False, None  # back: the kept report, no new job
    s.model.refresh()
    assert s.model.report is not None and len(s.calls) == 1
    s.model.maybe_auto_evaluate()
    assert len(s.calls) == 1

    weights = os.path.join(run, run_folder.BEST)  # a resumed run wrote new weights: measured again
    os.utime(weights, (1, 1))
    s.model.refresh()
    assert s.model.report is None
    s.model.maybe_auto_evaluate()
    assert len(s.calls) == 2 and s.model.report is not None


def test_a_run_evaluates_on_its_own_only_with_weights_and_when_not_training(setup, run, tmp_path):
    s = setup
    empty = tmp_path / "no_weights"
    empty.mkdir()
    s.page.source = str(empty)
    s.model.maybe_auto_evaluate()
    assert s.calls == []
    s.page.source = run
    s.host.project.runs.append(RunRecord(run_dir=run, status="running"))
    s.model.maybe_auto_evaluate()
    assert s.calls == []  # its weights are still changing
    s.host.project.runs[0].status = "finished"
    s.model.maybe_auto_evaluate()
    assert s.calls == [(run, None)]
    s.page.folder_chosen = True  # "Another folder" without a folder: nothing to measure
    assert s.model.key() is None and not s.model.can_evaluate()


def test_an_error_offers_another_folder_and_a_cancel_says_so(setup, run, tmp_path):
    s = setup
    s.page.source = run
    s.answers.append(UserError("The images this run was trained on are no longer at /x."))
    s.model.evaluate()
    text, level, _details, offer_folder = s.seen["message"][-1]
    assert level == "error" and "no longer at" in text and offer_folder
    assert s.model.report is None and s.seen["emptyShown"][-1][0] == "Not evaluated yet"
    s.page.folder_chosen, s.page.folder = True, str(tmp_path)
    s.answers.append(UserError("no classes"))
    s.model.evaluate()
    assert s.seen["message"][-1][3] is False  # the folder is already the user's choice

    statuses: list[str] = []
    s.host.statusMessage.connect(lambda t, _ms: statuses.append(t))
    s.jobs.sync = False
    job = s.model.evaluate()
    assert s.model.busy() and s.seen["busyStarted"][-1][1] is job
    assert s.seen["emptyShown"][-1][0] == "Evaluating\u2026" and not s.model.can_evaluate()
    job.cancel()
    s.jobs.run(job)
    assert statuses == ["Evaluation cancelled"] and not s.model.busy() and s.model.report is None


def test_a_new_evaluation_cancels_the_running_one(setup, run):
    s = setup
    s.page.source = run
    s.jobs.sync = False
    first = s.model.evaluate()
    second = s.model.evaluate()
    assert first.cancelled and not second.cancelled and s.model.job is second


def test_the_choice_is_remembered_in_the_project(setup, run, tmp_path):
    s = setup
    changed: list[str] = []
    s.host.projectChanged.connect(changed.append)
    s.page.source = run
    s.model.remember_source()
    s.model.remember_source()
    assert s.host.project.ui.evaluate_run == run and changed == ["ui"]
    s.model.remember_data_folder(str(tmp_path))
    s.model.remember_data_folder("")
    assert s.host.project.ui.evaluate_data is None and changed == ["ui", "ui", "ui"]


def test_report_and_cell_texts():
    texts = report_texts(fake_report())
    assert (texts.accuracy, texts.top5, texts.images, texts.macro_f1) == ("75.0%", None, "4", "0.667")
    assert texts.split == "Evaluated on the run's test split (4 images, 2 classes)."
    assert texts.wrong.startswith("The 1 mistakes the model was most sure about (of 1)")
    assert texts.wrong_captions == ["cat → dog\n70% sure"] and not texts.optimistic and texts.note == ""
    val = report_texts(fake_report("val", optimistic=True))
    assert val.optimistic and "chose the best epoch" in val.note
    assert report_texts(fake_report(note="only two classes")).note == "Only two classes."
    assert report_texts(fake_report(worst=0)).wrong == "No mistakes on these images."

    report = fake_report()
    assert cell_paths(report, 0, 1) == ["/d/cat/2.png"] and cell_paths(report, 1, 1) == ["/d/dog/3.png", "/d/dog/4.png"]
    cell = em.cell(report, 0, 1)
    assert cell.text == "<b>cat</b> mistaken for <b>dog</b>: 1 image." and cell.captions == ["2.png\n70%"]
    assert em.cell(report, 1, 1).text == "<b>dog</b> recognised correctly: 2 images."
