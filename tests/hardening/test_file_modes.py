"""Files the app writes get the permissions any new file gets (the umask), not mkstemp's 0600."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from transfer_studio import config
from transfer_studio.config import Project
from transfer_studio.training import checkpoint as ckpt

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_new_files_follow_the_umask(tmp_path, umask, mask):
    umask(mask)
    expected = 0o666 & ~mask
    project = tmp_path / "p.tsproj"
    Project(name="x").save(project)
    ckpt.save_checkpoint(tmp_path / "run" / ckpt.CHECKPOINT, {"epoch": 1, "w": torch.ones(2)})
    ckpt.save_tensors(tmp_path / "run" / ckpt.BEST, {"w": torch.ones(2)})
    config.atomic_write_text(tmp_path / "export" / "model.json", "{}\n")
    for path in (project, tmp_path / "run" / ckpt.CHECKPOINT, tmp_path / "run" / ckpt.BEST,
                 tmp_path / "export" / "model.json"):
        assert _mode(path) == expected, (path.name, oct(_mode(path)), oct(expected))
    # what plain open() gives, for comparison
    (tmp_path / "plain").write_text("x")
    assert _mode(tmp_path / "plain") == expected


def test_a_replaced_file_keeps_its_permissions(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "p.tsproj"
    Project(name="x").save(path)
    os.chmod(path, 0o640)
    Project(name="y").save(path)
    assert _mode(path) == 0o640
    assert Project.load(path).name == "y"


def test_the_mode_is_set_before_the_file_gets_its_final_name(tmp_path, umask, monkeypatch):
    """At the moment of the rename the temp file already has the final permissions."""
    umask(0o022)
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        seen.append(_mode(src))
        return real_replace(src, dst)

    monkeypatch.setattr(config.os, "replace", replace)
    config.atomic_write_bytes(tmp_path / "a.bin", b"1")
    os.chmod(tmp_path / "a.bin", 0o600)
    config.atomic_write_bytes(tmp_path / "a.bin", b"2")
    assert seen == [0o644, 0o600]  # new: the umask's; replacing a 0600 file: kept, before the rename
    assert (tmp_path / "a.bin").read_bytes() == b"2"


def test_a_very_long_file_name_still_gets_a_temp_name(tmp_path):
    name = "n" * 250 + ".json"
    config.atomic_write_text(tmp_path / name, "{}")
    assert (tmp_path / name).read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_downloaded_weights_follow_the_umask(tmp_path, umask, monkeypatch):
    import io

    from transfer_studio.core import weights

    umask(0o022)
    monkeypatch.setenv("TS_OFFLINE", "0")

    class Response(io.BytesIO):
        headers = {"Content-Length": "4"}

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(weights.urllib.request, "urlopen", lambda *a, **k: Response(b"abcd"))
    dest = weights.download_file("http://example.invalid/w.pth", tmp_path / "w.pth")
    assert _mode(dest) == 0o644 and dest.read_bytes() == b"abcd"
