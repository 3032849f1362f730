"""The Strategy page's model: the advisor's suggestion, the user's choice, and the trainable counts.

``training.advice`` runs through the job runner (``ui.worker.run_task`` in the app), in named steps,
with progress and cancel: it measures on the training images (cached backbone features, a
cross-validated linear probe, a learning-rate range test, flip and rotation checks) and times a few
real training steps on the device. The evidence is kept for the inputs it depends on (``evidence_key``);
a new time budget only re-decides from it. "Apply" writes the suggestion into the project
(``core.strategy.apply_suggestion``: training settings, augmentation preset, freeze map; plus a head for
the dataset's classes when the project has none, ``core.head``) as one undoable ``ProjectEdit``; another
approach does the same, keeping the values the user typed; a typed value is marked ``user_set``. The
trainable-parameter counts come from networks rebuilt from the project on the meta device, in a job.
The rules are the core's and the engine's; this module only runs them and keeps what the page shows.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from typing import Any

from transfer_studio.config import Project, mark_user_set
from transfer_studio.ui.models import strategy_text as text
from transfer_studio.ui.models.base import Event, Host, Job, JobRunner, OwnWrites, ProjectEdit
from transfer_studio.ui.models.strategy_text import APPROACHES, NAME_TO_APPROACH
from transfer_studio.ui.runtime import import_core, import_module

DEFAULT_BUDGET_HOURS = 2.0
BUDGET_RANGE = (0.05, 240.0)  # hours, as the budget field allows (two decimals)
DEVICES = ("auto", "cpu", "cuda", "mps")
ADVICE_STEPS = ("Computing features of your training images", "Cross-validating a linear classifier",
                "Learning-rate range test", "Checking whether flips and rotations keep the classes",
                "Timing a few training steps")
_STEP_ENDS = (0.5, 0.6, 0.62, 0.76, 1.01)  # training.advice's progress fractions where each step ends
_EDITED = ("surgery", "train", "augment")  # the project parts a strategy change edits


# -- background jobs ---------------------------------------------------------------------------------
def run_suggest(project: Project, report: Any, budget: float, probe: bool, evidence: Any = None, *,
                progress: Any, cancel: Any) -> tuple[Any, Any]:
    """(suggestion, evidence): the evidence is gathered unless given (then only the decision is made)."""
    strategy, _ = import_core("strategy"), import_core("head")  # head: for the GUI thread's apply
    advice = import_module("transfer_studio.training.advice")
    from transfer_studio.errors import Cancelled

    def check() -> None:
        if cancel():
            raise Cancelled("the advisor was cancelled")

    def on_stage(_text: str, fraction: float) -> None:
        step = next(i for i, end in enumerate(_STEP_ENDS) if fraction < end or i == len(_STEP_ENDS) - 1)
        progress(step, len(ADVICE_STEPS))

    if evidence is None:
        evidence = advice.gather(project, report, progress=on_stage, check=check)
    suggestion = strategy.suggest(report, project.model.name, device=project.train.device,
                                  time_budget_hours=budget, probe=probe, evidence=evidence)
    return suggestion, evidence


def evidence_key(project: Project, report: Any) -> str:
    """What the evidence depends on: the data, model, weights, device, image size, split and surgery."""
    d, t = project.data, project.train
    structural = [dataclasses.asdict(op) for op in project.surgery
                  if op.op not in ("freeze", "unfreeze", "freeze_before", "replace_head")]
    return json.dumps([str(getattr(report, "root", "")), getattr(report, "num_images", 0), project.model.name,
                       project.model.weights, t.device, t.image_size, d.val_split, d.test_split, d.seed,
                       bool(d.split), structural], default=str)


def count_parameters(projects: list[Project]) -> list[tuple[int, int]]:
    """(trainable, total) parameters of each project's network, built on the meta device."""
    network, surgery = import_core("network"), import_core("surgery")
    return [surgery.param_counts(network.build_network_meta(project)) for project in projects]


