"""The project file: every choice the user makes, as versioned JSON.

The project file — not a live ``nn.Module`` — is the source of truth. The CLI, the GUI's graph view,
the trainer and the exporter all rebuild the network from it (``core.network.build_network``), so a
saved project and an exported bundle rebuild exactly the same network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import secrets
import stat
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transfer_studio.errors import UserError

SCHEMA_VERSION = 2  # 2: train.user_set (which values the user set explicitly; older files migrate)
PROJECT_SUFFIX = ".tsproj"


@dataclass
class ModelSpec:
    """Which pretrained network, and where its weights come from."""

    name: str = "efficientnet_lite0"
    # "DEFAULT" (pretrained: cache or bundle), "none" (random init) or a path to a state-dict file.
    weights: str = "DEFAULT"


@dataclass
class SurgeryOp:
    """One recorded change to the network, replayed in order by ``core.surgery.apply_ops``.

    op is one of:
      freeze / unfreeze      target: qualified module name, or prefix ending in "*" ("" or "*" = all)
      freeze_before          target: qualified block name; freezes everything before that block
      replace_head           params: {"num_classes": int, "dropout": float?, "hidden": int?}
      replace                target: module name; params: {"layer": {"type": ..., **kwargs}}
      insert_after           target: module name; params: {"layer": {"type": ..., **kwargs}}
      remove                 target: module name (replaced by Identity)
    """

    op: str
    target: str = ""
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataSpec:
    root: str = ""
    val_split: float = 0.2
    test_split: float = 0.0
    seed: int = 0
    # The frozen split, once made: {"train": [relpath, ...], "val": [...], "test": [...]} relative to
    # root, so a resumed or re-evaluated run sees the same images. None until the first scan/split.
    split: dict[str, list[str]] | None = None
    classes: list[str] = field(default_factory=list)


@dataclass
class AugmentSpec:
    preset: str = "light"  # none | light | medium | strong
    # Per-transform overrides, e.g. {"hflip": {"enabled": true, "p": 0.5}, "color_jitter": {"strength": 0.2}}
    params: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class TrainSpec:
    strategy: str = "auto"  # auto | head | partial | full
    # For "partial": the first block (qualified name) that is trained; earlier ones stay frozen.
    unfreeze_from: str | None = None
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3  # learning rate of the new head
    body_lr_factor: float = 0.1  # pretrained body's lr = lr * factor (discriminative learning rates)
    head_epochs: int = 1  # partial strategy: epochs of head-only training before unfreezing
    weight_decay: float = 1e-4
    scheduler: str = "cosine"  # cosine | onecycle | none
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    balance: str = "auto"  # auto | weighted_loss | sampler | none
    early_stopping_patience: int = 0  # 0 = off
    cache_features: bool = True  # head strategy: cache backbone features
    cache_passes: int = 2  # augmented passes cached per image (0 = no augmentation)
    image_size: int | None = None  # None = the model's own default
    device: str = "auto"  # auto | cpu | cuda | mps
    amp: bool = True  # mixed precision on CUDA
    seed: int = 0
    num_workers: int | None = None  # None = chosen for the device and core count
    allow_oom_retry: bool = False
    # Several processes (torchrun): BatchNorm statistics computed over every process's batch
    # (torch.nn.SyncBatchNorm, CUDA/NCCL only); no effect in a single process.
    sync_batchnorm: bool = False
    # BatchNorm statistics while fine-tuning: "auto" keeps a pretrained network's (Keras' transfer-learning
    # advice: batch statistics of small batches wreck a head fitted on the pretrained ones), "frozen", "train".
    bn_stats: str = "auto"
    # Values the user set explicitly (names from EXPLICIT_FIELDS): the advisor's suggestion, applied by
    # strategy "auto" or anything else, never replaces them (``core.strategy.apply_suggestion``).
    user_set: list[str] = field(default_factory=list)


# What "user_set" may name: training values, the augmentation (preset and overrides) and the freeze
# map (freeze / unfreeze / freeze_before surgery).
EXPLICIT_FIELDS = ("epochs", "batch_size", "lr", "body_lr_factor", "head_epochs", "warmup_epochs",
                   "label_smoothing", "augment", "freeze")


def mark_user_set(train: TrainSpec, *names: str) -> None:
    """Record that the user chose these values (they then win over the advisor's)."""
    for name in names:
        if name not in EXPLICIT_FIELDS:
            raise ValueError(f"not an explicit setting: {name}")
        if name not in train.user_set:
            train.user_set.append(name)


def clear_user_set(train: TrainSpec, *names: str) -> None:
    """Give these values back to the advisor (all of them without names)."""
    train.user_set[:] = [n for n in train.user_set if names and n not in names]


@dataclass
class RunRecord:
    """A training run the project remembers (metrics summary; full history lives in run_dir)."""

    run_dir: str
    created: str = ""
    model: str = ""
    strategy: str = ""
    epochs_completed: int = 0
    best_epoch: int | None = None
    val_accuracy: float | None = None
    val_loss: float | None = None
    duration_s: float = 0.0
    status: str = "finished"  # running | finished | stopped | failed


@dataclass
class UiState:
    """What the app's pages remember in the project file (its ``ui`` object): view state and choices
    that are not edits of the network or the training. Saved flat, as the free-form dict it used to be
    (unset values left out), so old files load and older versions read new ones. Keys this version does
    not know are kept in ``extra`` and written back; a known key whose value has the wrong type (a
    hand-edited file) is dropped on load (of a list, the items of the wrong type). Pages are told of changes through the app's signals
    (``AppState.runSelected``, ``evaluateRequested``, ``projectChanged("ui")``), not by polling this.

    Dict-style access (``ui["selected_run"]``, ``get``, ``setdefault``, ``pop``, ``update``, ``in``)
    maps to the fields (type-checked) and ``extra``; ``key in ui`` means set (not the field's default).
    It remains for code not yet moved to the attributes.
    """

    selected_run: str | None = None  # the Train page's latest finished run: other pages follow it
    evaluate_run: str | None = None  # the Evaluate page's run (the Runs page asks for one)
    evaluate_data: str | None = None  # evaluated on this folder instead of the run's own split
    try_run: str | None = None
    try_images: list[str] = field(default_factory=list)
    try_top_k: int | None = None
    try_heatmap: bool = False
    export_run: str | None = None
    export_formats: list[str] | None = None
    export_dir: str | None = None
    export_name: str | None = None
    augment_images: list[str] = field(default_factory=list)  # the Augment page's preview pictures
    strategy_time_budget_hours: float | None = None
    strategy_suggestion: dict[str, Any] | None = None  # the last applied suggestion (core.strategy)
    # run dir -> core.runs.launch_settings at its start (the Train page)
    train_launch_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # keys of other versions, kept as they were

    # -- the file's form ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The flat JSON object saved as the project's ``ui`` (unset fields left out)."""
        out = json.loads(json.dumps(self.extra))
        for f in _ui_fields():
            value = getattr(self, f.name)
            if value != _ui_default(f):
                out[f.name] = json.loads(json.dumps(value))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UiState:
        if not isinstance(data, dict):
            raise TypeError(f"ui must be an object, got {type(data).__name__}")
        state, hints = cls(), _hints(cls)
        for key, value in data.items():
            if key in _UI_NAMES:
                value = _lenient(value, hints.get(key, Any))
                if value is not _DROP:
                    setattr(state, key, json.loads(json.dumps(value)))
            else:
                state.extra[key] = json.loads(json.dumps(value))
        return state

    # -- dict-style access ---------------------------------------------------------------------------
    def __contains__(self, key: object) -> bool:
        if key in _UI_NAMES:
            return getattr(self, str(key)) != _ui_default(_UI_FIELDS[str(key)])
        return key in self.extra

    def __getitem__(self, key: str) -> Any:
        """A field's value, set or not (a field always exists); an unknown key's, else KeyError."""
        return getattr(self, key) if key in _UI_NAMES else self.extra[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default  # noqa: SIM401 - this is get()

    def __setitem__(self, key: str, value: Any) -> None:
        if key in _UI_NAMES:
            if not _fits(value, _hints(UiState).get(key, Any)):
                raise TypeError(f"ui.{key} must be {_describe(_hints(UiState)[key])} (got {_short_repr(value)})")
            setattr(self, key, value)
        else:
            self.extra[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.reset(key)

    def pop(self, key: str, *default: Any) -> Any:
        if key not in self:
            if default:
                return default[0]
            raise KeyError(key)
        value = self[key]
        self.reset(key)
        return value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            if key in _UI_NAMES and isinstance(getattr(self, key), (list, dict)) and default == getattr(self, key):
                return getattr(self, key)  # an empty list or dict field: the field's own, to fill in place
            self[key] = default
        return self[key]

    def update(self, values: dict[str, Any] | None = None, /, **more: Any) -> None:
        for key, value in {**(values or {}), **more}.items():
            self[key] = value

    def reset(self, key: str) -> None:
        """Back to unset (a field's default; an unknown key removed)."""
        if key in _UI_NAMES:
            setattr(self, key, _ui_default(_UI_FIELDS[key]))
        else:
            self.extra.pop(key, None)


_DROP = object()


def _lenient(value: Any, hint: Any) -> Any:
    """``value`` when it fits ``hint``; a list's items that fit when a list is wanted; else ``_DROP``."""
    if _fits(value, hint):
        return value
    if isinstance(value, list):
        for h in (hint, *typing.get_args(hint)):
            if typing.get_origin(h) is list:
                (item,) = typing.get_args(h) or (Any,)
                return [v for v in value if _fits(v, item)]
    return _DROP


def _ui_fields() -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(UiState) if f.name != "extra"]


def _ui_default(f: dataclasses.Field[Any]) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


_UI_FIELDS = {f.name: f for f in _ui_fields()}
_UI_NAMES = frozenset(_UI_FIELDS)


@dataclass
class Project:
    name: str = "Untitled"
    model: ModelSpec = field(default_factory=ModelSpec)
    surgery: list[SurgeryOp] = field(default_factory=list)
    data: DataSpec = field(default_factory=DataSpec)
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    runs: list[RunRecord] = field(default_factory=list)
    # What the GUI's pages remember (selected run, export destination, ...), saved as a flat object.
    ui: UiState = field(default_factory=UiState)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if isinstance(self.ui, dict):  # Project(ui={...}): the file's form
            self.ui = UiState.from_dict(self.ui)

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ui"] = self.ui.to_dict()
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Project:
        if not isinstance(data, dict):
            raise UserError("project file is not a JSON object")
        version = data.get("schema_version", 0)
        if not isinstance(version, int):
            raise UserError(f"project file has an invalid schema_version: {version!r}")
        if version > SCHEMA_VERSION:
            raise UserError(
                f"project file was written by a newer Transfer Studio (schema {version}; this version "
                f"reads up to {SCHEMA_VERSION}). Update Transfer Studio to open it."
            )
        if version < 2:
            data = _migrate_v1(data)
        try:
            project = _from_dict(cls, data)
        except (TypeError, ValueError, KeyError) as exc:
            raise UserError(f"project file has an invalid structure: {exc}") from exc
        check_paths(project)
        return project

    def copy(self) -> Project:
        return Project.from_dict(json.loads(self.to_json()))

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(Path(path), self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Project:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"project file not found: {path}")
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"project file {path} is corrupt (not valid JSON: {exc})") from exc
        return cls.from_dict(data)




def _migrate_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 had no record of which values the user set. A value that differs from the default was
    set by someone — the user, or a suggestion they applied — so it is kept (user-wins); freeze
    surgery counts as the user's unless it is the single op a suggestion writes."""
    data = json.loads(json.dumps(data))  # a copy
    train = data.get("train")
    if not isinstance(train, dict):
        return data
    defaults = TrainSpec()
    marked = [name for name in EXPLICIT_FIELDS[:-2] if name in train and train[name] != getattr(defaults, name)]
    augment = data.get("augment")
    if isinstance(augment, dict) and (augment.get("preset", "light") != AugmentSpec().preset or augment.get("params")):
        marked.append("augment")
    surgery = data.get("surgery")
    if isinstance(surgery, list):
        freeze = [op for op in surgery if isinstance(op, dict) and op.get("op") in ("freeze", "unfreeze", "freeze_before")]
        from_suggestion = (len(freeze) == 1 and surgery and surgery[0] is freeze[0]
                           and (freeze[0].get("op") == "freeze_before"
                                or (freeze[0].get("op") == "freeze" and freeze[0].get("target") == "*")))
        if freeze and not from_suggestion:
            marked.append("freeze")
    train.setdefault("user_set", marked)
    data["schema_version"] = 2
    return data


def _from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build a dataclass from plain data; unknown keys are ignored (forward compatible). Every value
    must have its field's type (TypeError naming the field otherwise): a hand-edited file fails
    here, with a message, rather than later inside the app."""
    if not isinstance(data, dict):
        raise TypeError(f"{where or cls.__name__} must be an object, got {type(data).__name__}")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        name = f"{where}.{f.name}" if where else f.name
        sub = _FIELD_TYPES.get((cls.__name__, f.name))
        if sub is not None and value is not None:
            if isinstance(sub, list):
                if not isinstance(value, list):
                    raise TypeError(f"{name} must be a list")
                value = [_from_dict(sub[0], v, f"{name}[{i}]") for i, v in enumerate(value)]
            elif sub is UiState:  # lenient: page state never keeps a project from opening
                value = UiState.from_dict(value)
            else:
                value = _from_dict(sub, value, name)
        else:
            problem = _type_problem(value, hints.get(f.name, Any))
            if problem:
                raise TypeError(f"{name} must be {problem} (got {_short_repr(value)})")
        kwargs[f.name] = value
    return cls(**kwargs)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        try:
            _HINTS[cls] = typing.get_type_hints(cls)
        except (NameError, TypeError):  # an annotation only a type checker resolves: not checked
            _HINTS[cls] = {}
    return _HINTS[cls]


def _type_problem(value: Any, hint: Any) -> str | None:
    """None when ``value`` (plain JSON data) fits the type ``hint``; else what it should be."""
    return None if _fits(value, hint) else _describe(hint)


def _fits(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, o) for o in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint in (int, float):
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    if hint in (bool, str):
        return isinstance(value, hint)
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if origin is dict:
        _key, item = typing.get_args(hint) or (str, Any)
        return isinstance(value, dict) and all(isinstance(k, str) and _fits(v, item) for k, v in value.items())
    if dataclasses.is_dataclass(hint):
        return isinstance(value, hint)
    return True  # a type this check does not know: left to the code that uses the field


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(o) for o in typing.get_args(hint))
    if origin is list:
        return f"a list of {_plural(typing.get_args(hint))}"
    if origin is dict:
        return f"an object of {_plural(typing.get_args(hint)[1:])}"
    names = {type(None): "null", bool: "true or false", int: "a whole number", float: "a number",
             str: "a string"}
    return names.get(hint, "an object")


def _plural(args: tuple) -> str:
    if not args or args[0] is Any:
        return "values"
    text = _describe(args[0])
    return {"a string": "strings", "a number": "numbers", "a whole number": "whole numbers"}.get(text, "values")


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_paths(project: Project) -> None:
    """UserError when the project's split names files outside its data folder or a class name is
    not a plain folder name: what the app reads is always under ``data.root``."""
    for name in project.data.classes:
        if not _plain_name(name):
            raise UserError(f"project file has an invalid class name {_short_repr(name)}: a class is the "
                            "name of one folder in the data folder")
    for part, paths in (project.data.split or {}).items():
        for rel in paths:
            if not is_inside_relpath(rel):
                raise UserError(f"project file's data split ({part}) names {_short_repr(rel)}, which is outside "
                                "the data folder: a split lists image paths relative to the data folder")


def _plain_name(name: str) -> bool:
    seps = ("/", "\\", ":") if os.name == "nt" else ("/",)
    return name not in ("", ".", "..") and "\0" not in name and not any(s in name for s in seps)


def is_inside_relpath(rel: str) -> bool:
    """True for a relative path (``/``-separated, as a scan records it) that stays inside its folder."""
    if not rel or "\0" in rel or rel.startswith("/") or (os.name == "nt" and (":" in rel or rel.startswith("\\"))):
        return False
    parts = rel.replace("\\", "/").split("/") if os.name == "nt" else rel.split("/")
    return ".." not in parts and all(parts)


_FIELD_TYPES: dict[tuple[str, str], Any] = {
    ("Project", "model"): ModelSpec,
    ("Project", "surgery"): [SurgeryOp],
    ("Project", "data"): DataSpec,
    ("Project", "augment"): AugmentSpec,
    ("Project", "train"): TrainSpec,
    ("Project", "runs"): [RunRecord],
    ("Project", "ui"): UiState,
}


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder, then os.replace: never a half-written file.

    The file gets the permissions any new file would get (the umask applies: the temp file is
    created with mode 0666 like ``open(path, "w")``, not mkstemp's 0600); a file that already
    exists keeps its permission bits. Both are set before the replace, so the final name never
    shows other permissions. The folder is synced after the replace, so the new name survives a
    power cut.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = create_temp_file(path)
    except WriteError:
        raise
    except OSError as exc:
        raise WriteError.wrap(exc, path) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            keep_mode(fh.fileno(), path)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise WriteError.wrap(exc, path) from exc
        raise
    fsync_dir(path.parent)


class WriteError(OSError):
    """A file could not be written; the file under its name, if any, is unchanged.

    An OSError with the original errno and strerror (callers that test ``errno == ENOSPC`` keep
    working) whose text is one sentence for a person: which file, and why in plain words.
    """

    @classmethod
    def wrap(cls, exc: OSError, path: Path) -> WriteError:
        return cls(exc.errno, exc.strerror or str(exc), str(path))

    @property
    def reason(self) -> str:
        if self.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
            return "the disk is full"
        if self.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return "the folder is read-only or not yours to write"
        return (self.strerror or "an unknown error").lower()

    def __str__(self) -> str:
        return f"could not write {self.filename}: {self.reason} (a previous file of that name is unchanged)"



TEMP_SUFFIX = ".tmp"
_NAME_ROOM = 200  # characters of the final name kept in a temp name (file names are <= 255 bytes)


def temp_name(path: Path, suffix: str = TEMP_SUFFIX) -> Path:
    """A fresh hidden name next to ``path``: ``.<name>.<random>.tmp`` (see ``is_temp_name``)."""
    return path.with_name(f".{path.name[:_NAME_ROOM]}.{secrets.token_hex(4)}{suffix}")


def is_temp_name(name: str) -> bool:
    """True for a name ``temp_name`` makes: what a write killed before its rename leaves behind."""
    stem, dot, suffix = name.rpartition(".")
    head, _, token = stem.rpartition(".")
    return (name.startswith(".") and bool(dot) and f".{suffix}" in (TEMP_SUFFIX, ".part") and len(head) > 1
            and len(token) == 8 and all(c in "0123456789abcdef" for c in token))


def create_temp_file(path: Path, suffix: str = TEMP_SUFFIX) -> tuple[int, str]:
    """Create a new, empty temp file next to ``path`` for writing; returns (fd, name).

    Mode 0666 before the umask, exactly what ``open(path, "w")`` would create (mkstemp's 0600
    would make every file the app writes private to its owner).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        name = temp_name(path, suffix)
        try:
            return os.open(name, flags, 0o666), str(name)
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temp file next to {path}")


def keep_mode(fd: int, path: Path) -> None:
    """Give the open temp file ``fd`` the permission bits of the file it will replace, if any."""
    if not hasattr(os, "fchmod"):
        return
    try:
        st = os.stat(path)
    except OSError:
        return  # a new file: the umask already applied
    if stat.S_ISREG(st.st_mode):
        os.fchmod(fd, stat.S_IMODE(st.st_mode))


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where folders cannot be opened."""
    if os.name != "posix":
        return
    try:
        dfd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
