"""Machine defaults: this computer's preferences that the app and the CLI both honour.

A project file travels between machines; these do not. They fill in only what a project leaves to
"auto" — the training device, the number of data-loading workers — and where files go on this
machine: the pretrained-weights folder, the folder new training runs are written to, and the
feature cache (backbone features kept on disk by ``training.feature_store``). A
project's explicit value always wins (``training.device.machine_default`` holds that rule).

Stored as JSON in the user's configuration folder (``settings_path()``):

- Linux and other XDG systems: ``$XDG_CONFIG_HOME/transfer-studio/settings.json`` (default
  ``~/.config/transfer-studio/settings.json``);
- macOS: ``~/Library/Application Support/transfer-studio/settings.json``;
- Windows: ``%APPDATA%\\transfer-studio\\settings.json``.

``TS_CONFIG_DIR`` replaces that folder (tests, portable installs). Each value can be overridden for
one process with an environment variable (``ENV_VARS``), which wins over the file; a command-line
flag (``train --device``) changes the project and so wins over both. Qt-free: the Settings dialog
edits this file, the CLI reads it (``transfer-studio settings`` shows what applies and why).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer_studio.config import atomic_write_text
from transfer_studio.errors import UserError

APP_DIR_NAME = "transfer-studio"
FILE_NAME = "settings.json"
CONFIG_DIR_ENV = "TS_CONFIG_DIR"
# TS_FEATURE_CACHE is the feature store's own variable (training.feature_store), so one name works
# for both.
ENV_VARS = {"device": "TS_DEVICE", "num_workers": "TS_NUM_WORKERS", "weights_dir": "TS_WEIGHTS_DIR",
            "runs_dir": "TS_RUNS_DIR", "feature_cache_dir": "TS_FEATURE_CACHE"}
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
MAX_WORKERS = 64


@dataclass(frozen=True)
class MachineSettings:
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps — used where a project says "auto"
    num_workers: int | None = None  # None = chosen for the device and core count
    weights_dir: str = ""  # "" = torch hub's checkpoint folder ($TORCH_HOME/hub/checkpoints)
    runs_dir: str = ""  # "" = beside the project file (CLI without a project: ./runs)
    feature_cache_dir: str = ""  # "" = $XDG_CACHE_HOME/transfer-studio/features (~/.cache/...)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DEFAULTS = MachineSettings()
KEYS = tuple(f.name for f in dataclasses.fields(MachineSettings))


def config_dir(env: dict[str, str] | None = None) -> Path:
    """The folder holding settings.json for this user."""
    env = os.environ if env is None else env
    override = env.get(CONFIG_DIR_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        base = env.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(base) / APP_DIR_NAME
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP_DIR_NAME
    xdg = env.get("XDG_CONFIG_HOME", "").strip()
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".config"
    return base / APP_DIR_NAME


def settings_path(env: dict[str, str] | None = None) -> Path:
    return config_dir(env) / FILE_NAME


# -- validation ---------------------------------------------------------------------------------------
def parse_value(key: str, value: Any, origin: str) -> Any:
    """``value`` checked and normalised for ``key``; ``origin`` names where it came from for the error."""
    if key == "device":
        text = str(value if value is not None else "auto").strip().lower() or "auto"
        if not _DEVICE.match(text):
            raise UserError(f"{origin}: device {value!r} is not one of auto, cpu, cuda, cuda:N, mps")
        return text
    if key == "num_workers":
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
            return None
        try:
            number = int(str(value).strip()) if not isinstance(value, bool) else None
        except ValueError:
            number = None
        if number is None or not 0 <= number <= MAX_WORKERS:
            raise UserError(f"{origin}: num_workers {value!r} is not auto or a whole number from 0 to "
                            f"{MAX_WORKERS}")
        return number
    if key in ("weights_dir", "runs_dir", "feature_cache_dir"):
        if value is None:
            return ""
        if not isinstance(value, str):
            raise UserError(f"{origin}: {key} must be a folder path (text), not {value!r}")
        return str(Path(value.strip()).expanduser()) if value.strip() else ""
    raise UserError(f"{origin}: unknown setting {key!r}; known: {', '.join(KEYS)}")


def validated(settings: MachineSettings, origin: str = "settings") -> MachineSettings:
    return MachineSettings(**{k: parse_value(k, getattr(settings, k), origin) for k in KEYS})


# -- the file -----------------------------------------------------------------------------------------
_cache: dict[Path, tuple[tuple[int, int], MachineSettings]] = {}


def load_file(path: Path | None = None) -> MachineSettings:
    """The settings stored in the file (defaults where it says nothing, or when there is no file).

    A file that is not valid JSON or holds an invalid value is a UserError naming the file: the
    user wrote it (or an older version did), and silently ignoring it would train on the wrong
    device. Unknown keys are kept out of the result but not refused (a newer version may add some).
    """
    path = settings_path() if path is None else Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return DEFAULTS
    except OSError as exc:
        raise UserError(f"cannot read the settings file {path}: {exc.strerror or exc}") from None
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"the settings file {path} is not valid JSON ({exc}); fix it, or delete it to "
                        "go back to the defaults") from None
    if not isinstance(data, dict):
        raise UserError(f"the settings file {path} must hold a JSON object; delete it to go back to the "
                        "defaults")
    values = {k: parse_value(k, data[k], f"settings file {path}") for k in KEYS if k in data}
    result = dataclasses.replace(DEFAULTS, **values)
    _cache[path] = (stamp, result)
    return result


def save(settings: MachineSettings, path: Path | None = None) -> Path:
    """Write the settings atomically (values equal to the defaults are written too: the file says
    what this machine uses)."""
    path = settings_path() if path is None else Path(path)
    settings = validated(settings, "settings")
    atomic_write_text(path, json.dumps(settings.to_json(), indent=2) + "\n")
    _cache.pop(path, None)
    return path


def reset(path: Path | None = None) -> Path:
    """Forget every stored value (the file is removed; the defaults apply)."""
    path = settings_path() if path is None else Path(path)
    path.unlink(missing_ok=True)
    _cache.pop(path, None)
    return path


# -- what applies ---------------------------------------------------------------------------------------
def effective(env: dict[str, str] | None = None, path: Path | None = None) -> MachineSettings:
    """The file's values with the environment's overrides applied."""
    return resolved(env, path)[0]


def resolved(env: dict[str, str] | None = None, path: Path | None = None
             ) -> tuple[MachineSettings, dict[str, str]]:
    """(the settings that apply, where each value came from: "default", "file" or the variable)."""
    env = os.environ if env is None else env
    path = settings_path(env) if path is None else path
    stored = load_file(path)
    overrides = env_overrides(env)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in KEYS:
        if key in overrides:
            values[key] = overrides[key]
            sources[key] = ENV_VARS[key]
        else:
            values[key] = getattr(stored, key)
            sources[key] = "file" if getattr(stored, key) != getattr(DEFAULTS, key) else "default"
    return MachineSettings(**values), sources


def env_overrides(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The values set by environment variables (``ENV_VARS``), by key; empty variables do not count,
    nor does a variable ``apply_environment`` set from the file."""
    env = os.environ if env is None else env
    found: dict[str, Any] = {}
    for key, var in ENV_VARS.items():
        raw = env.get(var)
        if raw is not None and raw.strip() != "" and raw != _exported.get(var):
            found[key] = parse_value(key, raw, f"environment variable {var}")
    return found


