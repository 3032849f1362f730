"""`transfer-studio scan` and `suggest` through the real CLI entry point."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from helpers.images import make_class_folder, make_digits_folder

from transfer_studio.cli import main
from transfer_studio.cli import scan as scan_cli
from transfer_studio.core import strategy


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~20 digits per class plus three broken files."""
    root = make_digits_folder(tmp_path_factory.mktemp("cli") / "digits", per_class=20, size=16)
    (root / "3" / "empty.png").write_bytes(b"")
    (root / "4" / "fake.jpg").write_text("not a picture")
    data = (root / "5" / "5_000.png").read_bytes()
    (root / "5" / "cut.png").write_bytes(data[: len(data) // 2])
    return root


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_scan_json(digits: Path, capsys) -> None:
    code, out, err = _run(capsys, "scan", str(digits), "--json")
    assert code == 0
    doc = json.loads(out)  # exactly one JSON document
    assert {"root", "layout", "classes", "counts", "num_images", "skipped", "duplicates", "warnings"} <= set(doc)
    assert doc["root"] == str(digits.resolve()) and doc["layout"] == "flat"
    assert doc["classes"] == [str(i) for i in range(10)]
    assert doc["counts"] == {str(i): 20 for i in range(10)} and doc["num_images"] == 200
    assert sorted(s["path"] for s in doc["skipped"]) == ["3/empty.png", "4/fake.jpg", "5/cut.png"]
    assert all(s["reason"] for s in doc["skipped"]) and doc["duplicates"] == []
    assert "scanning" not in err


def test_scan_human_output_and_progress(digits: Path, capsys, monkeypatch) -> None:
    code, out, _ = _run(capsys, "scan", str(digits))
    assert code == 0
    assert "10 classes, 200 images" in out and "Skipped 3 file(s):" in out
    assert "4/fake.jpg: not an image" in out
    monkeypatch.setattr(scan_cli.StderrProgress.__init__, "__defaults__", ("scanning", None, 0.0, 0.0))
    code, out, err = _run(capsys, "scan", str(digits))
    assert code == 0 and "scanning 203/203 files" in err  # progress goes to stderr in human mode only
    code, out, err = _run(capsys, "scan", str(digits), "--json")
    assert code == 0 and "scanning" not in err and json.loads(out)["num_images"] == 200


def test_progress_line_is_throttled_and_delayed() -> None:
    stream = io.StringIO()
    p = scan_cli.StderrProgress(stream=stream, delay=3600)
    p(5, 10)
    p(10, 10)
    assert stream.getvalue() == ""  # a quick scan shows nothing
    p = scan_cli.StderrProgress(stream=stream, delay=0, interval=3600)
    p(1, 10)
    p(2, 10)  # within the interval: skipped
    p(10, 10)  # the final count is always shown
    assert stream.getvalue() == "scanning 1/10 files\nscanning 10/10 files\n"


def test_scan_split_layout_json(tmp_path: Path, capsys) -> None:
    make_class_folder(tmp_path / "d" / "train", {"cat": 4, "dog": 3}, size=8)
    make_class_folder(tmp_path / "d" / "val", {"cat": 1, "dog": 2}, size=8, seed=1)
    code, out, _ = _run(capsys, "scan", str(tmp_path / "d"), "--json")
    doc = json.loads(out)
    assert code == 0 and doc["layout"] == "split" and doc["counts"] == {"cat": 5, "dog": 5}
    assert doc["split_counts"] == {"train": {"cat": 4, "dog": 3}, "val": {"cat": 1, "dog": 2}}


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "data folder not found"),
        (lambda p: make_class_folder(p, {"only": 2}, size=8), "only one class"),
        (lambda p: (make_class_folder(p / "train", {"a": 1, "b": 1}, size=8),
                    make_class_folder(p / "val", {"a": 1}, size=8)), "different classes"),
    ],
    ids=["missing", "one-class", "split-mismatch"],
)
def test_scan_errors_exit_2_with_one_line(tmp_path: Path, capsys, setup, message: str) -> None:
    setup(tmp_path / "data")
    code, out, err = _run(capsys, "scan", str(tmp_path / "data"), "--json")
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_suggest_json_on_a_real_folder(digits: Path, capsys) -> None:
    code, out, _ = _run(capsys, "suggest", str(digits), "--model", "efficientnet_lite0", "--device", "cpu",
                        "--time-budget", "1000", "--image-size", "64", "--json")
    assert code == 0
    doc = json.loads(out)
    assert {"approach", "name", "frozen", "trainable", "lr", "epochs", "batch_size", "augment",
            "estimated_hours", "reason"} <= set(doc)
    assert (doc["approach"], doc["name"]) == (1, "head")  # ~20 images per class
    assert doc["trainable"] == ["_fc"] and doc["frozen"][:3] == ["_conv_stem", "_bn0", "_blocks.0"]
    assert "about 20 images per class" in doc["reason"] and doc["time_budget_hours"] == 1000
    # the estimate is a timed trial on this device, in seconds with a range, for each approach
    assert doc["estimate_source"] == "trial" and doc["estimated_seconds"] > 0
    low, high = doc["estimate_range_s"]
    assert low < doc["estimated_seconds"] < high and set(doc["estimates_s"]) == {"head", "partial", "full"}
    assert doc["evidence"]["folds"] >= 2 and 0 <= doc["evidence"]["cv_accuracy"] <= 1


def test_suggest_human_output_and_step_down(digits: Path, capsys, monkeypatch) -> None:
    # Pretend the data is plentiful (and the device slow) to see the step-down through the CLI.
    monkeypatch.setattr(strategy, "HEAD_MAX_PER_CLASS", 5)
    monkeypatch.setattr(strategy, "HEAD_MAX_TOTAL", 10)
    monkeypatch.setattr(strategy, "FULL_MIN_PER_CLASS", 10)
    monkeypatch.setattr(strategy, "FULL_MIN_TOTAL", 100)
    monkeypatch.setitem(strategy._forward_cache, ("resnet18", "cpu"), (0.5, "measured"))
    code, out, _ = _run(capsys, "suggest", str(digits), "--model", "resnet18", "--device", "cpu",
                        "--time-budget", "0.5", "--quick")
    assert code == 0
    assert out.startswith("Suggested strategy 1 (head)")
    assert "steps down to head" in out and "Frozen (10): conv1, bn1" in out and "Trained (1): fc" in out
    code, out, _ = _run(capsys, "suggest", str(digits), "--model", "resnet18", "--device", "cpu",
                        "--time-budget", "100", "--quick")
    assert code == 0 and out.startswith("Suggested strategy 3 (full)")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "resnet_eighteen"], "resnet"),
        (["--model", "resnet18", "--time-budget", "-1"], "time budget"),
        (["--model", "resnet18", "--time-budget", "soon"], "invalid float"),
        (["--model", "resnet18", "--device", "tpu"], "invalid choice"),
    ],
    ids=["unknown-model", "negative-budget", "budget-not-a-number", "bad-device"],
)
def test_suggest_bad_input_exits_2(digits: Path, capsys, args: list[str], message: str) -> None:
    code, out, err = _run(capsys, "suggest", str(digits), *args, "--json")
    assert code == 2 and out == "" and message in err
    assert "Traceback" not in err
