"""The Export page's model: which run is exported where and in which formats, the export job and its
verification, and the texts the page shows.

``core.export.export_run`` runs through the job runner (``ui.worker.run_task`` in the app; progress
in named steps, cancel); it verifies every written file against the run's own network on the run's
validation images, and a failed verification still shows its numbers. Writing into a folder that
already holds a bundle asks first (``confirm_replace``), a destination inside the run folder or on a
file is refused. The choice lives in ``project.ui`` (``export_run``, ``export_dir``, ``export_name``,
``export_formats``), marked changed like the Evaluate page's choice. The page (``ui.pages.export``)
keeps what needs Qt: the run chooser, the check boxes and fields, the verification table, the
snippets' editors, the clipboard and the file manager.

The model asks the page, through callables it is given, for the chosen run (``source``), whether the
chooser lists any run (``has_sources``) and whether to replace an existing bundle (``confirm_replace``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer_studio.core import run_folder  # torch-free: the folders' file names
from transfer_studio.core.runs import norm_path
from transfer_studio.errors import UserError
from transfer_studio.ui.models.base import Event, Host, Job, JobRunner
from transfer_studio.ui.runtime import import_core

FORMAT_LABELS = {
    "safetensors": ("Weights bundle (model.safetensors + model.json)",
                    "Always written: the weights and everything needed to rebuild and feed the network"),
    "onnx": ("ONNX (model.onnx)", "For onnxruntime, OpenCV, TensorRT, … — any language, no PyTorch needed"),
    "pt2": ("PyTorch program (model.pt2, torch.export)", "For PyTorch without the model's Python code"),
}
FORMATS = tuple(FORMAT_LABELS)
DEFAULT_FORMATS = ("safetensors", "onnx")
SNIPPETS = ("onnx", "python", "pt2")  # the page's snippet tabs, in order


def export_steps(formats: list[str]) -> list[str]:
    """What each progress step of ``core.export.export_run`` does, in its order (3 + one per file
    format besides safetensors; a test checks the count against the core's reports)."""
    steps = ["loading the run and computing reference outputs", "writing and checking model.safetensors"]
    if "pt2" in formats:
        steps.append("exporting and checking model.pt2 (torch.export)")
    if "onnx" in formats:
        steps.append("exporting and checking model.onnx (onnxruntime)")
    return [*steps, "comparing the outputs", "writing model.json"]


# -- the job (worker thread) ---------------------------------------------------------------------------
def run_export(run_dir: str, out_dir: str, formats: list[str], progress: Any = None,
               cancel: Any = None) -> tuple[Any, str]:
    """(ExportResult, "" or the verification failure) — a failed verification still shows its numbers.

    Runs on a worker thread (the core imports torch)."""
    export = import_core("export")

    try:
        return export.export_run(run_dir, out_dir, formats, progress=progress, cancel=cancel), ""
    except export.ExportVerificationError as exc:
        return exc.result, str(exc)


def safe_name(text: str) -> str:
    """A folder name from free text: letters, digits, '-', '_' and '.'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text.strip()).strip("-.")
    return name or "model"


# -- loading snippets ------------------------------------------------------------------------------
def onnx_snippet(bundle_dir: str) -> str:
    """Plain Python (numpy, Pillow, onnxruntime) that classifies an image with the exported ONNX model.

    Preprocessing follows model.json exactly as the app does: RGB, shorter side resized (bilinear),
    centre crop, scale to [0, 1], normalise, NCHW.
    """
    return f'''# pip install onnxruntime pillow numpy
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

bundle = Path(r"{bundle_dir}")
meta = json.loads((bundle / "model.json").read_text())
pre = meta["preprocessing"]


def preprocess(path):
    img = Image.open(path).convert("RGB")
    w, h = img.size
    short, long = min(w, h), max(w, h)
    size = (pre["resize"], int(pre["resize"] * long / short))
    img = img.resize(size if w <= h else size[::-1], Image.BILINEAR)
    w, h = img.size
    left, top = (w - pre["crop"]) // 2, (h - pre["crop"]) // 2
    img = img.crop((left, top, left + pre["crop"], top + pre["crop"]))
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = (x - np.array(pre["mean"], np.float32)) / np.array(pre["std"], np.float32)
    return x.transpose(2, 0, 1)[None]  # NCHW, a batch of one


session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
image = sys.argv[1] if len(sys.argv) > 1 else "image.jpg"
logits = session.run(None, {{"input": preprocess(image)}})[0][0]
probs = np.exp(logits - logits.max())
probs /= probs.sum()
for i in np.argsort(-probs)[:3]:  # the three most likely classes
    print(f"{{meta['classes'][i]}}: {{probs[i]:.1%}}")
'''


def python_snippet(bundle_dir: str) -> str:
    """Transfer Studio's own loader: rebuilds the network from model.json, reads the safetensors weights."""
    return f'''# pip install transfer-studio   (never unpickles: model.json + model.safetensors)
import sys

from transfer_studio.core.predict import Predictor

predictor = Predictor.from_bundle(r"{bundle_dir}")
image = sys.argv[1] if len(sys.argv) > 1 else "image.jpg"
for guess in predictor.predict_paths([image], top_k=3)[0]["top_k"]:
    print(f"{{guess['label']}}: {{guess['probability']:.1%}}")
'''


def pt2_snippet(bundle_dir: str) -> str:
    """PyTorch without the model's code: the ``torch.export`` program, fed like the ONNX snippet."""
    return f'''# pip install torch pillow numpy   (torch.export.load unpickles: load only files you made)
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

bundle = Path(r"{bundle_dir}")
meta = json.loads((bundle / "model.json").read_text())
pre = meta["preprocessing"]
model = torch.export.load(str(bundle / "model.pt2")).module()

img = Image.open(sys.argv[1] if len(sys.argv) > 1 else "image.jpg").convert("RGB")
w, h = img.size
size = (pre["resize"], int(pre["resize"] * max(w, h) / min(w, h)))
img = img.resize(size if w <= h else size[::-1], Image.BILINEAR)
w, h = img.size
left, top = (w - pre["crop"]) // 2, (h - pre["crop"]) // 2
x = np.asarray(img.crop((left, top, left + pre["crop"], top + pre["crop"])), np.float32) / 255.0
x = (x - np.array(pre["mean"], np.float32)) / np.array(pre["std"], np.float32)
with torch.no_grad():
    probs = model(torch.from_numpy(x.transpose(2, 0, 1)[None].copy())).softmax(1)[0]
for p, i in zip(*probs.topk(min(3, len(probs)))):
    print(f"{{meta['classes'][i]}}: {{p:.1%}}")
'''


# -- texts of a result ----------------------------------------------------------------------------------
@dataclass
class CheckRow:
    """One written file in the verification table."""

    file: str
    tip: str
    size: str
    difference: str
    agreement: str
    check: str
    passed: bool


def check_rows(result: Any, size_text: Callable[[int], str]) -> list[CheckRow]:
    """The verification table of a ``core.export.ExportResult`` (``size_text``: ``ui.widgets.format_bytes``)."""
    v = result.verification
    rows = []
    for fmt in (f for f in FORMATS if f in result.files):
        path = Path(result.files[fmt])
        check = v.get(fmt, {})
        try:
            size = size_text(path.stat().st_size)
        except OSError:
            size = "–"
        tip = str(path)
        if fmt == "onnx" and check.get("exporter"):
            tip = f"{path}\nexporter: {check['exporter']}, onnxruntime {check.get('onnxruntime', '')}"
        rows.append(CheckRow(path.name, tip, size, f"{check.get('max_abs_diff', float('nan')):.2e}",
                             f"{check.get('top1_agree', 0)} / {check.get('images', 0)}",
                             "✓ passed" if check.get("passed") else "✗ failed", bool(check.get("passed"))))
    return rows


def summary_text(result: Any) -> str:
    v = result.verification
    n, on = v.get("images", 0), v.get("inputs", "images")
    if result.passed:
        files = sum(1 for f in FORMATS if f in result.files)
        return (f"<b>All {files} exported files match PyTorch</b> on {n} {on}: outputs within "
                f"{v.get('tolerance', 1e-4):g}, same top-1 class for every image. Saved in {result.out_dir}.")
    return f"<b>Some exported files disagree with PyTorch</b> on {n} {on}. Saved in {result.out_dir}."


def snippets(result: Any) -> tuple[dict[str, str], int]:
    """The loading snippets of an export (one per tab, ``SNIPPETS``) and the tab shown first."""
    bundle = str(result.out_dir)
    texts = {
        "onnx": onnx_snippet(bundle) if "onnx" in result.files else
        "# Export with the ONNX format checked to load the model with onnxruntime.",
        "python": python_snippet(bundle),
        "pt2": pt2_snippet(bundle) if "pt2" in result.files else
        "# Export with the .pt2 format checked to load the model with torch.export.",
    }
    return texts, SNIPPETS.index("onnx" if "onnx" in result.files else "python")


# -- the model ------------------------------------------------------------------------------------------
class ExportModel:
    """The Export page's settings and job. Events: ``message(text, level, details)``,
    ``messageCleared()``, ``busyStarted(label, job, steps)``, ``busyStopped()``, ``enabledChanged()``,
    ``resultShown(result)``, ``resultCleared()``."""

    EVENTS = ("message", "messageCleared", "busyStarted", "busyStopped", "enabledChanged", "resultShown",
              "resultCleared")

    def __init__(self, host: Host, jobs: JobRunner, *, source: Callable[[], str | None],
                 has_sources: Callable[[], bool], confirm_replace: Callable[[Path], bool]):
        self.host, self.jobs = host, jobs
        self.source, self.has_sources, self.confirm_replace = source, has_sources, confirm_replace
        for name in self.EVENTS:
            setattr(self, name, Event())
        self.formats: list[str] = list(DEFAULT_FORMATS)
        self.folder = ""  # the destination typed ("": the default, ``destination()``)
        self.name = ""  # the bundle folder's name typed ("": from the project and the run)
        self.result: Any = None  # core.export.ExportResult of the last export
        self.job: Job | None = None

    # -- settings, remembered in the project --------------------------------------------------------
    def load(self) -> None:
        """The settings saved in ``project.ui`` (a project was opened); no result shown."""
        ui = self.host.project.ui
        saved = ui.export_formats if ui.export_formats is not None else DEFAULT_FORMATS
        self.formats = [f for f in FORMATS if f == "safetensors" or f in saved]
        self.folder, self.name = ui.export_dir or "", ui.export_name or ""
        self.result = None
        self.resultCleared.emit()
        self.messageCleared.emit()

    def edit(self, *, formats: list[str] | None = None, folder: str | None = None, name: str | None = None) -> bool:
        """The user changed a setting (or the run): remember them all in ``project.ui``; True when any
        changed there."""
        if formats is not None:
            self.formats = [f for f in FORMATS if f == "safetensors" or f in formats]  # the bundle: always
        if folder is not None:
            self.folder = folder.strip()
        if name is not None:
            self.name = name.strip()
        ui = self.host.project.ui
        values = {"export_run": self.source(), "export_formats": self.formats, "export_dir": self.folder,
                  "export_name": self.name}
        changed = False
        for key, value in values.items():
            value = value or None  # empty: unset
            if getattr(ui, key) != value:
                setattr(ui, key, list(value) if isinstance(value, list) else value)
                changed = True
        if changed:
            self.host.mark_changed("ui")
        return changed

    def destination(self) -> str:
        """The folder the bundle folder goes into (default: ``exports`` beside the project file)."""
        if self.folder:
            return self.folder
        if self.host.path is not None:
            return str(Path(self.host.path).resolve().parent / "exports")
        return str(Path.home() / "Transfer Studio exports")

    def bundle_name(self) -> str:
        if self.name:
            return safe_name(self.name)
        run = self.source()
        stem = safe_name(self.host.project.name or "model")
        return f"{stem}-{safe_name(Path(run).name)}" if run else stem

    def target(self) -> Path:
        return Path(self.destination()).expanduser() / self.bundle_name()

    def target_text(self) -> str:
        return f"Writes {self.target()}" if self.has_sources() else "Train a model first: there is no run to export yet."

    # -- exporting -----------------------------------------------------------------------------------------
    def busy(self) -> bool:
        return self.job is not None and self.job.is_running()

    def can_export(self) -> bool:
        return self.has_sources() and not self.busy()

    def export(self) -> Job | None:
        """Export the chosen run; asks before replacing an existing bundle. None when nothing started."""
        run = self.source()
        if not run or self.busy():
            return None
        out = self.target()
        try:
            if norm_path(out) == norm_path(run) or norm_path(run) in {norm_path(p) for p in out.parents}:
                raise UserError("The destination is inside the run folder: choose another folder.")
            if out.exists() and not out.is_dir():
                raise UserError(f"{out} is a file: choose another name or destination.")
        except UserError as exc:
            self.message.emit(str(exc), "error", "")
            return None
        if run_folder.bundle_exists(out) and not self.confirm_replace(out):
            self.host.status("Export cancelled: the existing files are kept", 4000)
            return None
        self.messageCleared.emit()
        self.result = None
        self.resultCleared.emit()
        formats = list(self.formats)
        job = self.jobs(run_export, run, str(out), formats, name="export", on_result=self._on_result,
                        on_error=self._on_error, on_cancelled=lambda: self.host.status("Export cancelled", 3000),
                        on_finished=self._on_finished)
        if job.is_running():  # a job the (synchronous test) runner finished already is over
            self.job = job
            self.busyStarted.emit(f"Exporting {Path(run).name}", job, export_steps(formats))
        self.enabledChanged.emit()
        return job

    def _on_result(self, value: tuple[Any, str]) -> None:
        result, failure = value
        self.result = result
        self.resultShown.emit(result)
        if failure:
            self.message.emit(f"Verification failed: {failure}. The files were written but do not match "
                              "PyTorch; do not use the failing formats.", "error", "")
        else:
            self.host.status(f"Exported to {result.out_dir}", 6000)

    def _on_error(self, message: str, details: str) -> None:
        self.message.emit(message, "error", details)

    def _on_finished(self) -> None:
        self.busyStopped.emit()
        self.job = None
        self.enabledChanged.emit()