# Variables this process set from the file (apply_environment), by name: not the user's overrides.
_exported: dict[str, str] = {}


def apply_environment() -> None:
    """Hand the feature-cache folder to ``training.feature_store``, which reads only its
    environment variable (TS_FEATURE_CACHE): set it from the settings file unless the user set it.

    The app and the CLI call this at start and after the settings change. (Once the store asks
    ``feature_cache_dir()`` itself, this can go.)
    """
    var = ENV_VARS["feature_cache_dir"]
    current = os.environ.get(var)
    if current is not None and current.strip() and current != _exported.get(var):
        return  # the user's own value wins
    try:
        value = load_file().feature_cache_dir
    except UserError:
        value = ""  # a broken file is reported where the settings are used
    if value:
        os.environ[var] = _exported[var] = value
    elif var in _exported and os.environ.get(var) == _exported.pop(var):
        del os.environ[var]  # the setting was cleared: back to the store's default


def source_of(key: str) -> str:
    """Where the value that applies for ``key`` came from, for messages: a variable, the file or
    "default"."""
    _settings, sources = resolved()
    src = sources[key]
    return f"the settings file {settings_path()}" if src == "file" else src


def weights_dir() -> Path | None:
    """The configured pretrained-weights folder, or None for torch hub's own."""
    value = effective().weights_dir
    return Path(value) if value else None


def feature_cache_dir() -> Path | None:
    """The configured feature-cache folder, or None for the store's default."""
    value = effective().feature_cache_dir
    return Path(value) if value else None


def runs_root(default: Path) -> Path:
    """Where new training runs go: the configured runs folder, else ``default``."""
    value = effective().runs_dir
    return Path(value) if value else default
