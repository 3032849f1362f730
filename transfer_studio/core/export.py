"""Export bundles: write a trained run as files other programs load, verify them, load them back.

A bundle is a folder:

  model.json         what it takes to rebuild and feed the network: the catalog architecture and the
                     structural surgery ops, class names, preprocessing, the source run, and the
                     verification results of this export. Written last: its presence marks a
                     complete bundle.
  model.safetensors  the weights (always written; ``load_bundle`` reads these, never a pickle)
  model.onnx         optional; dynamic batch dimension; input "input", output "logits"
  model.pt2          optional; ``torch.export`` program with a dynamic batch dimension

The files are written into a hidden staging folder inside the destination (``.export-XXXXXXXX.tmp``)
and moved into place only when all of them are written and verified: a full disk, a read-only folder,
a cancel or a crash while writing leaves a bundle already there untouched. model.json records the
SHA-256 of every file, and ``load_bundle`` checks the weights against it.

Every export verifies itself on the run's validation images (up to ``VERIFY_MAX_IMAGES``): the
network rebuilt from model.json + model.safetensors, onnxruntime on model.onnx, and the reloaded
model.pt2 must match the run's own network within ``TOLERANCE`` (max abs diff of the logits) and agree
on every top-1.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import secrets
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transfer_studio import config
from transfer_studio.config import ModelSpec, Project, SurgeryOp
from transfer_studio.core import run_folder
from transfer_studio.errors import Cancelled, UserError

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]

BUNDLE_FORMAT = "transfer-studio-bundle"
BUNDLE_SCHEMA_VERSION = 1
MODEL_JSON = run_folder.BUNDLE_META  # the folders' file names: core/run_folder.py
FILES = run_folder.BUNDLE_FILES
FORMATS = tuple(FILES)
RUN_PROJECT = run_folder.PROJECT
RUN_WEIGHTS = run_folder.BEST
# Ops that change the network's structure; freeze flags do not matter to a bundle.
STRUCTURAL_OPS = frozenset({"replace_head", "replace", "insert_after", "remove"})
TOLERANCE = 1e-4
VERIFY_MAX_IMAGES = 256
VERIFY_MAX_BYTES = 256 * 2**20  # preprocessed verification images held in memory at once
VERIFY_BATCH = 32
INPUT_NAME, OUTPUT_NAME = "input", "logits"
_PROTOBUF_LIMIT = 2**31 - 1  # a single-file ONNX model cannot be larger


STAGING_PREFIX = ".export-"


class BundleWriteError(UserError):
    """The bundle could not be written (disk full, read-only folder); a bundle already in the
    destination is unchanged."""


class ExportVerificationError(RuntimeError):
    """An exported file disagrees with PyTorch. The bundle is kept, its model.json says what failed."""

    def __init__(self, message: str, result: ExportResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class ExportResult:
    out_dir: str
    files: dict[str, str]  # format -> absolute path (plus "model.json")
    verification: dict[str, Any]
    passed: bool
    meta: dict[str, Any] = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"out_dir": self.out_dir, "model": self.meta["architecture"]["model"],
                "classes": list(self.meta["classes"]), "files": dict(self.files),
                "passed": self.passed, "verification": self.verification}


# -- locating and loading ------------------------------------------------------------------------


source_kind = run_folder.source_kind


def load_run_project(run_dir: str | os.PathLike[str]) -> Project:
    run_dir = Path(run_dir)
    project = Project.load(run_dir / RUN_PROJECT)
    if not project.data.classes:
        raise UserError(f"the run in {run_dir} records no class names in its {RUN_PROJECT}; "
                        "it did not finish preparing its data")
    return project


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path} cannot be read as safetensors ({exc}); it is corrupt") from exc


def _load_weights(model: nn.Module, path: Path, what: str) -> None:
    state = _read_safetensors(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])[:300]
        raise UserError(f"{path} does not fit the network described by {what} ({detail})") from exc


def load_run(run_dir: str | os.PathLike[str]) -> tuple[nn.Module, Project]:
    """The network of a training run with its kept (best) weights, in eval mode, plus its project."""
    from transfer_studio.core.network import build_network

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir}")
    project = load_run_project(run_dir)
    weights = run_dir / RUN_WEIGHTS
    if not weights.is_file():
        raise UserError(f"the run in {run_dir} has no {RUN_WEIGHTS} yet (no epoch finished): "
                        "resume or finish training first")
    # The snapshot's surgery already holds the head the trainer gave it (replace_head).
    num_classes = len(project.data.classes)
    _check_fits_file(project, num_classes, weights, str(run_dir / RUN_PROJECT))  # before allocating
    model = build_network(project, weights=False, num_classes=num_classes)
    _load_weights(model, weights, f"{run_dir / RUN_PROJECT}")
    return model.float().eval(), project


def _check_fits_file(project: Project, num_classes: int, weights: Path, what: str) -> None:
    """Compare the network a description builds, on the meta device (no memory), with the tensor
    names and shapes in the weights file's header, before any real allocation: a hand-edited
    description with absurd layer sizes is refused instead of exhausting memory (a safetensors
    header cannot declare more data than its file holds)."""
    from safetensors import SafetensorError, safe_open

    from transfer_studio.core.network import build_network_meta, build_on_meta

    if not 1 <= num_classes <= MAX_CLASSES:
        raise UserError(f"{what} describes {num_classes} classes (at most {MAX_CLASSES}); it is damaged")
    try:
        with safe_open(str(weights), framework="pt") as fh:
            found = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{weights} cannot be read as safetensors ({exc}); it is corrupt") from exc
    try:
        # Layers the surgery adds are built on the meta device too (build_network_meta makes only the
        # catalog architecture there): a 12 GB layer in a description costs nothing to check.
        meta_net = build_on_meta(lambda: build_network_meta(project, num_classes=num_classes))
        expected = {k: tuple(v.shape) for k, v in meta_net.state_dict().items()}
    except Exception as exc:  # noqa: BLE001 - whatever a hand-edited description breaks: its fault
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{what} describes a network that cannot be built ({detail})") from exc
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [f"{k} is {list(found[k])} in the file but {list(expected[k])} in the description"
              for k in expected if k in found and found[k] != expected[k]]
    if missing or unexpected or shapes:
        parts = ([f"missing {', '.join(missing[:3])}"] if missing else []) + \
                ([f"unexpected {', '.join(unexpected[:3])}"] if unexpected else []) + shapes[:3]
        raise UserError(f"{weights} does not fit the network described by {what} ({'; '.join(parts)})")


def _architecture(project: Project) -> dict[str, Any]:
    return {
        "model": project.model.name,
        "num_classes": len(project.data.classes),
        "image_size": project.train.image_size,
        "surgery": [{"op": op.op, "target": op.target, "params": op.params}
                    for op in project.surgery if op.op in STRUCTURAL_OPS],
    }


def _architecture_project(arch: dict[str, Any]) -> Project:
    project = Project(model=ModelSpec(name=arch["model"], weights="none"),
                      surgery=[SurgeryOp(op=o["op"], target=o.get("target", ""), params=dict(o.get("params", {})))
                               for o in arch.get("surgery", [])])
    project.train.image_size = arch.get("image_size")
    return project


def _network_from_architecture(arch: dict[str, Any]) -> nn.Module:
    """The catalog architecture, random init (weights are loaded next), with the surgery replayed."""
    from transfer_studio.core.network import build_network

    return build_network(_architecture_project(arch), weights=False, num_classes=int(arch["num_classes"]))


def read_bundle_meta(bundle_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """model.json of a bundle, checked; UserError when it is missing, corrupt or too new."""
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise UserError(f"bundle folder not found: {bundle_dir}")
    path = bundle_dir / MODEL_JSON
    if not path.is_file():
        raise UserError(f"{bundle_dir} is not an exported bundle: {MODEL_JSON} is missing "
                        "(create one with: transfer-studio export RUN_DIR --out DIR)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is corrupt (not valid JSON: {exc}); export the run again") from exc
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise UserError(f"{path} is not a Transfer Studio bundle description; export the run again")
    version = meta.get("schema_version")
    if not isinstance(version, int):
        raise UserError(f"{path} has an invalid schema_version {version!r}; export the run again")
    if version > BUNDLE_SCHEMA_VERSION:
        raise UserError(f"{path} was written by a newer Transfer Studio (bundle schema {version}; this "
                        f"version reads up to {BUNDLE_SCHEMA_VERSION}): update Transfer Studio to load it")
    try:
        problem = _meta_problem(meta)
        bundle_preprocess(meta)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path} is incomplete or damaged (bad or missing {exc}); export the run again") from exc
    if problem:
        raise UserError(f"{path} is damaged ({problem}); export the run again")
    return meta


MAX_CLASSES = 100_000
MAX_IMAGE_SIDE = 8192  # pixels: input size, resize and crop of a bundle's preprocessing
MAX_SURGERY_OPS = 1000


def _meta_problem(meta: dict[str, Any]) -> str | None:
    """What is wrong with a model.json's fields, or None. Bounds keep a hand-edited file from
    making the app allocate absurd amounts of memory; file names must stay inside the bundle."""
    arch = meta["architecture"]
    if not isinstance(arch, dict) or not isinstance(arch["model"], str):
        return "architecture.model must be a model name"
    n = arch["num_classes"]
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_CLASSES:
        return f"architecture.num_classes must be a whole number from 1 to {MAX_CLASSES}"
    size = arch.get("image_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= MAX_IMAGE_SIDE):
        return f"architecture.image_size must be from 8 to {MAX_IMAGE_SIDE} pixels"
    ops = arch.get("surgery", [])
    if not isinstance(ops, list) or len(ops) > MAX_SURGERY_OPS or not all(
            isinstance(o, dict) and isinstance(o.get("op"), str) and isinstance(o.get("target", ""), str)
            and isinstance(o.get("params", {}), dict) for o in ops):
        return "architecture.surgery must be a list of operations"
    classes = meta["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        return "classes must be a list of names"
    if len(classes) != n:
        return "architecture and class names disagree"
    files = meta.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(k, str) for k in files):
        return "files must map formats to file names"
    for name in files.values():
        if not _plain_file_name(name):
            return f"files names {name!r}, which is not a file inside the bundle folder"
    return None


def _plain_file_name(name: Any) -> bool:
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name
            and "\0" not in name and not os.path.isabs(name) and ":" not in name)


def bundle_file(bundle_dir: Path, meta: dict[str, Any], fmt: str) -> Path:
    """The path of a bundle's file for ``fmt``, checked to be a plain file inside the bundle folder
    (a name with a folder in it, or a link out of the folder, is refused: UserError)."""
    name = meta.get("files", {}).get(fmt, FILES[fmt])
    if not _plain_file_name(name):
        raise UserError(f"{bundle_dir / MODEL_JSON} names {name!r} for {fmt}: not a file inside the bundle "
                        "folder; refused")
    path = bundle_dir / name
    if not path.is_file():
        raise UserError(f"the bundle in {bundle_dir} has no {name}; export the run again")
    real, folder = path.resolve(), bundle_dir.resolve()
    if real.parent != folder:
        raise UserError(f"{path} is a link to {real}, outside the bundle folder; refused")
    return path


def _check_checksum(path: Path, meta: dict[str, Any]) -> None:
    sums = meta.get("checksums", {})
    want = sums.get("sha256", {}).get(path.name) if isinstance(sums, dict) and isinstance(
        sums.get("sha256"), dict) else None
    if want is None:
        return  # a bundle from before checksums
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != want:
        raise UserError(f"{path} does not match the checksum in {MODEL_JSON}: the file is corrupt or "
                        "was replaced; export the run again")


def bundle_preprocess(meta: dict[str, Any]) -> Any:
    """The bundle's preprocessing as a ``catalog.Preprocess``."""
    from transfer_studio.core.catalog import Preprocess

    p = meta["preprocessing"]
    pre = Preprocess(resize=int(p["resize"]), crop=int(p["crop"]),
                     mean=tuple(float(v) for v in p["mean"]), std=tuple(float(v) for v in p["std"]),
                     interpolation=str(p.get("interpolation", "bilinear")))
    if not (1 <= pre.crop <= MAX_IMAGE_SIDE and 1 <= pre.resize <= MAX_IMAGE_SIDE):
        raise ValueError(f"preprocessing sizes (resize and crop at most {MAX_IMAGE_SIDE} pixels)")
    if len(pre.mean) != 3 or len(pre.std) != 3 or not all(math.isfinite(v) for v in (*pre.mean, *pre.std)) \
            or not all(v > 0 for v in pre.std):
        raise ValueError("preprocessing mean/std (three finite numbers each, std > 0)")
    return pre


