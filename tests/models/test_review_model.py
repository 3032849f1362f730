"""The Review labels page's model without Qt (no QApplication): decisions, what applying would change,
corrections through the label journal, undo after a restart, errors. Jobs run synchronously."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.images import make_class_folder

from transfer_studio.config import DataSpec, ModelSpec, Project
from transfer_studio.core import dataset, label_issues
from transfer_studio.core.label_journal import SET_ASIDE_DIR
from transfer_studio.errors import Cancelled, UserError
from transfer_studio.ui.models import review_model as rm

ROOT = Path(__file__).resolve().parents[2]


class Host:
    """What the model needs of the app's state."""

    def __init__(self, project: Project, scan: Any = None):
        self.project, self.scan, self.training_active = project, scan, False
        self.changed: list[str] = []

    def mark_changed(self, section: str) -> None:
        self.changed.append(section)

    def set_scan(self, report: Any) -> None:
        self.scan = report


class Job:
    def __init__(self) -> None:
        self.cancelled = False

    def is_running(self) -> bool:
        return False

    def cancel(self) -> None:
        self.cancelled = True


def run_now(fn, *args, name, on_result, on_error, on_progress, on_cancelled, on_finished, needs_torch=True):
    """``ui.worker.run_task``'s contract, in the calling thread."""
    try:
        on_result(fn(*args, progress=on_progress, cancel=lambda: False))
    except Cancelled:
        on_cancelled()
    except UserError as exc:
        on_error(str(exc), "")
    finally:
        on_finished()
    return Job()


@pytest.fixture
def folder(tmp_path) -> Path:
    return make_class_folder(tmp_path / "d", {"a": 6, "b": 6, "c": 6}, size=16)


def _fake_check(root: Path, doubtful: dict[str, str]) -> tuple[label_issues.LabelCheck, Any]:
    """A label check of ``root`` in which the images in ``doubtful`` (relpath -> suggested class)
    are the most doubtful, and a/a_0000.png has a near-duplicate in b."""
    report = dataset.scan(root)
    k = len(report.classes)
    labels = np.asarray(report.labels)
    p = np.full((len(labels), k), 0.05)
    p[np.arange(len(labels)), labels] = 0.9
    for rel, suggested in doubtful.items():
        i = report.files.index(rel)
        p[i] = 0.05
        p[i, report.classes.index(suggested)] = 0.9
    nb = label_issues.neighbours(np.eye(len(labels), 8, dtype=np.float32), 2)
    nb.pairs = np.array([[report.files.index("a/a_0000.png"), report.files.index("b/b_0000.png")]])
    nb.pair_similarity = np.array([0.99], dtype=np.float32)
    result = label_issues.build_report(report.root, report.classes, report.files, labels, p, nb,
                                       parts=["train"] * len(labels))
    return result, report


def _model(folder: Path, doubtful: dict[str, str]) -> tuple[rm.ReviewModel, Host, list[tuple[str, str]]]:
    result, report = _fake_check(folder, doubtful)
    host = Host(Project(name="r", model=ModelSpec("resnet18", weights="none"), data=DataSpec(root=str(folder))),
                report)
    host.project.data.split = {"train": list(report.files), "val": []}
    model = rm.ReviewModel(host, run_now)
    messages: list[tuple[str, str]] = []
    model.message.connect(lambda text, kind: messages.append((text, kind)))
    model._on_checked((result, report))
    return model, host, messages


def test_decisions_by_key_and_what_applying_would_change(folder) -> None:
    model, _, messages = _model(folder, {"a/a_0001.png": "b", "b/b_0002.png": "c", "c/c_0003.png": "a"})
    assert "3 of 18 images are probably mislabelled" in messages[-1][0]
    # at least REVIEW_MIN listed (here: all 18), most doubtful first, flagged ones first
    assert len(model.items) == 18 and [i.rank for i in model.items] == list(range(1, 19))
    assert {i.file for i in model.items[:3]} == {"a/a_0001.png", "b/b_0002.png", "c/c_0003.png"}
    assert all(i.flagged for i in model.items[:3]) and not any(i.flagged for i in model.items[3:])
    dup = next(i for i in model.items if i.file == "a/a_0000.png")
    assert dup.duplicate_of == ["b/b_0000.png"] and "near-duplicate of b/b_0000.png" in dup.reason()
    assert model.summary() == "No decisions yet."

    first, second, third, fourth = model.items[:4]
    model.decide(rm.ACCEPT)  # the suggestion; moves on to the next image
    assert model.current == 1 and model.target(first) == first.suggested
    model.decide(rm.KEEP)
    model.decide_class_number(3)  # the third class, 'c'
    model.decide(rm.ASIDE)
    assert model.current == 4
    assert model.target(second) is None and model.target(fourth) == ""
    assert model.decision_text(first) == f"→ '{first.suggested}'" and model.decision_text(fourth) == "set aside"
    assert model.decision_text(second) == f"keep '{second.given}'"
    expected_third = None if third.given == "c" else "c"
    assert model.target(third) == expected_third
    moves = 1 + (expected_third is not None)
    assert model.summary() == f"{moves} to another class, 1 set aside, {3 - moves} kept (of 18 listed)"
    assert [(c.file, c.label) for c in model.corrections()] == (
        [(first.file, first.suggested)] + ([(third.file, "c")] if expected_third else []) + [(fourth.file, "")])

    model.select(0)
    model.clear_decision()
    assert model.decision(first) is None
    with pytest.raises(ValueError):
        model.decide("no such class")
    model.step(-5)
    assert model.current == 0
    model.step(100)
    assert model.current == 17


