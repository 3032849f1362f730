"""The Augment page's model: the project's augmentation, its controls' values and texts, the preview.

The project keeps a preset plus only the values that differ from it (``project.augment``: preset and
params). The transforms and their editable values come from ``core.augment.preset_params`` (one group
per transform: enabled, then its strength or probability values), described in a job with a check of
the saved values (``augment_info``: the core imports torch). A preset chosen, a value changed and
"Reset to preset" are undoable ``ProjectEdit``s (the ``augment`` section, and ``train.user_set``:
values chosen here are the user's, so strategy Auto keeps them); one value changed again and again (a
slider dragged) is one undo step. The preview (``render_previews``: for each image, the view
validation gets and a few augmented training versions) is a job, numbered so a newer one voids the
older's answer; the page converts the pictures (``convert``, on the worker thread) and owns the short
delay before rendering (``previewDue``).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transfer_studio.config import AugmentSpec, Project, mark_user_set
from transfer_studio.errors import Cancelled, UserError
from transfer_studio.ui.models.base import Event, Host, Job, JobRunner, OwnWrites, ProjectEdit
from transfer_studio.ui.runtime import import_core

PRESET_TEXT = {
    "none": "none — the images as they are",
    "light": "light — flips and random crops",
    "medium": "medium — + colour changes and small rotations",
    "strong": "strong — + automatic augmentation and erasing",
}
DEFAULT_PRESET = "light"
MAX_IMAGES = 4  # rows of the preview grid
DEFAULT_COUNT = 6  # augmented versions per image
PERCENT_KEYS = ("p", "strength", "scale_min", "max_area")  # shares shown as percentages
EMPTY_TITLE = "No images to preview"
EMPTY_TEXT = "Choose a dataset on the Data page, or pick a few images of your own."
_EDITED = ("augment", "user_set")  # the project parts an edit here changes


@dataclass
class PreviewRow:
    path: str
    original: Any  # what validation sees (resize + centre crop), converted; None when unreadable
    samples: list[Any] = field(default_factory=list)  # the augmented training versions, converted
    error: str | None = None


# -- background jobs ----------------------------------------------------------------------------------
def render_previews(project: Project, paths: list[str], n: int, seed: int,
                    convert: Callable[[Any], Any] = lambda array: array, progress: Any = None,
                    cancel: Any = None) -> list[PreviewRow]:
    """For each image: the validation view and ``n`` augmented training versions, each an HxWx3 uint8
    array passed through ``convert`` (worker thread). An unreadable image is a row with its error."""
    augment, network = import_core("augment"), import_core("network")
    load_rgb = import_core("imageio").load_rgb
    preprocess = network.project_preprocess(project)
    augment.resolve_params(project.augment)  # a bad saved value: one clear UserError before any work
    evaluation = augment.build_transform(preprocess, None, train=False)
    rows: list[PreviewRow] = []
    for k, path in enumerate(paths):
        if cancel is not None and cancel():
            raise Cancelled()
        try:
            image = load_rgb(path)
        except UserError as exc:
            rows.append(PreviewRow(path, None, [], str(exc)))
            continue
        original = convert(augment.denormalize(evaluation(image), preprocess))
        samples = augment.preview(image, preprocess, project.augment, n=n, seed=seed + 7919 * k)
        rows.append(PreviewRow(path, original, [convert(a) for a in samples]))
        if progress is not None:
            progress(k + 1, len(paths))
    return rows


def augment_info(spec: AugmentSpec) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Every preset's editable transforms (``preset_params``) and why ``spec`` is invalid, if it is."""
    augment = import_core("augment")
    schemas = {preset: augment.preset_params(preset) for preset in augment.PRESETS}
    try:
        augment.resolve_params(spec)
        problem = None
    except UserError as exc:
        problem = str(exc)
    return schemas, problem


# -- one value's control: slider positions and the text beside it ------------------------------------
def field_step(spec: dict[str, Any]) -> float:
    return float(spec.get("step") or (1 if spec["type"] == "int" else 0.01))


def field_steps(spec: dict[str, Any]) -> int:
    """The slider's last position (the first is the smallest value)."""
    return round((spec["max"] - spec["min"]) / field_step(spec))