def load_bundle(bundle_dir: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a bundle's network from model.json and load model.safetensors (never a pickle).

    Returns the model in eval mode on the CPU and the model.json contents.
    """
    bundle_dir = Path(bundle_dir)
    meta = read_bundle_meta(bundle_dir)
    weights = bundle_file(bundle_dir, meta, "safetensors")
    _check_checksum(weights, meta)
    arch = meta["architecture"]
    _check_fits_file(_architecture_project(arch), arch["num_classes"], weights, str(bundle_dir / MODEL_JSON))
    model = _network_from_architecture(arch)
    _load_weights(model, weights, str(bundle_dir / MODEL_JSON))
    return model.float().eval(), meta


bundle_exists = run_folder.bundle_exists


# -- exporting -----------------------------------------------------------------------------------


def parse_formats(formats: Sequence[str] | str) -> list[str]:
    if isinstance(formats, str):
        formats = formats.split(",")
    wanted = [f.strip().lower() for f in formats if f.strip()]
    unknown = [f for f in wanted if f not in FILES]
    if unknown:
        raise UserError(f"unknown export format(s) {', '.join(unknown)}: choose from {', '.join(FORMATS)}")
    # The weights and model.json are the bundle itself: always written.
    return [f for f in FORMATS if f == "safetensors" or f in wanted]


def _verification_inputs(project: Project, preprocess: Any, limit: int) -> tuple[torch.Tensor, str]:
    """Preprocessed validation images of the run (else test, else train images), or seeded noise when
    its data folder is gone."""
    from transfer_studio.core.augment import build_transform
    from transfer_studio.core.imageio import ImageReadError, load_rgb

    split = project.data.split or {}
    root = Path(project.data.root) if project.data.root else None
    transform = build_transform(preprocess, None, train=False)
    for part in ("val", "test", "train"):
        rels = split.get(part) or []
        if root is None or not root.is_dir() or not rels:
            continue
        tensors = []
        for rel in rels:
            if len(tensors) >= limit:
                break
            try:
                tensors.append(transform(load_rgb(root / rel)))
            except (ImageReadError, OSError):
                continue
        if tensors:
            return torch.stack(tensors).float(), f"{part} images"
    gen = torch.Generator().manual_seed(0)
    return torch.randn(16, 3, preprocess.crop, preprocess.crop, generator=gen), "random inputs (data folder unavailable)"


def _batched(fn: Callable[[torch.Tensor], np.ndarray], x: torch.Tensor) -> np.ndarray:
    return np.concatenate([fn(x[i:i + VERIFY_BATCH]) for i in range(0, len(x), VERIFY_BATCH)])


def _compare(reference: np.ndarray, other: np.ndarray) -> dict[str, Any]:
    diff = float(np.abs(reference.astype(np.float64) - other.astype(np.float64)).max())
    agree = int((reference.argmax(1) == other.argmax(1)).sum())
    n = len(reference)
    return {"max_abs_diff": diff, "top1_agree": agree, "images": n,
            "passed": bool(diff <= TOLERANCE and agree == n)}


def _out_of_place(model: nn.Module) -> None:
    """Make in-place activations (ReLU(inplace=True), ReLU6, ...) out-of-place: the same numbers, and
    the ONNX exporter's decomposition of in-place ops costs about as much as the rest of the export
    (measured: EfficientNet-Lite0 conversion time halved)."""
    for module in model.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False


def _torch_export(model: nn.Module, example: torch.Tensor, name: str) -> Any:
    from torch.export import Dim

    try:
        return torch.export.export(model, (example,), dynamic_shapes=({0: Dim("batch", min=1, max=65536)},))
    except Exception as exc:  # noqa: BLE001 - torch.export's many failure types: one actionable line
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"torch.export cannot capture {name} ({type(exc).__name__}: {first}); export "
                        "without pt2: --format safetensors,onnx") from exc


def _onnx_bytes(model: nn.Module, example: torch.Tensor, program: Any | None) -> tuple[bytes, str, str]:
    """(serialized ONNX, exporter used, why the dynamo exporter was not used or "")."""
    try:
        from torch.export import Dim

        if program is not None:
            onnx_program = torch.onnx.export(program, (example,), dynamo=True, input_names=[INPUT_NAME],
                                             output_names=[OUTPUT_NAME], verbose=False)
        else:
            onnx_program = torch.onnx.export(model, (example,), dynamo=True, input_names=[INPUT_NAME],
                                             output_names=[OUTPUT_NAME], verbose=False,
                                             dynamic_shapes=({0: Dim("batch", min=1, max=65536)},))
        proto = onnx_program.model_proto
        _name_batch_dim(proto)
        if proto.ByteSize() > _PROTOBUF_LIMIT:
            raise UserError("the model is larger than 2 GB, too large for a single-file ONNX export: "
                            "export safetensors and pt2 only (--format safetensors,pt2)")
        return proto.SerializeToString(), "dynamo", ""
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any exporter failure: try the older exporter
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter, chosen on purpose
        torch.onnx.export(model, (example,), buf, dynamo=False, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], opset_version=17,
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    return buf.getvalue(), "torchscript", reason


def _name_batch_dim(proto: Any) -> None:
    """Call the symbolic batch dimension "batch" (an exported program names it e.g. "s77")."""
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    symbol = dims[0].dim_param if dims else ""
    if not symbol or symbol == "batch":
        return
    for value in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param == symbol:
                dim.dim_param = "batch"


def _onnx_outputs(data: bytes, x: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return _batched(lambda b: session.run(None, {name: b.numpy()})[0], x)


def export_run(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
               formats: Sequence[str] | str = FORMATS, *, progress: Progress | None = None,
               cancel: Cancel | None = None) -> ExportResult:
    """Write the bundle of a training run to ``out_dir`` and verify every exported file.

    model.safetensors and model.json are always written; "onnx" and "pt2" on request. An existing
    bundle in ``out_dir`` is replaced (callers decide whether to ask first: ``bundle_exists``) only
    once the new files are all written and verified; an export that fails or is cancelled before
    that leaves it untouched (BundleWriteError for a full disk or a read-only folder). Raises
    ExportVerificationError (after writing) when an exported file disagrees with PyTorch.
    """

    from transfer_studio.core.network import project_preprocess

    wanted = parse_formats(formats)
    run_dir, out_dir = Path(run_dir).resolve(), Path(out_dir).resolve()
    if source_kind(run_dir) != "run":
        raise UserError(f"{run_dir} is an exported bundle, not a training run: export a run folder")
    if out_dir == run_dir or run_dir in out_dir.parents:
        raise UserError(f"the bundle folder {out_dir} is inside the run folder: choose a folder outside it")
    total = 3 + len(wanted)  # load, one step per file, verify, model.json
    step = 0

    def advance() -> None:
        nonlocal step
        if cancel is not None and cancel():
            raise Cancelled("export cancelled")
        step += 1
        if progress:
            progress(step, total)

    if progress:
        progress(0, total)
    model, project = load_run(run_dir)
    preprocess = project_preprocess(project)
    arch = _architecture(project)
    per_image = 3 * preprocess.crop * preprocess.crop * 4
    limit = max(8, min(VERIFY_MAX_IMAGES, VERIFY_MAX_BYTES // per_image))
    inputs, inputs_kind = _verification_inputs(project, preprocess, limit)
    with torch.inference_mode():
        reference = _batched(lambda b: model(b).float().numpy(), inputs)
    advance()

    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} is a file: choose a folder for the bundle")
    try:
        stage = _make_staging(out_dir)
    except OSError as exc:
        raise _write_error(exc, out_dir) from exc
    try:
        result_obj = _write_bundle(stage, out_dir, wanted, model, project, run_dir, arch, preprocess,
                                   inputs, inputs_kind, reference, advance)
    except OSError as exc:
        raise _write_error(exc, out_dir) from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if not result_obj.passed:
        verification = result_obj.verification
        failed = [f"{f}: max abs diff {verification[f]['max_abs_diff']:.2e}, top-1 agree "
                  f"{verification[f]['top1_agree']}/{verification[f]['images']}"
                  for f in wanted if not verification[f]["passed"]]
        raise ExportVerificationError(
            f"export verification failed ({'; '.join(failed)}; tolerance {TOLERANCE:g}); the bundle in "
            f"{out_dir} is kept and model.json records the results", result_obj)
    return result_obj


def _make_staging(out_dir: Path) -> Path:
    """A fresh hidden folder inside ``out_dir`` for the new files; stale ones (a killed export's)
    are removed first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for entry in out_dir.iterdir():
        if entry.name.startswith(STAGING_PREFIX) and entry.name.endswith(".tmp") and entry.is_dir() \
                and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
    stage = out_dir / f"{STAGING_PREFIX}{secrets.token_hex(4)}.tmp"
    stage.mkdir()
    return stage


def _write_error(exc: OSError, out_dir: Path) -> BundleWriteError:
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        reason, advice = "the disk is full", "free some space or choose another folder"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason, advice = "the folder is read-only or not yours to write", "choose another folder"
    else:
        reason, advice = exc.strerror or str(exc), "choose another folder"
    return BundleWriteError(f"could not write the bundle in {out_dir}: {reason}; {advice}. A bundle already "
                            "there is unchanged")


def _commit(stage: Path, out_dir: Path, wanted: Sequence[str]) -> None:
    """Move the staged files into place. model.json goes first and comes back last: a crash in
    between leaves a bundle that says it is incomplete, never one that mixes two exports."""
    (out_dir / MODEL_JSON).unlink(missing_ok=True)
    for fmt, name in FILES.items():
        if fmt in wanted:
            os.replace(stage / name, out_dir / name)
        else:
            (out_dir / name).unlink(missing_ok=True)  # a stale file from an earlier export
    os.replace(stage / MODEL_JSON, out_dir / MODEL_JSON)
    config.fsync_dir(out_dir)


def _write_bundle(stage: Path, out_dir: Path, wanted: list[str], model: nn.Module, project: Project,
                  run_dir: Path, arch: dict[str, Any], preprocess: Any, inputs: torch.Tensor,
                  inputs_kind: str, reference: np.ndarray, advance: Callable[[], None]) -> ExportResult:
    from safetensors.torch import save as safetensors_save

    checksums: dict[str, str] = {}

    def write(name: str, data: bytes) -> Path:
        config.atomic_write_bytes(stage / name, data)
        checksums[name] = hashlib.sha256(data).hexdigest()
        return stage / name

    files: dict[str, str] = {}
    verification: dict[str, Any] = {"inputs": inputs_kind, "images": len(inputs), "tolerance": TOLERANCE}

    # Weights, and the network rebuilt from the bundle's own description (what load_bundle does).
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    weights_path = write(FILES["safetensors"], safetensors_save(state, {"format": "pt"}))
    files["safetensors"] = str(out_dir / FILES["safetensors"])
    rebuilt = _network_from_architecture(arch)
    _load_weights(rebuilt, weights_path, "the exported architecture")
    rebuilt.float().eval()
    with torch.inference_mode():
        verification["safetensors"] = _compare(reference, _batched(lambda b: rebuilt(b).numpy(), inputs))
    advance()

    example = inputs[:2] if len(inputs) >= 2 else inputs.repeat(2, 1, 1, 1)
    _out_of_place(model)
    program = None
    if "pt2" in wanted:
        program = _torch_export(model, example, project.model.name)
        buf = io.BytesIO()
        torch.export.save(program, buf)
        pt2_path = write(FILES["pt2"], buf.getvalue())
        files["pt2"] = str(out_dir / FILES["pt2"])
        # Reloading our own file, just written (torch.export.load unpickles: never for foreign files).
        loaded = torch.export.load(str(pt2_path)).module()
        with torch.inference_mode():
            verification["pt2"] = _compare(reference, _batched(lambda b: loaded(b).float().numpy(), inputs))
        advance()

    if "onnx" in wanted:
        import onnxruntime

        data, exporter, fallback_reason = _onnx_bytes(model, example, program)
        write(FILES["onnx"], data)
        files["onnx"] = str(out_dir / FILES["onnx"])
        result = _compare(reference, _onnx_outputs(data, inputs))
        result.update({"exporter": exporter, "onnxruntime": onnxruntime.__version__})
        if fallback_reason:
            result["dynamo_failed"] = fallback_reason
        verification["onnx"] = result
        advance()

    passed = all(verification[f]["passed"] for f in wanted)
    verification["passed"] = passed
    advance()

    from transfer_studio import __version__

    meta = {
        "format": BUNDLE_FORMAT,
        "schema_version": BUNDLE_SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "transfer_studio_version": __version__,
        "torch_version": torch.__version__,
        "architecture": arch,
        "classes": list(project.data.classes),
        "preprocessing": {
            "resize": preprocess.resize, "crop": preprocess.crop,
            "mean": list(preprocess.mean), "std": list(preprocess.std),
            "interpolation": preprocess.interpolation,
            "input_size": [3, preprocess.crop, preprocess.crop],
            # How a consumer feeds the network: RGB, resize the shorter side, centre-crop, scale to
            # [0, 1], then (x - mean) / std per channel; NCHW float32.
            "color": "RGB", "scale": 1.0 / 255.0, "layout": "NCHW",
        },
        "inputs": {"name": INPUT_NAME, "shape": ["batch", 3, preprocess.crop, preprocess.crop], "dtype": "float32"},
        "outputs": {"name": OUTPUT_NAME, "shape": ["batch", len(project.data.classes)], "dtype": "float32",
                    "meaning": "logits (softmax gives class probabilities)"},
        "files": {f: FILES[f] for f in wanted},
        "checksums": {"sha256": dict(checksums)},
        "source": _source_info(run_dir, project),
        "verification": verification,
    }
    config.atomic_write_text(stage / MODEL_JSON, json.dumps(meta, indent=2) + "\n")
    _commit(stage, out_dir, wanted)
    files["model.json"] = str(out_dir / MODEL_JSON)
    advance()
    return ExportResult(out_dir=str(out_dir), files=files, verification=verification, passed=passed, meta=meta)


def _source_info(run_dir: Path, project: Project) -> dict[str, Any]:
    info: dict[str, Any] = {"run_dir": str(run_dir), "project": project.name, "data_root": project.data.root}
    run_json = run_dir / run_folder.RUN
    if run_json.is_file():
        try:
            run = json.loads(run_json.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            run = {}
        if isinstance(run, dict):
            for key in ("best_epoch", "epochs_completed", "val_accuracy", "val_loss", "strategy"):
                if key in run:
                    info[key] = run[key]
    return info
