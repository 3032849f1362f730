"""The Try page's model: the pictures, the trained model chosen, both models' answers and heat maps.

Models load and predict through the job runner (``ui.worker.run_task`` in the app), one job at a time;
loaded models are cached per source (folder + weights-file time) in a ``ModelCache`` that the jobs share
one after another, never concurrently. After a failed job nothing restarts by itself until the user
changes something (``retry``). The page's view state lives in ``project.ui`` (``try_run``,
``try_images``, ``try_top_k``, ``try_heatmap``) as view state: trying pictures is not an edit of the
project (``host.set_view_state``). The page (``ui.pages.try_page``) keeps what needs Qt: the run
chooser, thumbnails, the preview's decoding and scaling, the bars.

The model asks the page three things through callables it is given: the chosen source folder
(``source``), the selected picture (``selected``) and whether the page is shown (``shown``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transfer_studio.core.runs import norm_path
from transfer_studio.errors import Cancelled, UserError
from transfer_studio.ui.models.base import Event, Host, Job, JobRunner
from transfer_studio.ui.runtime import import_core

# What the Try page accepts (core.imageio.IMAGE_EXTENSIONS; repeated here: importing the core on the
# GUI thread would load torch).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif",
                              ".tiff", ".ppm", ".pgm", ".pbm"})
MAX_TOP_K = 10
MAX_IMAGES = 500  # per drop: a folder of 20,000 photos is not what this page is for
SAVED_IMAGES = 100  # image paths remembered in the project
BATCH = 16


# -- jobs (worker threads) and what they need -------------------------------------------------------
@dataclass
class ModelInfo:
    """What a task needs to know about a trained source, found without loading it."""

    source: str  # "" for "pretrained": no trained model chosen
    kind: str  # "run" | "bundle" | "pretrained" (only the project's original model)
    key: tuple  # cache key of the trained model
    base_model: str  # catalog name of the network it was fine-tuned from
    base_weights: str  # "DEFAULT", "none" or a weights file


class ModelCache:
    """Loaded predictors by key. Tasks use it one at a time (``lock``); never shared with training."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._items: dict[tuple, Any] = {}

    def get(self, key: tuple, factory: Callable[[], Any]) -> Any:
        with self.lock:
            if key not in self._items:
                self._items[key] = factory()
            return self._items[key]

    def __contains__(self, key: tuple) -> bool:
        return key in self._items

    def clear(self) -> None:
        with self.lock:
            self._items.clear()


def describe_source(source: str) -> ModelInfo:
    """Kind, cache key and base model of a run or bundle folder (``core.run_folder.source_kind``).

    Reads only the folder's small JSON files, without torch: it runs on the GUI thread.
    """
    from transfer_studio.core import run_folder
    from transfer_studio.core.runs import load_snapshot

    path = Path(source)
    kind = run_folder.source_kind(path)
    if kind == "bundle":
        meta = run_folder.read_json(path / run_folder.BUNDLE_META)
        try:
            base, base_weights = str(meta["architecture"]["model"]), "DEFAULT"
        except (KeyError, TypeError) as exc:
            raise UserError(f"{path / run_folder.BUNDLE_META} is damaged ({exc!r}); export the run again") from exc
    else:
        project = load_snapshot(path)
        base, base_weights = project.model.name, project.model.weights
    try:
        stamp = run_folder.weights_path(path, kind).stat().st_mtime
    except OSError:
        stamp = 0.0
    return ModelInfo(str(path), kind, (kind, norm_path(path), stamp), base, base_weights or "DEFAULT")


def project_base_info(name: str, weights: str) -> ModelInfo:
    """No trained model yet: only the project's original pretrained network answers."""
    return ModelInfo("", "pretrained", ("pretrained-only",), name, weights or "DEFAULT")


NO_TRAINED_NOTE = ("<b>No trained model yet.</b> Train one on the <a href=\"train\">Train page</a>, or "
                   "choose a training run or an exported bundle with \u201cOther run or bundle\u2026\u201d. "
                   "Meanwhile the original pretrained model's answers are shown.")


def load_trained(info: ModelInfo) -> Any:
    """The trained model as a Predictor (worker thread: the core imports torch)."""
    Predictor = import_core("predict").Predictor
    if info.kind == "bundle":
        return Predictor.from_bundle(info.source)
    model, project = import_core("export").load_run(info.source)
    return Predictor(model, import_core("network").project_preprocess(project), project.data.classes)


def load_pretrained(info: ModelInfo) -> Any:
    return import_core("predict").Predictor.from_catalog(info.base_model, info.base_weights)


