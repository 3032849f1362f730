"""Weights files: safe loading, clear errors for bad files, the hub cache and downloads (loopback only)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import pickle
import socket
import threading
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from transfer_studio.core import catalog, weights
from transfer_studio.core.weights import check_fit, download_file, load_state_dict_file
from transfer_studio.errors import Cancelled, UserError


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


def _assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


# -- reading -------------------------------------------------------------------------------------------
def test_reads_pth_legacy_and_safetensors(tmp_path):
    sd = _tiny().state_dict()
    torch.save(sd, tmp_path / "w.pth")
    torch.save(sd, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    for name in ("w.pth", "legacy.pt", "w.safetensors"):
        _assert_same(load_state_dict_file(tmp_path / name), sd)


@pytest.mark.parametrize("wrap", [
    lambda sd: {"state_dict": sd, "epoch": 3},
    lambda sd: {"model": sd, "optimizer": {"lr": 0.1}},
    lambda sd: {"checkpoint": 1, "model_state_dict": {f"module.{k}": v for k, v in sd.items()}},
    lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()},
])
def test_unwraps_common_checkpoint_layouts(tmp_path, wrap):
    sd = _tiny().state_dict()
    torch.save(wrap(sd), tmp_path / "ckpt.pt")
    _assert_same(load_state_dict_file(tmp_path / "ckpt.pt"), sd)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(UserError, match="not found: .*nope.pth"):
        load_state_dict_file(tmp_path / "nope.pth")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        load_state_dict_file(tmp_path / "empty.pt")


@pytest.mark.parametrize("name", ["w.pth", "legacy.pt", "w.safetensors"])
def test_truncated_file_is_reported_as_corrupt(tmp_path, name):
    sd = _tiny().state_dict()
    full = tmp_path / ("full" + Path(name).suffix)
    if name.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in sd.items()}, str(full))
    else:
        torch.save(sd, full, _use_new_zipfile_serialization=name == "w.pth")
    data = full.read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"truncated or corrupt") as info:
        load_state_dict_file(tmp_path / name)
    assert name in str(info.value) and "\n" not in str(info.value)


def test_random_bytes_are_not_a_weights_file(tmp_path):
    (tmp_path / "noise.pt").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(UserError, match="noise.pt is not a PyTorch weights file, or it is corrupt") as info:
        load_state_dict_file(tmp_path / "noise.pt")
    assert "weights_only" not in str(info.value)  # torch's advice to disable the safe loader stays hidden


def test_pickled_module_is_refused_with_the_reason(tmp_path):
    torch.save(nn.Linear(3, 2), tmp_path / "model.pt")
    with pytest.raises(UserError) as info:
        load_state_dict_file(tmp_path / "model.pt")
    message = str(info.value)
    assert "refused" in message and "torch.nn.modules.linear.Linear" in message
    assert "run code" in message and "state_dict()" in message


class _Payload:
    """Unpickling this creates the marker file: proof that code from a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("fmt", ["torch_zip", "raw_pickle_p2", "raw_pickle_p4"])
def test_code_in_a_pickle_never_runs(tmp_path, fmt):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pth"
    payload = {"weight": torch.zeros(2), "extra": _Payload(marker)}
    if fmt == "torch_zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2 if fmt.endswith("p2") else 4))
    with pytest.raises(UserError, match="refused to load .*run code"):
        load_state_dict_file(path)
    assert not marker.exists()
    # The payload is live: a plain unpickle of the same kind of object does create its file.
    pickle.loads(pickle.dumps(_Payload(tmp_path / "control"))).close()
    assert (tmp_path / "control").exists()


@pytest.mark.parametrize("obj, kind", [
    ([torch.zeros(2)], "a list"),
    (torch.zeros(3), "a tensor"),
    ({"epoch": 3, "lr": 0.1}, "a dict whose values are not tensors"),
])
def test_not_a_state_dict(tmp_path, obj, kind):
    torch.save(obj, tmp_path / "x.pt")
    with pytest.raises(UserError, match=f"not a state dict: it holds {kind}"):
        load_state_dict_file(tmp_path / "x.pt")


def test_empty_state_dict(tmp_path):
    torch.save({}, tmp_path / "x.pt")
    with pytest.raises(UserError, match="empty state dict"):
        load_state_dict_file(tmp_path / "x.pt")


# -- fitting -------------------------------------------------------------------------------------------
def test_check_fit_names_missing_unexpected_and_shapes():
    model = _tiny()
    sd = dict(model.state_dict())
    sd.pop("0.weight")
    sd["head.weight"] = torch.zeros(1)
    sd["3.weight"] = torch.zeros(5, 4)
    with pytest.raises(UserError) as info:
        check_fit(model, sd, source="weights file w.pt", model_name="tiny")
    message = str(info.value)
    assert message.startswith("weights file w.pt does not fit tiny:")
    assert "1 missing keys (0.weight)" in message
    assert "1 unexpected keys (head.weight)" in message
    assert "3.weight is [5, 4] in the file but [2, 4] in the model" in message


def test_check_fit_says_when_nothing_matches():
    other = nn.ModuleDict({"fc": nn.Linear(2, 2)})  # another architecture: no shared names
    with pytest.raises(UserError, match="none of its 2 tensor names match"):
        check_fit(_tiny(), other.state_dict(), source="f", model_name="tiny")


def test_check_fit_tolerates_missing_batchnorm_counter_and_ignored_prefixes():
    model = _tiny()
    sd = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    sd["aux.weight"] = torch.zeros(1)
    fitted = check_fit(model, sd, source="f", model_name="tiny", ignore_prefixes=("aux.",))
    assert "aux.weight" not in fitted and len(fitted) == len(sd) - 1


