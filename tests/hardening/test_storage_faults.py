"""Disk full and read-only folders while checkpointing, exporting and saving a project: a clear
message, the previous files intact, and everything still usable once the fault is gone.

The faults are injected where the app writes (ENOSPC or EROFS raised by the write, after part of
the data reached the temp file); a kill mid-write is the real thing (a SIGKILLed process).
"""

from __future__ import annotations

import errno
import json
import os

import pytest
from helpers.killer import run_cli
from helpers.training import Recorder, make_project

from transfer_studio import config
from transfer_studio.config import Project
from transfer_studio.core import export
from transfer_studio.training import checkpoint as ckpt
from transfer_studio.training import events as ev
from transfer_studio.training import fit

KILLED = -9


class Fault:
    """Make ``config.atomic_write_bytes`` fail for chosen file names: part of the data reaches the
    temp file, then the write raises ``error`` (as a full disk or a read-only remount would)."""

    def __init__(self, monkeypatch, error: int, names: tuple[str, ...], after: int = 0):
        self.error, self.names, self.after, self.armed, self.hits = error, names, after, True, 0
        real_fdopen = os.fdopen
        fault = self

        class Failing:
            def __init__(self, fh):
                self.fh = fh

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.fh.close()

            def write(self, data):
                self.fh.write(data[: len(data) // 3])
                raise OSError(fault.error, os.strerror(fault.error))

        real_write = config.atomic_write_bytes

        def write(path, data):
            name = os.path.basename(path)
            if self.armed and name in self.names:
                self.hits += 1
                if self.hits > self.after:
                    monkeypatch.setattr(config.os, "fdopen", lambda fd, mode: Failing(real_fdopen(fd, mode)))
                    try:
                        return real_write(path, data)
                    finally:
                        monkeypatch.setattr(config.os, "fdopen", real_fdopen)
            return real_write(path, data)

        monkeypatch.setattr(config, "atomic_write_bytes", write)

    def clear(self) -> None:
        self.armed = False


def _snapshot(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _leftovers(folder) -> list[str]:
    return [p.name for p in folder.iterdir() if config.is_temp_name(p.name) or p.name.startswith(".export-")]


# -- export -------------------------------------------------------------------------------------
@pytest.mark.parametrize("error, words", [(errno.ENOSPC, "the disk is full"),
                                          (errno.EROFS, "read-only")])
@pytest.mark.parametrize("failing", ["model.safetensors", "model.json"])
def test_a_failed_export_leaves_the_previous_bundle_untouched(trained_run, tmp_path, monkeypatch, error,
                                                              words, failing):
    out = tmp_path / "bundle"
    export.export_run(trained_run, out, ["safetensors"])
    before = _snapshot(out)
    fault = Fault(monkeypatch, error, (failing,))
    with pytest.raises(export.BundleWriteError) as info:
        export.export_run(trained_run, out, ["safetensors"])
    assert words in str(info.value) and "unchanged" in str(info.value) and str(out) in str(info.value)
    assert _snapshot(out) == before and not _leftovers(out)
    export.load_bundle(out)  # still a complete, loadable bundle
    fault.clear()
    result = export.export_run(trained_run, out, ["safetensors"])  # usable again once there is space
    assert result.passed and not _leftovers(out)


def test_an_export_into_a_folder_that_cannot_be_created_is_a_clear_error(trained_run, tmp_path, monkeypatch):
    def refuse(self, *a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(export.Path, "mkdir", refuse)
    with pytest.raises(export.BundleWriteError, match="read-only"):
        export.export_run(trained_run, tmp_path / "ro" / "bundle", ["safetensors"])


def test_a_killed_export_leaves_the_previous_bundle_complete(trained_run, tmp_path):
    out = tmp_path / "bundle"
    export.export_run(trained_run, out, ["safetensors"])
    before = _snapshot(out)
    model, _ = export.load_bundle(out)
    code = run_cli(["export", trained_run, "--out", out, "--format", "safetensors", "--force"],
                   "write:model.safetensors:1:0.6")
    assert code == KILLED
    assert _snapshot(out) == before  # nothing under a final name changed
    export.load_bundle(out)
    assert _leftovers(out)  # the killed export's staging folder (hidden) ...
    export.export_run(trained_run, out, ["safetensors"])
    assert not _leftovers(out)  # ... is cleared by the next export
    del model


def test_a_bundle_checks_its_weights_against_the_checksum_it_recorded(trained_run, tmp_path):
    out = tmp_path / "bundle"
    export.export_run(trained_run, out, ["safetensors"])
    meta = json.loads((out / "model.json").read_text())
    assert set(meta["checksums"]["sha256"]) == {"model.safetensors"}
    data = bytearray((out / "model.safetensors").read_bytes())
    data[-5] ^= 0x01  # one bit of a weight flips on disk
    (out / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(export.UserError, match="does not match the checksum"):
        export.load_bundle(out)


# -- project files --------------------------------------------------------------------------------
@pytest.mark.parametrize("error, words", [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only")])
def test_a_failed_project_save_keeps_the_saved_file(tmp_path, monkeypatch, error, words):
    path = tmp_path / "p.tsproj"
    Project(name="saved").save(path)
    before = path.read_bytes()
    fault = Fault(monkeypatch, error, ("p.tsproj",))
    with pytest.raises(OSError) as info:
        Project(name="edited").save(path)
    assert info.value.errno == error  # callers can still tell what happened ...
    assert words in str(info.value) and str(path) in str(info.value)  # ... and show one clear sentence
    assert path.read_bytes() == before and not _leftovers(tmp_path)
    fault.clear()
    Project(name="edited").save(path)
    assert Project.load(path).name == "edited"


def test_a_kill_while_the_cli_records_a_run_in_the_project_keeps_the_project_file(tiny_data, tmp_path):
    path = tmp_path / "p.tsproj"
    make_project(tiny_data, strategy="full", epochs=1).save(path)
    before = path.read_bytes()
    code = run_cli(["train", "--project", path, "--out", tmp_path / "run"], "write:p.tsproj:1:0.5")
    assert code == KILLED
    assert path.read_bytes() == before  # the old, complete project file
    assert json.loads((tmp_path / "run" / ckpt.RUN).read_text())["status"] == "finished"


# -- checkpoints ----------------------------------------------------------------------------------
@pytest.mark.parametrize("error, words, fix", [(errno.ENOSPC, "the disk is full", "free some disk space"),
                                               (errno.EROFS, "Read-only", "make the run folder writable")])
def test_a_checkpoint_that_cannot_be_written_ends_the_run_clearly_and_it_resumes_later(
        tiny_data, tmp_path, monkeypatch, error, words, fix):
    fault = Fault(monkeypatch, error, (ckpt.CHECKPOINT,), after=1)  # epoch 1's lands, epoch 2's fails
    rec = Recorder()
    result = fit(make_project(tiny_data, strategy="full", epochs=3), [rec], run_dir=tmp_path / "run")
    assert result.status == "failed" and words in result.message and ckpt.CHECKPOINT in result.message
    assert result.epochs_completed == 1 and "epoch 1 is intact" in result.suggestion
    assert result.suggestion.startswith(fix)
    assert [e.message for e in rec.of(ev.Error)] == [result.message]
    assert ckpt.load_checkpoint(tmp_path / "run" / ckpt.CHECKPOINT)["epoch"] == 1
    assert not _leftovers(tmp_path / "run")
    fault.clear()
    resumed = fit(None, run_dir=tmp_path / "run", resume=True)
    assert resumed.status == "finished" and resumed.epochs_completed == 3