@dataclass
class Predictions:
    """Top classes per image: path -> [(label, probability)] (up to MAX_TOP_K), per model."""

    trained: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    pretrained: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)
    trained_error: str = ""
    pretrained_note: str = ""  # why there is no pretrained column (random init, weights missing)
    trained_key: tuple = ()
    pretrained_key: tuple = ()


def _top(probs: Any, names: Sequence[str]) -> list[tuple[str, float]]:
    import numpy as np

    order = np.argsort(-probs, kind="stable")[:MAX_TOP_K]
    return [(names[i], float(probs[i])) for i in order]


def predict_task(cache: ModelCache, info: ModelInfo, paths: list[str], want_trained: bool,
                 want_pretrained: bool, progress: Any = None, cancel: Any = None) -> Predictions:
    """Both models' top classes for ``paths`` (each model only if asked); a model that cannot load
    is reported in the result, not raised, so the other column still fills."""
    load_rgb = import_core("imageio").load_rgb

    out = Predictions(trained_key=info.key, pretrained_key=("catalog", info.base_model, info.base_weights))
    models: list[tuple[str, Any]] = []
    with cache.lock:
        if want_trained:
            try:
                models.append(("trained", cache.get(info.key, lambda: load_trained(info))))
            except UserError as exc:
                out.trained_error = str(exc)
        if want_pretrained:
            if info.base_weights.strip().lower() == "none":
                out.pretrained_note = (f"This project's {info.base_model} starts from random weights: there is no "
                                       "pretrained model to compare with.")
            else:
                try:
                    models.append(("pretrained", cache.get(out.pretrained_key, lambda: load_pretrained(info))))
                except UserError as exc:
                    out.pretrained_note = f"The original {info.base_model} is not available: {exc}"
        if progress:
            progress(0, len(paths))
        for start in range(0, len(paths), BATCH):
            if cancel is not None and cancel():
                raise Cancelled("prediction cancelled")
            images, kept = [], []
            for p in paths[start:start + BATCH]:
                try:
                    images.append(load_rgb(p))
                    kept.append(p)
                except (UserError, OSError) as exc:
                    out.unreadable[p] = str(exc)
            for which, predictor in models:
                if not images:
                    break
                probs = predictor.predict_images(images)
                target = out.trained if which == "trained" else out.pretrained
                for p, row in zip(kept, probs, strict=True):
                    target[p] = _top(row, predictor.class_names)
            if progress:
                progress(min(start + BATCH, len(paths)), len(paths))
    return out


@dataclass
class HeatMap:
    path: str
    key: tuple
    overlay: Any  # (H, W, 3) uint8
    label: str
    score: float
    layer: str


def heatmap_task(cache: ModelCache, info: ModelInfo, path: str, progress: Any = None,
                 cancel: Any = None) -> HeatMap:
    gradcam, load_rgb = import_core("gradcam"), import_core("imageio").load_rgb

    with cache.lock:
        predictor = cache.get(info.key, lambda: load_trained(info))
        if cancel is not None and cancel():
            raise Cancelled("heat map cancelled")
        result = gradcam.explain(predictor.model, predictor.preprocess, load_rgb(path))
    return HeatMap(path, info.key, gradcam.overlay(result.image, result.heat),
                   predictor.class_names[result.class_index], result.score, result.layer)


def expand_paths(items: Iterable[str], limit: int = MAX_IMAGES,
                 rejected: list[str] | None = None) -> tuple[list[str], int]:
    """Image files from files and folders (folders recursively, sorted); (paths, number left out).

    Files without an image extension are not images: a folder's are skipped silently, files named
    one by one are appended to ``rejected`` (when given) so the page can say why they were not added.
    """

    out: list[str] = []
    skipped = 0
    for item in items:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_EXTENSIONS:
                if rejected is not None:
                    rejected.append(str(p))
                continue
            files = [p]
        else:
            continue
        for f in files:
            if len(out) >= limit:
                skipped += 1
            else:
                out.append(str(f))
    return out, skipped


@dataclass
class Column:
    """One model's answer for the selected picture: its title (None: leave it), bars and note."""

    title: str | None
    rows: list[tuple[str, float]]
    note: str
    rich: bool = False  # the note is rich text of our own (a link)