def field_value(spec: dict[str, Any], position: int) -> Any:
    raw = min(max(spec["min"] + position * field_step(spec), spec["min"]), spec["max"])
    return int(round(raw)) if spec["type"] == "int" else round(raw, 6)


def field_position(spec: dict[str, Any], value: Any) -> int:
    value = min(max(float(value), spec["min"]), spec["max"])
    return round((value - spec["min"]) / field_step(spec))


def field_text(key: str, spec: dict[str, Any], value: Any) -> str:
    if spec["type"] == "int":
        return str(int(value))
    if spec["max"] <= 1.0 and key in PERCENT_KEYS:
        return f"{100 * float(value):.0f} %"
    return f"{float(value):.2f}".rstrip("0").rstrip(".") if field_step(spec) < 1 else f"{float(value):.0f}"


def same_kind(value: Any, default: Any) -> bool:
    """Whether a saved value fits the control of ``default`` (a bool is no number here)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def overrides_text(n: int) -> str:
    return f"{n} setting{'s' if n != 1 else ''} changed from the preset" if n else ""


def source_text(count: int, chosen: bool) -> str:
    if not count:
        return ""
    return f"{count} image{'s' if count != 1 else ''} you chose" if chosen else f"{count} images from the dataset (one per class)"


# -- the model --------------------------------------------------------------------------------------
class AugmentModel:
    """See the module docstring. Events: ``message(text, level)``, ``messageCleared()``,
    ``presetShown(preset, enabled)``, ``controlsChanged()`` (the transforms to show: ``transforms()``),
    ``valuesChanged()`` (``values()`` and the overrides), ``overridesChanged()`` (``override_count()``
    only), ``previewDue(immediate)``, ``sourceChanged(text, dataset_enabled)``, ``emptied()``,
    ``contentShown()``, ``rowsChanged()`` (``rows``), ``busyStarted(label, job)``, ``busyStopped()``."""

    EVENTS = ("message", "messageCleared", "presetShown", "controlsChanged", "valuesChanged", "overridesChanged",
              "previewDue", "sourceChanged", "emptied", "contentShown", "rowsChanged", "busyStarted", "busyStopped")

    def __init__(self, host: Host, jobs: JobRunner, *, convert: Callable[[Any], Any] = lambda array: array):
        self.host, self.jobs, self.convert = host, jobs, convert
        for name in self.EVENTS:
            setattr(self, name, Event())
        self.preset = DEFAULT_PRESET  # the preset shown
        self.schemas: dict[str, dict[str, Any]] | None = None  # per preset, from augment_info
        self.defaults: dict[str, dict[str, Any]] = {}  # the shown preset's values
        self._controls_for: str | None = None  # the preset the page's controls were built for
        self.seed = 0
        self.count = DEFAULT_COUNT
        self.rows: list[PreviewRow] = []
        self.stale = True  # the preview no longer shows the project's settings and images
        self.info_job: Job | None = None
        self.preview_job: Job | None = None
        self.message_level: str | None = None  # of the message shown
        self._info_token = self._preview_token = 0
        self._own = OwnWrites(host)
        host.projectReplaced.connect(self.load_from_project)
        host.projectChanged.connect(self._on_project_changed)
        host.scanChanged.connect(lambda _report: self.schedule_preview())

    # -- the project's settings ----------------------------------------------------------------------
    def load_from_project(self) -> None:
        """Show the project's choices; the transforms' description and a check of the saved values
        come from a job."""
        spec = self.host.project.augment
        self.preset = spec.preset if spec.preset in PRESET_TEXT else DEFAULT_PRESET
        self.presetShown.emit(self.preset, self.schemas is not None)
        self.clear_message()
        if self.schemas is not None:
            self._rebuild()
        if self.info_job is not None:
            self.info_job.cancel()
        self._info_token += 1
        token = self._info_token
        self.info_job = self.jobs(augment_info, copy.deepcopy(spec), name="augment-info", pass_control=False,
                                  on_result=lambda r: self._on_info(token, r),
                                  on_error=lambda m, tb: self._on_info_error(token, m))
        self.schedule_preview()

    def _on_info(self, token: int, result: tuple[dict[str, Any], str | None]) -> None:
        if token != self._info_token:
            return
        first = self.schemas is None
        self.schemas, problem = result
        self.presetShown.emit(self.preset, True)
        if first:
            self._rebuild()
        if problem:
            self._message(f"The project's augmentation settings are invalid ({problem}); the controls show the "
                          f"'{self.host.project.augment.preset}' preset's values where they do not fit. Change "
                          "them or press \"Reset to preset\".", "warning")

    def _on_info_error(self, token: int, message: str) -> None:
        if token == self._info_token:
            self._message(f"Could not load the augmentation settings: {message}", "error")

    def transforms(self) -> dict[str, dict[str, Any]]:
        """The shown preset's transforms: label, help and fields (``core.augment.preset_params``)."""
        return self.schemas[self.preset] if self.schemas else {}

    def _rebuild(self) -> None:
        self.defaults = {name: {k: f["value"] for k, f in spec["fields"].items()}
                         for name, spec in self.transforms().items()}
        # Controls are rebuilt only for another preset: an undo, a reload or another project with the
        # same preset only moves values, so the control the user works with keeps the keyboard focus.
        if self._controls_for != self.preset:
            self._controls_for = self.preset
            self.controlsChanged.emit()
        self.valuesChanged.emit()

    def values(self) -> dict[str, dict[str, Any]]:
        """The preset's values with the project's overrides applied; a value that does not fit its
        control is left at the preset's (the check names it)."""
        values = copy.deepcopy(self.defaults)
        for name, fields in self._overrides().items():
            if name in values and isinstance(fields, dict):
                for key, value in fields.items():
                    if key in values[name] and same_kind(value, values[name][key]):
                        values[name][key] = value
        return values

    def _overrides(self) -> dict[str, Any]:
        params = self.host.project.augment.params
        return params if isinstance(params, dict) else {}

    def override_count(self) -> int:
        return sum(len(v) for v in self._overrides().values() if isinstance(v, dict))

    def overrides_text(self) -> str:
        return overrides_text(self.override_count())

    # -- the user's edits ----------------------------------------------------------------------------
    def set_preset(self, preset: str) -> None:
        """A new preset starts from its own values (the overrides are dropped)."""

        def change(spec: AugmentSpec) -> None:
            spec.preset, spec.params = preset, {}

        self._edit(f"Augmentation preset: {preset}", change)
        self.preset = preset
        self._rebuild()
        self.clear_message()
        self.schedule_preview()

    def set_field(self, name: str, key: str, value: Any) -> None:
        """One value of one transform; only values that differ from the preset's are kept."""
        default = self.defaults.get(name, {}).get(key)
        same = value == default or (isinstance(value, float) and isinstance(default, (int, float))
                                    and abs(value - float(default)) < 1e-9)

        def change(spec: AugmentSpec) -> None:
            params = spec.params if isinstance(spec.params, dict) else {}
            overrides = dict(params[name]) if isinstance(params.get(name), dict) else {}
            if same:
                overrides.pop(key, None)
            else:
                overrides[key] = value
            if overrides:
                params[name] = overrides
            else:
                params.pop(name, None)
            spec.params = params

        transform = self.transforms().get(name, {})
        label = transform.get("label", name)
        if key == "enabled":
            self._edit(f"Turn {'on' if value else 'off'} {label}", change)
        else:
            what = transform.get("fields", {}).get(key, {}).get("label", key)
            self._edit(f"Augmentation: {label}, {what}", change, merge_key=f"augment.{name}.{key}")
        self.overridesChanged.emit()
        self.schedule_preview()

    def reset_to_preset(self) -> None:
        """Forget the values changed from the preset."""
        if self.host.project.augment.params:
            self._edit("Reset augmentation to the preset", lambda spec: setattr(spec, "params", {}))
            self.schedule_preview(immediate=True)
        if self.message_level == "warning":
            self.clear_message()
        self.valuesChanged.emit()

    def _edit(self, text: str, change: Callable[[AugmentSpec], None], merge_key: str | None = None) -> None:
        project = self.host.project
        before = ProjectEdit.snapshot(project, *_EDITED)
        change(project.augment)
        mark_user_set(project.train, "augment")  # chosen by the user: strategy Auto keeps it
        after = ProjectEdit.snapshot(project, *_EDITED)
        self._write("augment", "train")
        self.host.push_edit(ProjectEdit(text, before, after, applied=True, merge_key=merge_key))

    def _write(self, *sections: str) -> None:
        self._own.write(*sections)

    def _on_project_changed(self, section: str) -> None:
        if self._own.active:
            return
        if section == "augment":  # the Strategy page applied its suggested preset, an undo, ...
            self.load_from_project()
        elif section in ("model", "train", "ui"):
            self.schedule_preview()  # the model's input size or the chosen images may have changed

    # -- messages ------------------------------------------------------------------------------------
    def _message(self, text: str, level: str) -> None:
        self.message_level = level
        self.message.emit(text, level)

    def clear_message(self) -> None:
        self.message_level = None
        self.messageCleared.emit()

    # -- the preview ---------------------------------------------------------------------------------
    def set_images(self, paths: list[str] | None) -> None:
        """Preview these images (None: a few from the scanned dataset). Saved in the project."""
        ui = self.host.project.ui
        if paths:
            ui.augment_images = [str(p) for p in paths][:MAX_IMAGES]
        elif ui.augment_images:
            ui.augment_images = []
        else:
            self.schedule_preview(immediate=True)
            return
        self._write("ui")
        self.schedule_preview(immediate=True)

    def preview_paths(self) -> list[str]:
        chosen = self.host.project.ui.augment_images
        if chosen:
            return [str(p) for p in chosen][:MAX_IMAGES]
        report = self.host.scan
        if report is None:
            return []
        # The first image of each of the first few classes: different subjects, stable choice.
        first: dict[int, str] = {}
        for rel, label in zip(report.files, report.labels, strict=True):
            if label not in first:
                first[label] = rel
                if len(first) == min(3, len(report.classes)):
                    break
        return [str(Path(report.root) / first[k]) for k in sorted(first)]

    def reshuffle(self) -> None:
        """New random versions of the same images."""
        self.seed = random.randrange(1, 2**31 - 1)
        self.schedule_preview(immediate=True)

    def set_count(self, count: int) -> None:
        """Augmented versions per image."""
        self.count = int(count)
        self.schedule_preview()

    def schedule_preview(self, immediate: bool = False) -> None:
        """The preview is out of date: the page renders it after its short delay, or when shown."""
        self.stale = True
        self.previewDue.emit(immediate)

    def render(self) -> None:
        paths = self.preview_paths()
        chosen = bool(self.host.project.ui.augment_images)
        self.sourceChanged.emit(source_text(len(paths), chosen), chosen and self.host.scan is not None)
        if not paths:
            self.rows = []
            self.stale = False
            self.emptied.emit()
            return
        self.contentShown.emit()
        self.cancel_preview()
        self._preview_token += 1
        token = self._preview_token
        self.stale = False
        self.preview_job = job = self.jobs(
            render_previews, self.host.project.copy(), paths, self.count, self.seed, self.convert,
            name="augment-preview",
            on_result=lambda rows: self._on_rows(token, rows),
            on_error=lambda m, tb: self._on_preview_error(token, m),
            on_finished=lambda: self._on_preview_finished(token))
        if job.is_running():  # (a synchronous runner has finished it)
            self.busyStarted.emit("Rendering preview…", job)

    def cancel_preview(self) -> None:
        if self.preview_job is not None:
            self.preview_job.cancel()

    def busy(self) -> bool:
        return self.preview_job is not None and self.preview_job.is_running()

    def _on_rows(self, token: int, rows: list[PreviewRow]) -> None:
        if token != self._preview_token:
            return
        self.rows = rows
        self.rowsChanged.emit()
        if self.message_level == "error":
            self.clear_message()

    def _on_preview_error(self, token: int, message: str) -> None:
        if token == self._preview_token:
            self._message(f"Could not render the preview: {message}", "error")

    def _on_preview_finished(self, token: int) -> None:
        if token == self._preview_token:
            self.busyStopped.emit()

    def go_to_data(self) -> None:
        self.host.navigateRequested.emit("data")