def suggestion_from_dict(data: dict[str, Any]) -> Any:
    """The core's Suggestion from its saved form (project.ui); unknown keys are ignored."""
    Suggestion = import_core("strategy").Suggestion  # noqa: N806 - a class
    import_core("head")  # for the GUI thread, which applies the suggestion

    names = {f.name for f in dataclasses.fields(Suggestion)}
    return Suggestion(**{k: v for k, v in data.items() if k in names})


def variant(suggestion: Any, approach: int, project: Project, unfreeze_from: str | None = None) -> Any:
    """``suggestion`` switched to another approach, with the advisor's recipe for it (applying it still
    keeps the values the user set explicitly, ``train.user_set``)."""
    # Already imported: the suggestion came from it (a GUI-thread call must not take the import lock).
    strategy = sys.modules["transfer_studio.core.strategy"]
    if approach == 2 and not unfreeze_from:
        unfreeze_from = default_cut(suggestion)
    return strategy.as_approach(suggestion, approach, unfreeze_from)


def default_cut(suggestion: Any) -> str:
    """The advisor's own cut when it suggested partial, else the last quarter of the blocks."""
    if suggestion.unfreeze_from:
        return suggestion.unfreeze_from
    body = (list(suggestion.frozen) + list(suggestion.trainable))[:-1]
    return body[max(1, len(body) - max(1, len(body) // 4))]


def apply_to_project(project: Project, suggestion: Any, num_classes: int | None, *,
                     override_user: bool = False) -> None:
    """The core's apply_suggestion, plus a new head for the dataset's classes if there is none yet
    (``core.head``: the trainer adds the same one; adding it now lets the graph show what will train).
    The page's worker threads have imported both core modules."""
    import_core("strategy").apply_suggestion(project, suggestion, override_user=override_user)
    if num_classes:
        import_core("head").match_head(project, num_classes)


@dataclass
class Choice:
    """"Your choice" as the project has it: the approach, the block list, the values."""

    current: int | None  # the project's approach (1-3), None for Auto
    enabled: bool  # there is a suggestion to vary
    blocks: list[str]  # where approach ② may start learning
    cut: str | None  # the block shown
    lr: float
    body_lr_factor: float
    epochs: int
    batch_size: int
    notes: dict[int, str] | None  # next to each approach (None: leave them)


class StrategyModel:
    """See the module docstring. The page shows the card (``card()``), the choice (``choice()``) and
    the counts when told, and owns the two short delays: before asking the advisor (``suggestDue``)
    and before counting (``countDue``)."""

    def __init__(self, host: Host, jobs: JobRunner):
        self.host, self.jobs = host, jobs
        for name in ("message", "messageCleared", "busyStarted", "busyStopped", "emptied", "contentShown",
                     "cardChanged", "choiceChanged", "appliedChanged", "countDue", "countsChanged", "countFailed", "suggestDue",
                     "fieldsChanged"):
            setattr(self, name, Event())
        self.suggestion: Any = None  # core.strategy.Suggestion shown in the card
        self.counts: dict[str, tuple[int, int]] = {}  # "current" and "1"/"2"/"3" -> (trainable, total)
        self.previous_trainable: int | None = None
        self.budget = DEFAULT_BUDGET_HOURS  # the time budget field
        self.cut: str | None = None  # the block approach ② learns from, as the page shows it
        self.suggest_job: Job | None = None
        self.count_job: Job | None = None
        self.restore_job: Job | None = None
        self.stale = True  # the suggestion no longer matches the data / model / device / budget
        self._evidence: Any = None  # core.strategy.Evidence of the last advice, for _evidence_key
        self._evidence_key: str | None = None
        self._suggest_token = self._count_token = self._restore_token = 0
        self._own = OwnWrites(host)
        host.projectReplaced.connect(self.load_from_project)
        host.projectChanged.connect(self._on_project_changed)
        host.scanChanged.connect(self._on_scan_changed)

    # -- asking the advisor --------------------------------------------------------------------------
    def refresh(self, probe: bool = False) -> None:
        """Ask the advisor (in the background) for the current data, model, device and budget."""
        report = self.host.scan
        if report is None:
            self._show_empty()
            return
        if self.suggest_job is not None:
            self.suggest_job.cancel()
        self._suggest_token += 1
        token = self._suggest_token
        self.stale = False
        project = self.host.project
        key = evidence_key(project, report)
        evidence = self._evidence if key == self._evidence_key else None
        job = self.jobs(
            run_suggest, project.copy(), report, self.budget, probe, evidence,
            name="suggest", pass_control=True,
            on_result=lambda r: self._on_suggestion(token, r[0], r[1], key),
            on_error=lambda m, tb: self._on_suggest_error(token, m),
            on_cancelled=lambda: self._on_suggest_finished(token),
            on_finished=lambda: self._on_suggest_finished(token),
        )
        self.suggest_job = job
        if job.is_running():  # (a synchronous runner has finished it)
            steps = None if evidence is not None else ADVICE_STEPS
            self.busyStarted.emit("Asking the advisor…" if steps is None else "Asking the advisor", job, steps)

    def cancel(self) -> None:
        if self.suggest_job is not None:
            self.suggest_job.cancel()
            self.stale = True

    def wants_advice(self) -> bool:
        """The page is shown: ask the advisor now if the card is out of date and it is not asked yet."""
        asking = self.suggest_job is not None and self.suggest_job.is_running()
        return self.stale and self.host.scan is not None and not asking

    def busy(self) -> bool:
        return any(job is not None and job.is_running() for job in (self.suggest_job, self.count_job, self.restore_job))

    def _on_suggestion(self, token: int, suggestion: Any, evidence: Any = None, key: str | None = None) -> None:
        if token != self._suggest_token:
            return
        if evidence is not None:
            self._evidence, self._evidence_key = evidence, key
        probe = self.suggestion.probe if (self.suggestion is not None and suggestion.probe is None
                                          and self.suggestion.model == suggestion.model) else None
        if probe is not None:
            suggestion = dataclasses.replace(suggestion, probe=probe)  # keep the verdict already shown
        self.suggestion = suggestion
        self.clear_message()
        self._show_card()
        self._show_choice()

    def _on_suggest_error(self, token: int, message: str) -> None:
        if token == self._suggest_token:
            self.message.emit(f"The advisor could not make a suggestion: {message}", "error")
            if self.suggestion is None:
                self.cardChanged.emit()  # "No suggestion yet"

    def _on_suggest_finished(self, token: int) -> None:
        if token == self._suggest_token:
            self.busyStopped.emit()

    def clear_message(self) -> None:
        self.messageCleared.emit()

    # -- the user's choices --------------------------------------------------------------------------
    def apply(self) -> None:
        """Apply the advisor's suggestion to the project (one undoable step)."""
        if self.suggestion is None:
            return
        self._apply(self.suggestion, f"Apply suggested strategy: {self.suggestion.name}", remember=True,
                    override_user=True)

    def choose(self, approach: int, unfreeze_from: str | None = None) -> None:
        """Switch the project to another approach, keeping the training values the user has."""
        if self.suggestion is None:
            return
        s = variant(self.suggestion, approach, self.host.project, unfreeze_from)
        self._apply(s, f"Choose strategy: {s.name}", remember=False)

    def choose_block(self, block: str | None) -> None:
        """Approach ② learns from ``block`` on (the block list)."""
        self.cut = block
        t = self.host.project.train
        if self.suggestion is not None and block and t.strategy == "partial" and block != t.unfreeze_from:
            self.choose(2, block)

    def set_train(self, key: str, value: Any) -> None:
        """A value typed on the page: the advisor (strategy Auto) keeps it (``user_set``)."""
        t = self.host.project.train
        if getattr(t, key) == value:
            return
        setattr(t, key, value)
        mark_user_set(t, key)
        self._write("train")
        self.appliedChanged.emit()

    def set_device(self, device: str) -> None:
        """The device the advice is for (and training uses). Not a ``user_set`` value: the advisor does
        not choose it. (The page used to pass it through ``mark_user_set``, which raised ValueError in
        the slot: the device changed in the project unannounced and the advisor was not asked again.)"""
        t = self.host.project.train
        if t.device != device:
            t.device = device
            self._write("train")
            self.appliedChanged.emit()
        self.stale = True
        if self.host.scan is not None:
            self.suggestDue.emit(False)

    def set_budget(self, hours: float) -> None:
        self.budget = float(hours)
        self.host.project.ui.strategy_time_budget_hours = float(hours)
        self._write("ui")
        self.stale = True
        if self.host.scan is not None:
            self.suggestDue.emit(False)

    def _write(self, *sections: str) -> None:
        self._own.write(*sections)

    def _apply(self, suggestion: Any, title: str, *, remember: bool, override_user: bool = False) -> None:
        from transfer_studio.errors import UserError

        project = self.host.project
        before = ProjectEdit.snapshot(project, *_EDITED)
        trial = project.copy()
        num_classes = import_core("head").class_count(project, self.host.scan)
        try:
            apply_to_project(trial, suggestion, num_classes, override_user=override_user)
        except UserError as exc:
            self.message.emit(str(exc), "error")
            return
        project.surgery, project.train, project.augment = trial.surgery, trial.train, trial.augment
        if remember:
            saved = dataclasses.asdict(suggestion)
            if saved.get("evidence"):  # the curve's hundred points are not worth keeping in the project
                saved["evidence"] = {k: v for k, v in saved["evidence"].items() if k != "lr_curve"}
            project.ui.strategy_suggestion = saved  # shown again when the project is opened
        after = ProjectEdit.snapshot(project, *_EDITED)
        self._write(*_EDITED, *(("ui",) if remember else ()))
        self.host.push_edit(ProjectEdit(title, before, after, applied=True))
        self.clear_message()
        self._show_choice()
        self.host.status(f"Strategy set: {APPROACHES[suggestion.approach][1].lower()}. The Model page shows "
                         "the new freeze map.")

    # -- what the page shows -------------------------------------------------------------------------
    def card(self) -> text.Card:
        return text.card(self.suggestion)

    def _show_card(self) -> None:
        if self.suggestion is not None:
            self.budget = min(max(round(float(self.suggestion.time_budget_hours), 2), BUDGET_RANGE[0]),
                              BUDGET_RANGE[1])
        self.cardChanged.emit()

    def choice(self) -> Choice:
        t, s = self.host.project.train, self.suggestion
        current = NAME_TO_APPROACH.get(t.strategy)
        blocks: list[str] = []
        cut = None
        if s is not None:
            blocks = (list(s.frozen) + list(s.trainable))[:-1][1:]
            wanted = t.unfreeze_from if t.strategy == "partial" and t.unfreeze_from else default_cut(s)
            cut = wanted if wanted in blocks else (blocks[0] if blocks else None)
        return Choice(current, s is not None, blocks, cut, t.lr, t.body_lr_factor, t.epochs, t.batch_size,
                      text.estimate_notes(s) if s is not None else None)

    def _show_choice(self) -> None:
        """The choice from the project (the page shows ``choice()``), then the counts are due."""
        self.cut = self.choice().cut
        self.choiceChanged.emit()
        self.countDue.emit()

    def applied_text(self) -> str:
        s, t = self.suggestion, self.host.project.train
        if s is None:
            return ""
        same = (t.strategy == s.name and (t.unfreeze_from or None) == (s.unfreeze_from or None)
                and abs(t.lr - s.lr) < 1e-12 and t.epochs == s.epochs and t.batch_size == s.batch_size)
        return "✓ The project uses this suggestion." if same else "The project uses other settings (see below)."

    def empty_texts(self) -> tuple[str, str]:
        """(title, text) of the page without a scanned dataset."""
        root = self.host.project.data.root
        if not root:
            return ("Choose a dataset first",
                    "The advice depends on how many images you have. Choose a dataset on the Data page.")
        return ("Scan the dataset first",
                f"The project's dataset ({root}) has not been read yet: open the Data page to scan it.")

    def _show_empty(self) -> None:
        self.emptied.emit(*self.empty_texts())

    # -- parameter counts ----------------------------------------------------------------------------
    def start_count(self) -> None:
        project = self.host.project
        projects = [project.copy()]
        keys = ["current"]
        if self.suggestion is not None:
            num_classes = import_core("head").class_count(project, self.host.scan)
            for k in APPROACHES:
                p = project.copy()
                try:
                    apply_to_project(p, variant(self.suggestion, k, p, self.cut), num_classes)
                except Exception:  # noqa: BLE001 - a variant that cannot apply just shows no count
                    continue
                projects.append(p)
                keys.append(str(k))
        if self.count_job is not None:
            self.count_job.cancel()
        self._count_token += 1
        token = self._count_token
        self.count_job = self.jobs(
            count_parameters, projects, name="count-params", pass_control=False,
            on_result=lambda r: self._on_counts(token, keys, r),
            on_error=lambda m, tb: self._on_count_error(token, m),
        )

    def _on_counts(self, token: int, keys: list[str], result: list[tuple[int, int]]) -> None:
        if token != self._count_token:
            return
        self.counts = dict(zip(keys, result, strict=True))
        previous, self.previous_trainable = self.previous_trainable, self.counts["current"][0]
        self.countsChanged.emit(previous)

    def _on_count_error(self, token: int, message: str) -> None:
        if token == self._count_token:
            self.countFailed.emit()
            self.message.emit(f"Could not count the trainable parameters: {message}", "warning")

    # -- the rest of the app -------------------------------------------------------------------------
    def load_from_project(self) -> None:
        project = self.host.project
        budget = project.ui.strategy_time_budget_hours
        budget = DEFAULT_BUDGET_HOURS if budget is None else float(budget)
        self.budget = min(max(round(budget, 2), BUDGET_RANGE[0]), BUDGET_RANGE[1])
        self.fieldsChanged.emit()
        self.suggestion = None
        self.previous_trainable = None
        saved = project.ui.strategy_suggestion
        self._restore_token += 1
        if isinstance(saved, dict) and saved.get("model") == project.model.name:
            # Rebuilt as the core's Suggestion in the background: core.strategy imports torch.
            token = self._restore_token
            self.restore_job = self.jobs(
                suggestion_from_dict, dict(saved), name="restore-suggestion", pass_control=False,
                on_result=lambda s: self._on_restored(token, s))
        self.clear_message()
        self.stale = True
        self._on_scan_changed(self.host.scan)

    def _on_restored(self, token: int, suggestion: Any) -> None:
        if token != self._restore_token or self.suggestion is not None:
            return  # another project was opened meanwhile, or the advisor answered first
        self.suggestion = suggestion
        if self.host.scan is not None:
            self._show_card()
            self._show_choice()

    def _on_scan_changed(self, report: Any) -> None:
        if report is None:
            self._show_empty()
            return
        self.contentShown.emit()
        self._show_card()
        self._show_choice()
        self.stale = True
        self.suggestDue.emit(True)

    def _on_project_changed(self, section: str) -> None:
        if self._own.active:
            return
        if section in ("surgery", "train", "augment"):
            if section == "train":
                self.fieldsChanged.emit()
            if self.host.scan is not None:
                self._show_choice()
        elif section == "model":
            self.suggestion = None  # its block names belong to the previous model
            self.previous_trainable = None
            self._show_card()
            self.stale = True
            if self.host.scan is not None:
                self._show_choice()
                self.suggestDue.emit(True)
