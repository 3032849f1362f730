"""The Export page's model without Qt: the settings remembered in the project, where the bundle goes,
the guards before exporting (no run, inside the run folder, a file in the way, replacing a bundle),
the job's answers (verified, failed verification, error, cancel) and the texts of a result.
``core.export.export_run`` is replaced by a fake (the UI tests run the real one); jobs run in the
test's thread."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers.page_models import Jobs, record

from transfer_studio.errors import UserError
from transfer_studio.ui.models import export_model as em
from transfer_studio.ui.models.export_model import ExportModel, check_rows, safe_name, snippets, summary_text


def fake_result(out_dir: str, formats=("safetensors", "onnx"), *, passed: bool = True) -> SimpleNamespace:
    files = {f: str(Path(out_dir) / em.run_folder.BUNDLE_FILES[f]) for f in formats}
    verification = {f: {"max_abs_diff": 1.5e-6, "top1_agree": 9, "images": 9, "passed": passed} for f in formats}
    verification.update(images=9, inputs="val images", tolerance=1e-4, passed=passed)
    if "onnx" in formats:
        verification["onnx"].update(exporter="dynamo", onnxruntime="1.20")
    return SimpleNamespace(out_dir=out_dir, files=files, verification=verification, passed=passed)


class Page:
    def __init__(self) -> None:
        self.source: str | None = None
        self.replace = True
        self.asked: list[Path] = []


@pytest.fixture
def setup(session, monkeypatch, tmp_path):
    calls: list[tuple[str, str, list[str]]] = []
    answers: list = []

    def export(run_dir, out_dir, formats, progress=None, cancel=None):
        calls.append((run_dir, out_dir, formats))
        answer = answers.pop(0) if answers else (fake_result(out_dir, formats), "")
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(em, "run_export", export)
    jobs, page = Jobs(), Page()

    def confirm(out: Path) -> bool:
        page.asked.append(out)
        return page.replace

    model = ExportModel(session, jobs, source=lambda: page.source, has_sources=lambda: page.source is not None,
                        confirm_replace=confirm)
    run = tmp_path / "runs" / "run_1"
    run.mkdir(parents=True)
    changed: list[str] = []
    statuses: list[str] = []
    session.projectChanged.connect(changed.append)
    session.statusMessage.connect(lambda text, _ms: statuses.append(text))
    return SimpleNamespace(host=session, jobs=jobs, page=page, model=model, calls=calls, answers=answers,
                           run=str(run), changed=changed, statuses=statuses, seen=record(model, ExportModel.EVENTS))


def test_settings_come_from_the_project_and_are_remembered(setup, tmp_path):
    s = setup
    s.model.load()
    assert s.model.formats == ["safetensors", "onnx"] and (s.model.folder, s.model.name) == ("", "")
    ui = s.host.project.ui
    ui.export_formats, ui.export_dir, ui.export_name = ["pt2"], str(tmp_path / "out"), "mine"
    s.model.load()  # the bundle is always written; the page's order
    assert s.model.formats == ["safetensors", "pt2"] and s.model.folder == str(tmp_path / "out")
    assert s.seen["resultCleared"] and s.seen["messageCleared"]

    s.page.source = s.run
    assert s.model.edit(formats=["onnx", "pt2"], folder=f"  {tmp_path / 'x'} ", name="")
    assert (ui.export_run, ui.export_dir, ui.export_name) == (s.run, str(tmp_path / "x"), None)
    assert ui.export_formats == ["safetensors", "onnx", "pt2"] and s.changed == ["ui"] and s.host.modified
    assert not s.model.edit(formats=["safetensors", "onnx", "pt2"])  # nothing new: no change announced
    assert s.changed == ["ui"]
    s.model.edit(folder="")
    assert ui.export_dir is None


def test_where_the_bundle_goes(setup, tmp_path, monkeypatch):
    s = setup
    assert s.model.target_text() == "Train a model first: there is no run to export yet."
    assert s.model.bundle_name() == "tiny" and s.model.destination() == str(tmp_path / "exports")
    s.page.source = s.run
    s.host.project.name = "Pets & co"
    assert safe_name("Pets & co") == "Pets-co" and safe_name(" ..") == "model"
    assert s.model.target() == tmp_path / "exports" / "Pets-co-run_1"
    assert s.model.target_text() == f"Writes {tmp_path / 'exports' / 'Pets-co-run_1'}"
    s.model.edit(folder=str(tmp_path / "out"), name="my model")
    assert s.model.target() == tmp_path / "out" / "my-model"
    s.host.path = None
    s.model.edit(folder="")
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: tmp_path / "home"))
    assert s.model.destination() == str(tmp_path / "home" / "Transfer Studio exports")


def test_guards_before_exporting(setup, tmp_path):
    s = setup
    assert s.model.export() is None and s.calls == []  # no run
    s.page.source = s.run
    s.model.edit(folder=s.run, name="inside")
    assert s.model.export() is None
    assert s.seen["message"][-1][:2] == ("The destination is inside the run folder: choose another folder.", "error")
    (tmp_path / "file").write_text("x")
    s.model.edit(folder=str(tmp_path), name="file")
    assert s.model.export() is None and "is a file" in s.seen["message"][-1][0]

    bundle = tmp_path / "out" / "bundle"
    bundle.mkdir(parents=True)
    (bundle / em.run_folder.BUNDLE_META).write_text("{}")
    s.model.edit(folder=str(tmp_path / "out"), name="bundle")
    s.page.replace = False
    assert s.model.export() is None and s.page.asked == [bundle] and s.calls == []
    assert s.statuses[-1] == "Export cancelled: the existing files are kept"
    s.page.replace = True
    assert s.model.export() is not None and s.calls == [(s.run, str(bundle), ["safetensors", "onnx"])]


def test_the_export_job_and_its_answers(setup, tmp_path):
    s = setup
    s.page.source = s.run
    s.model.edit(folder=str(tmp_path / "out"), formats=["pt2"])
    s.jobs.sync = False
    job = s.model.export()
    label, started, steps = s.seen["busyStarted"][-1]
    assert started is job and label == "Exporting run_1" and steps == em.export_steps(["safetensors", "pt2"])
    assert s.model.busy() and not s.model.can_export() and s.model.export() is None  # one at a time
    s.jobs.run(job)
    assert s.model.result is not None and s.seen["resultShown"] == [s.model.result]
    assert s.statuses[-1] == f"Exported to {s.model.result.out_dir}" and not s.model.busy() and s.model.can_export()
    assert s.seen["busyStopped"]

    # a failed verification still shows the numbers, and says so
    s.answers.append((fake_result(str(tmp_path / "out"), passed=False), "export verification failed (onnx)"))
    s.jobs.run(s.model.export())
    assert s.model.result.passed is False
    text, level, _ = s.seen["message"][-1]
    assert level == "error" and text.startswith("Verification failed: export verification failed (onnx).")

    # an error, then a cancel: no result is shown
    s.answers.append(UserError("the run has no weights"))
    s.jobs.run(s.model.export())
    assert s.seen["message"][-1] == ("the run has no weights", "error", "") and s.model.result is None
    job = s.model.export()
    job.cancel()
    s.jobs.run(job)
    assert s.statuses[-1] == "Export cancelled" and s.model.result is None and not s.model.busy()


def test_texts_of_a_result(tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"x" * 2048)
    result = fake_result(str(out))
    rows = check_rows(result, lambda n: f"{n} B")
    assert [(r.file, r.size, r.difference, r.agreement, r.check) for r in rows] == [
        ("model.safetensors", "2048 B", "1.50e-06", "9 / 9", "✓ passed"),
        ("model.onnx", "–", "1.50e-06", "9 / 9", "✓ passed")]  # model.onnx not on disk: no size
    assert rows[1].tip.endswith("exporter: dynamo, onnxruntime 1.20") and rows[0].tip == str(out / "model.safetensors")
    assert summary_text(result).startswith("<b>All 2 exported files match PyTorch</b> on 9 val images")
    texts, shown = snippets(result)
    assert shown == 0 and str(out) in texts["onnx"] and "Predictor.from_bundle" in texts["python"]
    assert texts["pt2"].startswith("# Export with the .pt2 format checked")

    failed = fake_result(str(out), ("safetensors",), passed=False)
    assert check_rows(failed, str)[0].check == "✗ failed" and not check_rows(failed, str)[0].passed
    assert summary_text(failed).startswith("<b>Some exported files disagree with PyTorch</b>")
    texts, shown = snippets(failed)
    assert shown == 1 and texts["onnx"].startswith("# Export with the ONNX format checked")
