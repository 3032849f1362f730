"""Machine defaults: stored where the CLI reads them, overridden by environment variables, and
applied only where a project says auto."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from transfer_studio import machine_settings as ms
from transfer_studio.cli import build_parser
from transfer_studio.cli import main as cli_main
from transfer_studio.errors import UserError
from transfer_studio.training import device as tdevice


def test_config_dir_follows_the_platform_rules(tmp_path, monkeypatch):
    assert ms.config_dir({"TS_CONFIG_DIR": str(tmp_path)}) == tmp_path
    monkeypatch.setattr(ms.sys, "platform", "linux")
    assert ms.config_dir({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "transfer-studio"
    assert ms.config_dir({"XDG_CONFIG_HOME": "relative"}) == Path.home() / ".config" / "transfer-studio"
    monkeypatch.setattr(ms.sys, "platform", "win32")
    assert ms.config_dir({"APPDATA": str(tmp_path)}) == tmp_path / "transfer-studio"
    monkeypatch.setattr(ms.sys, "platform", "darwin")
    assert ms.config_dir({}) == Path.home() / "Library" / "Application Support" / "transfer-studio"


def test_save_load_and_reset_round_trip():
    path = ms.settings_path()
    assert not path.exists() and ms.load_file() == ms.DEFAULTS
    ms.save(ms.MachineSettings(device="CUDA:1", num_workers=3, weights_dir="~/w", runs_dir=""))
    data = json.loads(path.read_text())
    assert data == {"device": "cuda:1", "num_workers": 3, "weights_dir": str(Path.home() / "w"), "runs_dir": "",
                    "feature_cache_dir": ""}
    assert ms.load_file() == ms.MachineSettings("cuda:1", 3, str(Path.home() / "w"), "", "")
    ms.reset()
    assert not path.exists() and ms.load_file() == ms.DEFAULTS


def test_environment_overrides_the_file_and_says_so(monkeypatch):
    monkeypatch.delenv("TS_FEATURE_CACHE", raising=False)  # the test session's own cache folder
    ms.save(ms.MachineSettings(device="cpu", num_workers=2))
    monkeypatch.setenv("TS_NUM_WORKERS", "5")
    monkeypatch.setenv("TS_RUNS_DIR", "/data/runs")
    settings, sources = ms.resolved()
    assert settings == ms.MachineSettings(device="cpu", num_workers=5, weights_dir="", runs_dir="/data/runs")
    assert sources == {"device": "file", "num_workers": "TS_NUM_WORKERS", "weights_dir": "default",
                       "runs_dir": "TS_RUNS_DIR", "feature_cache_dir": "default"}
    monkeypatch.setenv("TS_NUM_WORKERS", "auto")
    assert ms.effective().num_workers is None


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "must hold a JSON object"),
    ('{"device": "tpu"}', "device 'tpu' is not one of"),
    ('{"num_workers": -1}', "num_workers -1 is not auto or a whole number"),
    ('{"runs_dir": 5}', "runs_dir must be a folder path"),
])
def test_a_broken_settings_file_is_named_in_one_clear_error(content, fragment):
    path = ms.settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    with pytest.raises(UserError, match=fragment) as info:
        ms.load_file()
    assert str(path) in str(info.value)


def test_file_edits_are_seen_by_the_next_read():
    ms.save(ms.MachineSettings(device="cpu"))
    assert ms.effective().device == "cpu"
    path = ms.settings_path()
    path.write_text(json.dumps({"device": "mps", "future_key": 1}))  # another process edits it
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert ms.effective().device == "mps"


# -- applied only where the project says auto ----------------------------------------------------------
def test_machine_device_applies_only_where_the_project_says_auto(monkeypatch):
    assert tdevice.select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    ms.save(ms.MachineSettings(device="cpu"))
    assert tdevice.select_device("auto") == torch.device("cpu")
    assert tdevice.machine_default("device", "auto") == "cpu"
    assert tdevice.machine_default("device", "mps") == "mps"  # the project's explicit value wins
    if not torch.cuda.is_available():
        ms.save(ms.MachineSettings(device="cuda"))
        with pytest.raises(UserError, match="this machine's default device, set in the settings file"):
            tdevice.select_device("auto")
        assert tdevice.select_device("cpu") == torch.device("cpu")  # explicit: the default is not consulted
        monkeypatch.setenv("TS_DEVICE", "cuda:0")
        with pytest.raises(UserError, match="set in TS_DEVICE"):
            tdevice.select_device("auto")


def test_machine_workers_apply_only_where_the_project_says_auto():
    cpu = torch.device("cpu")
    assert tdevice.loader_settings(cpu, None, cores=2).num_workers == 0  # the built-in rule
    ms.save(ms.MachineSettings(num_workers=3))
    assert tdevice.loader_settings(cpu, None, cores=2).num_workers == 3
    assert tdevice.loader_settings(cpu, 1, cores=2).num_workers == 1  # the project's value wins
    assert tdevice.loader_settings(cpu, 0, cores=2).num_workers == 0


def test_weights_folder_is_where_weights_are_looked_for(tmp_path):
    from transfer_studio.core import catalog, weights

    hub = weights.hub_checkpoint_dir()
    assert hub == Path(torch.hub.get_dir()) / "checkpoints"
    ms.save(ms.MachineSettings(weights_dir=str(tmp_path / "weights")))
    assert weights.hub_checkpoint_dir() == tmp_path / "weights"
    info = catalog.get_info("resnet18")
    expected = Path(info.weights_file)
    assert expected.parent == tmp_path / "weights"
    assert not catalog.get_info("resnet18").weights_available_offline
    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"x")  # offline availability is a file-exists check in that folder
    assert catalog.get_info("resnet18").weights_available_offline


def test_runs_folder_is_where_new_runs_go(tmp_path, monkeypatch):
    from transfer_studio.cli import train as cli_train

    parser, _ = build_parser()
    args = parser.parse_args(["train", str(tmp_path / "data"), "--model", "resnet18", "--strategy", "head"])
    _project, out, resume, _file = cli_train._build(args)
    assert out.parent == Path("runs") and not resume
    monkeypatch.setenv("TS_RUNS_DIR", str(tmp_path / "all-runs"))
    _project, out, _resume, _file = cli_train._build(args)
    assert out.parent == tmp_path / "all-runs" and out.name.startswith("resnet18-")
    args = parser.parse_args(["train", str(tmp_path / "data"), "--model", "resnet18", "--strategy", "head",
                              "--out", str(tmp_path / "mine")])
    assert cli_train._build(args)[1] == tmp_path / "mine"  # --out wins


def test_settings_command_shows_and_changes_the_file(capsys):
    assert cli_main(["settings", "--set", "device=cpu", "--set", "num-workers=2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["settings"]["device"] == "cpu" and doc["settings"]["num_workers"] == 2
    assert doc["sources"]["device"] == "file" and doc["file"] == str(ms.settings_path())
    assert ms.load_file().num_workers == 2
    assert cli_main(["settings", "--set", "device=tpu"]) == 2
    assert "device 'tpu' is not one of" in capsys.readouterr().err
    assert ms.load_file().device == "cpu"  # a refused value changes nothing
    assert cli_main(["settings", "--reset"]) == 0
    assert not ms.settings_path().exists()


def test_feature_cache_folder_reaches_the_feature_store(tmp_path, monkeypatch):
    from transfer_studio.training import feature_store

    monkeypatch.delenv("TS_FEATURE_CACHE", raising=False)
    default = feature_store.default_root()
    ms.save(ms.MachineSettings(feature_cache_dir=str(tmp_path / "features")))
    assert ms.feature_cache_dir() == tmp_path / "features"
    ms.apply_environment()  # what the app and the CLI do at start and after a change
    assert feature_store.default_root() == tmp_path / "features"
    assert ms.resolved()[1]["feature_cache_dir"] == "file"  # set from the file, not a user override
    ms.save(ms.MachineSettings(feature_cache_dir=""))
    ms.apply_environment()
    assert feature_store.default_root() == default  # cleared: back to the store's default
    monkeypatch.setenv("TS_FEATURE_CACHE", str(tmp_path / "mine"))
    ms.save(ms.MachineSettings(feature_cache_dir=str(tmp_path / "features")))
    ms.apply_environment()
    assert feature_store.default_root() == tmp_path / "mine"  # the user's variable wins
    assert ms.resolved()[1]["feature_cache_dir"] == "TS_FEATURE_CACHE"