# -- hub cache and downloads -----------------------------------------------------------------------
def test_hub_cache_follows_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert weights.hub_checkpoint_dir() == tmp_path / "th" / "hub" / "checkpoints"
    assert weights.cache_path_for_url("https://x/models/resnet18-f37072fd.pth") == \
        tmp_path / "th" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert weights.hash_prefix_from_filename("resnet18-f37072fd.pth") == "f37072fd"
    assert weights.hash_prefix_from_filename("weights.pth") is None


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@contextmanager
def serve_directory(root: Path):
    """A loopback HTTP server for ``root`` on a free port, in a thread."""
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("TS_OFFLINE", raising=False)  # tests/conftest.py disables downloads by default


def _served_file(root: Path, size: int = 600_000) -> tuple[bytes, str]:
    data = torch.randint(0, 255, (size,), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    payload = data.numpy().tobytes()
    name = f"blob-{hashlib.sha256(payload).hexdigest()[:8]}.bin"
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(payload)
    return payload, name


def test_download_streams_with_progress_and_checks_the_hash(tmp_path, online):
    payload, name = _served_file(tmp_path / "srv")
    dest = tmp_path / "cache" / name
    calls: list[tuple[int, int]] = []
    with serve_directory(tmp_path / "srv") as base:
        got = download_file(f"{base}/{name}", dest, sha256_prefix=weights.hash_prefix_from_filename(name),
                            progress=lambda d, t: calls.append((d, t)))
    assert got == dest and dest.read_bytes() == payload
    assert calls[0] == (0, len(payload)) and calls[-1] == (len(payload), len(payload))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and len(calls) >= 3
    assert sorted(p.name for p in dest.parent.iterdir()) == [name]  # no temp file left


def test_download_cancel_leaves_nothing(tmp_path, online):
    _payload, name = _served_file(tmp_path / "srv")
    dest = tmp_path / "cache" / name
    calls: list[int] = []
    with serve_directory(tmp_path / "srv") as base, pytest.raises(Cancelled):
        download_file(f"{base}/{name}", dest, progress=lambda d, t: calls.append(d),
                      cancel=lambda: len(calls) >= 2)
    assert 0 < calls[-1] < 600_000  # stopped part-way
    assert list(dest.parent.iterdir()) == []


def test_download_rejects_a_wrong_hash_and_http_errors(tmp_path, online):
    _payload, name = _served_file(tmp_path / "srv")
    dest = tmp_path / "cache" / "resnet18-f37072fd.pth"
    with serve_directory(tmp_path / "srv") as base:
        with pytest.raises(UserError, match="corrupt: its sha256 does not start with f37072fd"):
            download_file(f"{base}/{name}", dest, sha256_prefix="f37072fd")
        with pytest.raises(UserError, match=r"could not download .*missing.pth \(HTTP 404"):
            download_file(f"{base}/missing.pth", dest)
    assert list(dest.parent.iterdir()) == []


def test_ts_offline_forbids_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("TS_OFFLINE", "1")
    with pytest.raises(UserError, match="downloads are disabled"):
        download_file("http://127.0.0.1:9/x.pth", tmp_path / "x.pth")


# -- build_model with the cache and downloads --------------------------------------------------------------
@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test loudly (not as a UserError)."""
    attempts: list[object] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return attempts


def test_missing_pretrained_weights_name_the_file_and_never_touch_the_network(no_network, online, tmp_path):
    info = catalog.get_info("squeezenet1_1")
    assert not info.weights_available_offline
    with pytest.raises(UserError) as err:
        catalog.build_model("squeezenet1_1")  # allow_download defaults to False
    message = str(err.value)
    assert info.weights_file in message and info.weights_file.startswith(str(Path(torch.hub.get_dir())))
    assert "--weights PATH" in message and "allow the download" in message and "\n" not in message
    assert no_network == []


def test_build_model_downloads_into_the_cache_when_allowed(tmp_path, monkeypatch, online):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))  # keep the session's shared cache empty
    info = catalog.get_info("squeezenet1_1")
    cache_file = Path(info.weights_file)
    source = catalog.build_model("squeezenet1_1", "none")
    srv = tmp_path / "srv"
    srv.mkdir()
    torch.save(source.state_dict(), srv / cache_file.name)
    with serve_directory(srv) as base:
        monkeypatch.setenv(catalog.BASE_URL_ENV, base + "/")
        # The served file is not torchvision's real one: its hash cannot match the name's prefix.
        with pytest.raises(UserError, match="corrupt: its sha256"):
            catalog.build_model("squeezenet1_1", allow_download=True)
        assert not cache_file.exists()
        # With the expected prefix taken from the served file, the same path succeeds end to end.
        real = hashlib.sha256((srv / cache_file.name).read_bytes()).hexdigest()[:8]
        monkeypatch.setattr(weights, "hash_prefix_from_filename", lambda name: real)
        calls: list[tuple[int, int]] = []
        model = catalog.build_model("squeezenet1_1", allow_download=True,
                                    progress=lambda d, t: calls.append((d, t)))
    size = cache_file.stat().st_size
    assert calls[-1] == (size, size)
    _assert_same(model.state_dict(), source.state_dict())
    assert catalog.get_info("squeezenet1_1").weights_available_offline
    # Now cached: a second build needs no network at all.
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("network used"))
    _assert_same(catalog.build_model("squeezenet1_1").state_dict(), source.state_dict())