def test_apply_then_undo_after_a_restart(folder) -> None:
    model, host, messages = _model(folder, {"a/a_0001.png": "b", "b/b_0002.png": "c"})
    model.decide(rm.ACCEPT)  # a/a_0001.png -> b
    model.decide(rm.ASIDE)  # b/b_0002.png -> set aside
    model.decide(rm.KEEP)
    model.apply()
    assert (folder / "b" / "a_0001.png").is_file() and not (folder / "a" / "a_0001.png").exists()
    assert (folder / SET_ASIDE_DIR / "b" / "b_0002.png").is_file()
    assert messages[-1] == ("Done: 1 image to another class, 1 set aside. Undo puts them back.", "info")
    # the project and the scan follow: the other pages see the folder as it is now
    assert "b/a_0001.png" in host.scan.files and "b/b_0002.png" not in host.scan.files
    assert "b/a_0001.png" in host.project.data.split["train"] and host.changed == ["data"]
    assert "a/a_0001.png" not in [i.file for i in model.items] and len(model.items) == 16
    assert [(text.split("  ", 1)[1], undoable) for _, text, undoable in model.history_rows()] == [
        ("1 image to another class, 1 set aside", True)]

    # The app restarts: a new model reads the journal, and undoes the correction.
    host2 = Host(host.project, dataset.scan(folder))
    restarted = rm.ReviewModel(host2, run_now)
    restarted.load_history()
    assert len(restarted.undoable()) == 1 and restarted.history_root == str(folder)
    restarted.undo()
    assert (folder / "a" / "a_0001.png").is_file() and (folder / "b" / "b_0002.png").is_file()
    assert not (folder / "b" / "a_0001.png").exists()
    assert "a/a_0001.png" in host2.scan.files and sorted(host2.project.data.split["train"]) == sorted(
        dataset.scan(folder).files)
    assert restarted.undoable() and restarted.undoable()[0].undo_of  # the undo can itself be undone
    rows = restarted.history_rows()
    assert rows[0][1].endswith("undo: 2 images to another class") and rows[1][1].endswith("(undone)")
    restarted.undo()  # nothing left of the first batch to undo twice: undo the undo instead
    assert (folder / "b" / "a_0001.png").is_file()


def test_undo_in_the_same_session_lists_the_images_again(folder) -> None:
    model, _, _ = _model(folder, {"a/a_0001.png": "b"})
    model.decide(rm.ACCEPT)
    model.apply()
    assert len(model.items) == 17
    model.undo()
    assert len(model.items) == 18 and model.item().file == "a/a_0001.png"


def test_nothing_to_apply_no_folder_and_errors_are_messages(folder, tmp_path) -> None:
    model, host, messages = _model(folder, {"a/a_0001.png": "b"})
    model.decide(rm.KEEP)
    model.apply()
    assert messages[-1] == ("Nothing to change: every decision keeps the label.", "info")
    model.undo()
    assert messages[-1] == ("There is nothing to undo.", "info")

    empty = rm.ReviewModel(Host(Project(name="x")), run_now)
    seen: list[tuple[str, str]] = []
    empty.message.connect(lambda text, kind: seen.append((text, kind)))
    assert empty.can_check().startswith("Choose a data folder")
    empty.start_check()
    assert seen == [("Choose a data folder on the Data page first.", "warning")]

    # A check that fails says why (here: a class with a single image), in the model's message.
    small = make_class_folder(tmp_path / "small", {"a": 1, "b": 3}, size=16)
    failing = rm.ReviewModel(Host(Project(name="s", data=DataSpec(root=str(small)))), run_now)
    failing.message.connect(lambda text, kind: seen.append((text, kind)))
    busy: list[bool] = []
    failing.busy.connect(lambda b, _t, _c: busy.append(b))
    failing.start_check()
    assert seen[-1][1] == "error" and "fewer than 2 images" in seen[-1][0]
    assert busy == [True, False] and not failing.running and failing.host.scan is None


def test_the_model_imports_without_qt() -> None:
    code = ("import sys\nclass B:\n def find_spec(self, n, p=None, t=None):\n"
            "  if n.split('.')[0] in ('PySide6', 'shiboken6', 'pyqtgraph'): raise ImportError(n)\n"
            "sys.meta_path.insert(0, B())\nimport transfer_studio.ui.models.review_model as m\n"
            "assert 'PySide6' not in sys.modules\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
