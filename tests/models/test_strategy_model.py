"""The Strategy page's model without Qt: asking the advisor (steps, cancel, evidence kept per
``evidence_key``), Apply and another approach as undoable edits, typed values marked ``user_set``, the
trainable counts, a saved suggestion restored on open. The advisor's measurements are replaced by the
core's count-based suggestion (the UI tests run the real advisor); jobs run in the test's thread."""

from __future__ import annotations

import pytest
from helpers.images import make_class_folder
from helpers.page_models import Jobs, record

from transfer_studio.config import ModelSpec, Project, TrainSpec
from transfer_studio.errors import UserError
from transfer_studio.ui.models import strategy_model as sm
from transfer_studio.ui.models.session import Session
from transfer_studio.ui.models.strategy_model import ADVICE_STEPS, StrategyModel

EVENTS = ("message", "messageCleared", "busyStarted", "busyStopped", "emptied", "contentShown", "cardChanged",
          "choiceChanged", "appliedChanged", "countDue", "countsChanged", "countFailed", "suggestDue", "fieldsChanged")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from transfer_studio.core import dataset

    return dataset.scan(make_class_folder(tmp_path_factory.mktemp("sm") / "ds", {"a": 10, "b": 10}, size=8))


@pytest.fixture
def advisor(monkeypatch):
    """``run_suggest`` without measuring: the core's suggestion from the image counts; records each call."""
    from transfer_studio.core import strategy

    calls: list[dict] = []

    def fake(project, report, budget, probe, evidence=None, *, progress, cancel):
        calls.append({"budget": budget, "probe": probe, "evidence": evidence, "device": project.train.device})
        progress(0, len(ADVICE_STEPS))
        if cancel():
            from transfer_studio.errors import Cancelled
            raise Cancelled()
        if probe:
            raise UserError("The similarity check needs the pretrained weights.")
        s = strategy.suggest(report, project.model.name, device="cpu", time_budget_hours=budget,
                             throughput_gflops=50.0)
        return s, evidence or object()

    monkeypatch.setattr(sm, "run_suggest", fake)
    return calls


@pytest.fixture
def setup(report, advisor):
    host = Session(Project(model=ModelSpec("resnet18", weights="none"), train=TrainSpec(image_size=32, device="cpu")))
    jobs = Jobs()
    model = StrategyModel(host, jobs)
    seen = record(model, EVENTS)
    host.set_scan(report)
    return host, jobs, model, seen


def test_without_a_scan_the_page_says_what_to_do(report, advisor):
    host = Session(Project())
    model = StrategyModel(host, Jobs())
    seen = record(model, EVENTS)
    model.load_from_project()
    assert seen["emptied"][-1] == ("Choose a dataset first", "The advice depends on how many images you have. "
                                   "Choose a dataset on the Data page.")
    host.project.data.root = "/somewhere"
    model.refresh()
    assert seen["emptied"][-1][0] == "Scan the dataset first" and "(/somewhere)" in seen["emptied"][-1][1]
    assert advisor == [] and model.card().title == "No suggestion yet" and not model.card().apply_enabled
    host.set_scan(report)
    assert seen["contentShown"] and seen["suggestDue"] == [True] and model.stale and model.wants_advice()


def test_asking_the_advisor_keeps_its_evidence_for_the_same_inputs(setup, advisor):
    host, jobs, model, seen = setup
    jobs.sync = False
    model.refresh()
    job = jobs.started[-1]
    assert job.name == "suggest" and seen["busyStarted"][-1] == ("Asking the advisor", job, ADVICE_STEPS)
    assert not model.wants_advice()
    jobs.run(job)
    s = model.suggestion
    assert s.approach == 1 and seen["busyStopped"] and not model.busy()
    card = model.card()
    assert card.title == "Suggested: ①  Train only a new output layer" and card.reason == s.reason
    assert card.facts["evidence"].startswith("Nothing measured yet") and card.apply_enabled
    assert card.facts["epochs"] == str(s.epochs) and not card.probe_visible
    assert model.choice().current is None and model.choice().enabled  # the project is still on Auto

    evidence = object()
    model._evidence = evidence  # what advice.gather measured
    model.refresh()
    assert seen["busyStarted"][-1][0] == "Asking the advisor…" and seen["busyStarted"][-1][2] is None
    jobs.run()
    assert advisor[-1]["evidence"] is evidence  # the same inputs: only the decision again
    model.set_budget(0.5)
    assert seen["suggestDue"][-1] is False and host.project.ui.strategy_time_budget_hours == 0.5 and host.modified
    model.refresh()
    jobs.run()
    assert advisor[-1]["evidence"] is evidence and advisor[-1]["budget"] == 0.5
    assert model.suggestion.time_budget_hours == 0.5
    model.set_device("auto")  # another device: measured again
    assert host.project.train.device == "auto" and host.project.train.user_set == []
    assert seen["suggestDue"][-1] is False and model.stale
    model.refresh()
    jobs.run()
    assert advisor[-1]["evidence"] is None


def test_cancel_and_errors(setup, advisor):
    host, jobs, model, seen = setup
    jobs.sync = False
    model.refresh()
    model.stale = False
    model.cancel()
    job = jobs.started[-1]
    assert job.cancelled and model.stale
    jobs.run(job)
    assert model.suggestion is None and seen["busyStopped"] and seen["message"] == []
    jobs.sync = True

    cards = len(seen["cardChanged"])
    model.refresh(probe=True)
    assert seen["message"][-1] == ("The advisor could not make a suggestion: The similarity check needs the "
                                   "pretrained weights.", "error")
    assert len(seen["cardChanged"]) == cards + 1  # "No suggestion yet"
    model.refresh()
    shown = model.suggestion
    model.refresh(probe=True)
    assert model.suggestion is shown and len(seen["cardChanged"]) == cards + 2