class TryModel:
    """See the module docstring."""

    def __init__(self, host: Host, jobs: JobRunner, *, source: Callable[[], str],
                 selected: Callable[[], str | None], shown: Callable[[], bool]):
        self.host, self.jobs = host, jobs
        self.source, self.selected, self.shown = source, selected, shown
        for name in ("message", "messageCleared", "busyStarted", "busyStopped", "imagesChanged", "added",
                     "currentChanged", "previewChanged"):
            setattr(self, name, Event())
        self.cache = ModelCache()
        self.paths: list[str] = []
        self.info: ModelInfo | None = None
        self.predictions: dict[tuple, dict[str, list[tuple[str, float]]]] = {}  # model key -> path -> top
        self.unreadable: dict[str, str] = {}
        self.notes: dict[tuple, str] = {}  # model key -> why it has no predictions
        self.heatmaps: dict[tuple[tuple, str], HeatMap] = {}
        self.top_k = 5
        self.heatmap_on = False
        self.job: Job | None = None
        self.pending_heatmap: str | None = None
        self.closing = False
        self.halted = False  # a job failed: no automatic retry until the user changes something

    # -- the project ---------------------------------------------------------------------------------
    def load_from_project(self) -> None:
        """The pictures saved with the project (the page has filled its fields from ``project.ui``)."""
        self.paths = list(self.host.project.ui.try_images)
        self.info = None
        self.imagesChanged.emit(self.paths[0] if self.paths else None)
        self.messageCleared.emit()
        self.currentChanged.emit()
        if self.shown():
            self.refresh()

    def base_model_changed(self) -> bool:
        """The project's network changed: when it is the one answering, it answers anew (True)."""
        if self.info is None or self.info.kind != "pretrained":
            return False
        self.info = None
        self.currentChanged.emit()
        if self.shown():
            self.refresh(retry=True)
        return True

    def source_changed(self) -> None:
        self.info = None
        self.currentChanged.emit()
        if self.shown():
            self.refresh(retry=True)

    def model_info(self) -> ModelInfo | None:
        """The current source described (cheap: JSON files only); errors are messages.

        With no trained model to choose, the project's own pretrained network still answers.
        """
        source = self.source()
        if not source:
            model = self.host.project.model
            if not model.name:
                self.info = None
                return None
            self.info = project_base_info(model.name, model.weights)
            return self.info
        if self.info is None or self.info.source != source:
            try:
                self.info = describe_source(source)
            except UserError as exc:
                self.info = None
                self.message.emit(str(exc), "error", None)
                return None
        return self.info

    # -- pictures ------------------------------------------------------------------------------------
    def add_paths(self, items: Iterable[str]) -> int:
        """Add image files (and the images inside folders); returns how many were new."""
        rejected: list[str] = []
        found, left_out = expand_paths(items, rejected=rejected)
        known = set(self.paths)
        new = [p for p in found if p not in known]
        not_images = ""
        if rejected:
            names = ", ".join(Path(p).name for p in rejected[:3]) + (" …" if len(rejected) > 3 else "")
            not_images = (f"Not image files, so not added: {names}. The Try page reads JPEG, PNG, BMP, GIF, "
                          "WebP and TIFF images.")
        if not found:
            self.message.emit(not_images or "No images there: drop image files (JPEG, PNG, …) or folders holding "
                              "them.", "warning", None)
            return 0
        self.messageCleared.emit()
        if not_images:
            self.message.emit(not_images, "warning", None)
        if left_out:
            self.message.emit(f"Added the first {MAX_IMAGES} images; {left_out} more were left out.", "info", None)
        self.paths.extend(new)
        self.host.set_view_state(try_images=self.paths[-SAVED_IMAGES:])
        self.imagesChanged.emit(new[0] if new else None)
        self.currentChanged.emit()
        self.added.emit(len(new))
        self.refresh(retry=True)
        return len(new)

    def clear_images(self) -> None:
        self.paths = []
        self.imagesChanged.emit(None)
        self.host.set_view_state(try_images=[])
        self.currentChanged.emit()

    def set_top_k(self, k: int, *, remember: bool = True) -> None:
        self.top_k = int(k)
        if remember:
            self.host.set_view_state(try_top_k=int(k))
        self.currentChanged.emit()

    def set_heatmap(self, on: bool) -> None:
        self.heatmap_on = bool(on)
        self.host.set_view_state(try_heatmap=bool(on))
        path = self.selected()
        if path is not None:
            self.previewChanged.emit(path)

    # -- predicting ----------------------------------------------------------------------------------
    def busy(self) -> bool:
        return self.job is not None and self.job.is_running()

    def refresh(self, *, retry: bool = False) -> Job | None:
        """Predict the images that have no answer yet (one job at a time; runs again when it ends).

        After a failed job nothing restarts by itself until ``retry`` (new images, another model).
        """
        if retry:
            self.halted = False
        if self.busy() or self.halted or self.closing:
            return None
        info = self.model_info()
        if info is None or not self.paths:
            if not self.paths:
                self.currentChanged.emit()
            return None
        pre_key = ("catalog", info.base_model, info.base_weights)
        trained = self.predictions.get(info.key, {})
        pretrained = self.predictions.get(pre_key, {})
        want_trained = info.kind != "pretrained" and info.key not in self.notes
        want_pre = pre_key not in self.notes
        todo = [p for p in self.paths if p not in self.unreadable and
                ((want_trained and p not in trained) or (want_pre and p not in pretrained))]
        if not todo:
            self.maybe_heatmap()
            return None
        loading = "" if info.key in self.cache else " (loading the model)"
        job = self.jobs(predict_task, self.cache, info, todo, want_trained, want_pre, name="try-predict",
                        on_result=self._on_predictions, on_error=self._on_error, on_finished=self._on_job_finished)
        if job.is_running():  # (a synchronous runner has finished it)
            self.job = job
            self.busyStarted.emit(f"Classifying {len(todo)} image{'s' if len(todo) != 1 else ''}{loading}…", job)
            self.currentChanged.emit()
        return job

    def _on_predictions(self, result: Predictions) -> None:
        self.predictions.setdefault(result.trained_key, {}).update(result.trained)
        self.predictions.setdefault(result.pretrained_key, {}).update(result.pretrained)
        self.unreadable.update(result.unreadable)
        if result.trained_error:
            self.notes[result.trained_key] = result.trained_error
        if result.pretrained_note:
            self.notes[result.pretrained_key] = result.pretrained_note
        if result.unreadable:
            names = ", ".join(Path(p).name for p in list(result.unreadable)[:3])
            self.message.emit(f"{len(result.unreadable)} file(s) could not be read as images: {names}", "warning",
                              None)
        self.currentChanged.emit()

    def _on_error(self, message: str, details: str) -> None:
        self.halted = True
        self.message.emit(message, "error", details or None)

    def _on_job_finished(self) -> None:
        self.busyStopped.emit()
        self.job = None
        if self.halted:
            return
        # Work that arrived meanwhile (more images, another model, a heat map).
        if self.shown() or self.pending_heatmap:
            self.refresh()

    # -- heat maps -----------------------------------------------------------------------------------
    def heatmap_for(self, path: str) -> HeatMap | None:
        """The heat map to show for ``path`` (heat map on); when there is none yet, it is computed next."""
        info = self.info
        if not self.heatmap_on or info is None:
            return None
        hm = self.heatmaps.get((info.key, path))
        if hm is None:
            self.pending_heatmap = path
            self.maybe_heatmap()
        return hm

    def has_heatmap(self, path: str) -> bool:
        return self.heatmap_on and self.info is not None and (self.info.key, path) in self.heatmaps

    def maybe_heatmap(self) -> None:
        path = self.pending_heatmap
        info = self.info
        if path is None or info is None or not self.heatmap_on or self.closing:
            return
        if info.kind == "pretrained" or info.key in self.notes or path in self.unreadable:
            self.pending_heatmap = None  # Grad-CAM explains the trained model's answer
            return
        if self.busy():
            return  # after the running job (_on_job_finished -> refresh -> here)
        self.pending_heatmap = None
        job = self.jobs(heatmap_task, self.cache, info, path, name="try-heatmap",
                        on_result=self._on_heatmap, on_error=self._on_heatmap_error, on_finished=self._on_job_finished)
        if job.is_running():
            self.job = job
            self.busyStarted.emit("Computing the heat map…", job)

    def _on_heatmap(self, hm: HeatMap) -> None:
        self.heatmaps[(hm.key, hm.path)] = hm
        if hm.path == self.selected():
            self.previewChanged.emit(hm.path)

    def _on_heatmap_error(self, message: str, details: str) -> None:
        self.message.emit(f"No heat map: {message}", "warning", details or None)

    # -- what the page shows -------------------------------------------------------------------------
    def columns(self, path: str) -> tuple[Column, Column]:
        """Both models' answers for the picture at ``path`` (the top ``top_k`` classes)."""
        info, k = self.info, self.top_k
        only_pretrained = info is not None and info.kind == "pretrained"
        trained_title = (f"Your trained model ({Path(info.source).name})" if info and not only_pretrained
                         else "Your trained model")
        pre_title = f"Original pretrained {info.base_model} (ImageNet classes)" if info is not None else None
        predicting = self.busy()
        out = []
        for title, key in ((trained_title, info.key if info else None),
                           (pre_title, ("catalog", info.base_model, info.base_weights) if info else None)):
            if not out and (info is None or only_pretrained):
                out.append(Column(title, [], NO_TRAINED_NOTE, rich=True))
                continue
            rows = self.predictions.get(key, {}).get(path) if key else None
            if path in self.unreadable:
                note = f"Not readable: {self.unreadable[path]}"
            elif key in self.notes:
                note = self.notes[key]
            else:
                note = "" if rows else "Working…" if predicting else ""
            out.append(Column(title, rows[:k] if rows else [], note))
        return out[0], out[1]