def test_apply_is_one_undoable_edit(setup):
    host, jobs, model, seen = setup
    model.apply()
    assert host.done == []  # nothing to apply yet
    model.refresh()
    s = model.suggestion
    changed: list[str] = []
    host.projectChanged.connect(changed.append)
    statuses: list[str] = []
    host.statusMessage.connect(lambda t, _ms: statuses.append(t))
    model.apply()
    p = host.project
    assert changed == ["surgery", "train", "augment", "ui"] and len(host.done) == 1
    assert (p.train.strategy, p.train.lr, p.train.epochs, p.train.batch_size) == ("head", s.lr, s.epochs, s.batch_size)
    assert [op.op for op in p.surgery] == ["freeze", "replace_head"] and p.surgery[1].params["num_classes"] == 2
    assert p.ui.strategy_suggestion["reason"] == s.reason
    assert statuses[-1].startswith("Strategy set: train only a new output layer.")
    assert model.applied_text() == "✓ The project uses this suggestion." and model.choice().current == 1
    assert seen["countDue"]

    host.undo()
    assert p.surgery == [] and host.project.train.strategy == "auto"
    host.redo()
    assert [op.op for op in host.project.surgery] == ["freeze", "replace_head"]


def test_another_approach_keeps_typed_values(setup):
    host, jobs, model, seen = setup
    model.refresh()
    model.apply()
    model.set_train("epochs", 7)
    t = host.project.train
    assert t.epochs == 7 and "epochs" in t.user_set and seen["appliedChanged"]
    assert model.applied_text() == "The project uses other settings (see below)."
    model.set_train("epochs", 7)  # the same value: no edit
    assert len(seen["appliedChanged"]) == 1

    model.choose(2)
    t = host.project.train
    cut = model.choice().cut
    assert t.strategy == "partial" and t.unfreeze_from == cut == model.cut and t.epochs == 7
    assert [op.target for op in host.project.surgery if op.op == "freeze_before"] == [cut]
    earlier = model.choice().blocks[0]
    model.choose_block(earlier)
    assert host.project.train.unfreeze_from == earlier and model.choice().cut == earlier
    model.choose(3)
    assert host.project.train.strategy == "full" and host.project.train.epochs == 7
    assert [e.text for e in host.done] == ["Apply suggested strategy: head", "Choose strategy: partial",
                                           "Choose strategy: partial", "Choose strategy: full"]
    host.undo()
    assert host.project.train.strategy == "partial" and host.project.train.unfreeze_from == earlier


def test_the_trainable_counts(setup):
    from transfer_studio.ui.models import strategy_text as text

    host, jobs, model, seen = setup
    model.start_count()
    assert set(model.counts) == {"current"} and seen["countsChanged"] == [None]
    everything = model.counts["current"][0]
    model.refresh()
    model.apply()
    model.start_count()
    assert set(model.counts) == {"current", "1", "2", "3"} and seen["countsChanged"][-1] == everything
    head_only = model.counts["current"][0]
    assert model.counts["1"][0] == head_only < model.counts["2"][0] < model.counts["3"][0] == model.counts["3"][1]
    label = text.trainable_text(head_only, everything, everything, lambda a, b: f"{100 * a / b:.1f}%")
    assert label.startswith(f"The project trains {head_only:,} of {everything:,} parameters (")
    assert label.endswith(f"— was {everything:,}")
    notes = text.count_notes(model.suggestion, model.counts, str)
    assert notes[1].startswith(f"{head_only} parameters learn")


def test_a_saved_suggestion_is_restored_and_a_new_model_forgets_it(setup, report):
    host, jobs, model, seen = setup
    model.refresh()
    model.set_budget(1.5)
    model.refresh()
    model.apply()
    project = host.project.copy()
    host.new_project(project)
    assert seen["emptied"]  # no scan until the Data page reads the folder
    assert model.budget == 1.5 and model.suggestion is not None  # restored (a synchronous job)
    assert [j.name for j in jobs.started].count("restore-suggestion") == 1
    host.set_scan(report)
    assert model.suggestion.reason == project.ui.strategy_suggestion["reason"]
    assert model.applied_text().startswith("✓") and model.choice().current == 1

    host.project.model = ModelSpec("mobilenet_v3_small", weights="none")
    host.mark_changed("model")
    assert model.suggestion is None and model.stale and seen["suggestDue"][-1] is True
    host.project.train.device = "cuda"
    host.mark_changed("train")  # another page changed the device: the field follows
    assert seen["fieldsChanged"]

    other = Project(model=ModelSpec("resnet18"),  # as loaded from a file: a hand-edited budget is dropped
                    ui={"strategy_suggestion": dict(project.ui.strategy_suggestion, model="efficientnet_lite0"),
                        "strategy_time_budget_hours": "a lot"})
    host.new_project(other)
    assert model.suggestion is None and model.budget == sm.DEFAULT_BUDGET_HOURS  # for another model


def test_evidence_key_follows_what_the_evidence_depends_on(report):
    project = Project(model=ModelSpec("resnet18"))
    key = sm.evidence_key(project, report)
    project.train.epochs = 99  # a decision, not an input of the measurements
    assert sm.evidence_key(project, report) == key
    project.data.seed = 3
    assert sm.evidence_key(project, report) != key
