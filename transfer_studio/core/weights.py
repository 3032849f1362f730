"""Weights on disk: reading state-dict files safely, fitting them to a model, the hub cache, downloads.

Loading never unpickles code: ``.safetensors`` files hold only tensors, and ``.pth/.pt/.bin/.ckpt``
files go through ``torch.load(weights_only=True)``, which refuses any pickled object other than
tensors and plain containers. A whole pickled ``nn.Module`` is therefore refused with an explanation
(its code never runs).
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import pickletools
import re
import urllib.error
import urllib.request
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transfer_studio.config import create_temp_file, fsync_dir
from transfer_studio.errors import Cancelled, UserError

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]

STATE_DICT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
# Dict keys under which training scripts commonly nest the weights.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "weights", "params")
# Key prefixes added by nn.DataParallel/DistributedDataParallel and torch.compile.
_STRIP_PREFIXES = ("module.", "_orig_mod.")
# torch hub's convention: "<name>-<first hex digits of sha256>.<ext>".
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")
DOWNLOAD_CHUNK = 256 * 1024
# Pickle globals that torch.save itself writes for a plain state dict (everything else is an object).
_SAFE_GLOBAL_PREFIXES = ("collections.OrderedDict", "torch._utils._rebuild", "torch.serialization",
                         "torch._tensor", "torch.device", "torch.Size", "_codecs.encode")


# -- reading -----------------------------------------------------------------------------------------
def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict (parameter name -> tensor) from .safetensors or .pth/.pt/.bin/.ckpt.

    Common wrappers are unwrapped ({"state_dict": ...}, {"model": ...}, "module." prefixes).
    Raises UserError for a missing, truncated or corrupt file, a pickled module or other Python
    objects (refused: loading them would run code), and for anything that is not a state dict.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"weights file not found: {path}")
    if not path.is_file():
        raise UserError(f"weights path is not a file: {path}")
    if path.stat().st_size == 0:
        raise UserError(f"weights file {path} is empty")
    if path.suffix.lower() == ".safetensors":
        obj: Any = _load_safetensors(path)
    else:
        obj = _torch_load(path)
    return unwrap_state_dict(obj, str(path))


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except SafetensorError as exc:
        raise UserError(f"weights file {path} is truncated or corrupt (safetensors: {exc})") from exc
    except OSError as exc:
        raise UserError(f"cannot read weights file {path}: {exc}") from exc


def _torch_load(path: Path) -> Any:
    import pickle

    is_zip = zipfile.is_zipfile(path)
    try:
        with warnings.catch_warnings():
            # Raw pickles (not torch.save's format) make torch warn about their protocol: noise here.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            # mmap avoids a second in-memory copy of large checkpoints; only the zip format supports it.
            return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as exc:
        refused = _unsafe_global(path, str(exc))
        if refused:
            raise UserError(
                f"refused to load {path}: it contains pickled Python objects ({refused}), e.g. a whole "
                "saved model rather than its weights; loading it would run code from the file. "
                "Save the weights instead: torch.save(model.state_dict(), path) or a .safetensors file"
            ) from exc
        raise UserError(f"{path} is not a PyTorch weights file, or it is corrupt ({_first_line(exc)})") from exc
    except (EOFError, RuntimeError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"weights file {path} is truncated or corrupt ({_first_line(exc)})") from exc
    except OSError as exc:
        raise UserError(f"cannot read weights file {path}: {exc}") from exc


def _unsafe_global(path: Path, message: str) -> str | None:
    """The first non-tensor Python object a pickle refers to, found without executing the pickle."""
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    if m:
        return m.group(1)
    try:
        for name in _pickle_globals(path):
            if not name.startswith(_SAFE_GLOBAL_PREFIXES) and not name.endswith("Storage"):
                return name
    except Exception:  # noqa: BLE001 - best effort: a garbled pickle is reported as corrupt instead
        return None
    return None


def _pickle_globals(path: Path, limit: int = 64 * 1024 * 1024) -> Iterable[str]:
    """Names of the globals in a file's pickle stream(s), read with pickletools (never executed)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            pkls = [n for n in zf.namelist() if n.endswith("data.pkl")]
            data = zf.read(pkls[0]) if pkls else b""
    else:
        with open(path, "rb") as fh:
            data = fh.read(limit)
    stream = io.BytesIO(data)
    for _ in range(6):  # the legacy torch.save format is several pickles in a row
        if stream.tell() >= len(data):
            return
        strings: list[str] = []
        for opcode, arg, _pos in pickletools.genops(stream):
            if opcode.name in ("GLOBAL", "INST") and isinstance(arg, str):
                yield arg.replace(" ", ".")
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                yield f"{strings[-2]}.{strings[-1]}"
            elif isinstance(arg, str):
                strings.append(arg)


def unwrap_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The tensor mapping inside what a weights file held, or UserError saying what it holds instead."""
    sd = _find_tensor_dict(obj, depth=2)
    if sd is None:
        if isinstance(obj, Mapping):
            keys = ", ".join(str(k) for k in list(obj)[:6]) or "none"
            raise UserError(
                f"{source} is not a state dict: it holds a dict whose values are not tensors (keys: {keys}); "
                "expected a mapping of parameter names to tensors, e.g. torch.save(model.state_dict(), path)"
            )
        kind = "a tensor" if isinstance(obj, torch.Tensor) else f"a {type(obj).__name__}"
        raise UserError(
            f"{source} is not a state dict: it holds {kind}; expected a mapping of parameter names to "
            "tensors, e.g. torch.save(model.state_dict(), path)"
        )
    if not sd:
        raise UserError(f"{source} holds an empty state dict (no tensors)")
    return _strip_prefixes(sd)


def _find_tensor_dict(obj: Any, depth: int) -> dict[str, torch.Tensor] | None:
    if not isinstance(obj, Mapping):
        return None
    if obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return obj  # type: ignore[return-value]  (keeps _metadata)
    if not obj:
        return {}
    if depth > 0:
        for key in _WRAPPER_KEYS:
            if key in obj:
                found = _find_tensor_dict(obj[key], depth - 1)
                if found:
                    return found
    return None


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    metadata = getattr(sd, "_metadata", None)  # per-module format versions some loaders need
    changed = True
    while changed:
        changed = False
        for prefix in _STRIP_PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                if metadata is not None:
                    metadata = {(k[len(prefix):] if k.startswith(prefix) else k): v
                                for k, v in metadata.items() if k != prefix.rstrip(".")}
                changed = True
    return _with_metadata(sd, metadata)


def _with_metadata(sd: Mapping[str, torch.Tensor], metadata: Any) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = OrderedDict(sd)
    if metadata is not None:
        out._metadata = metadata  # type: ignore[attr-defined]
    return out


# -- fitting to a model --------------------------------------------------------------------------------
def check_fit(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str, model_name: str,
              ignore_prefixes: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """The subset of ``state_dict`` to load into ``model``; UserError naming the first mismatches.

    Works on meta-device models (only names and shapes are compared). Keys under ``ignore_prefixes``
    (e.g. auxiliary heads the catalog removes) are dropped when the model has no such keys; a missing
    BatchNorm ``num_batches_tracked`` (older checkpoints) is tolerated.
    """
    expected = model.state_dict()
    sd = {k: v for k, v in state_dict.items() if k in expected or not k.startswith(ignore_prefixes)}
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in expected]
    shapes = [(k, tuple(sd[k].shape), tuple(expected[k].shape)) for k in sd
              if k in expected and sd[k].shape != expected[k].shape]
    if not (missing or unexpected or shapes):
        return _with_metadata(sd, getattr(state_dict, "_metadata", None))
    parts = []
    if missing and len(unexpected) == len(sd):
        parts.append(f"none of its {len(sd)} tensor names match (weights of another architecture?)")
    if missing:
        parts.append(f"{len(missing)} missing keys ({_first(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({_first(unexpected)})")
    if shapes:
        detail = ", ".join(f"{k} is {list(a)} in the file but {list(b)} in the model" for k, a, b in shapes[:3])
        more = f" and {len(shapes) - 3} more" if len(shapes) > 3 else ""
        parts.append(f"{len(shapes)} shape mismatches ({detail}{more})")
    raise UserError(f"{source} does not fit {model_name}: " + "; ".join(parts))


def load_fitted(model: nn.Module, sd: Mapping[str, torch.Tensor]) -> None:
    """Copy a state dict that passed ``check_fit`` into ``model`` (strict, dtype converted)."""
    for name, buf in model.named_buffers():
        if name.endswith("num_batches_tracked") and name not in sd:
            buf.zero_()  # may hold uninitialised memory after to_empty()
    expected = model.state_dict()
    missing_ok = {k for k in expected if k.endswith("num_batches_tracked") and k not in sd}
    # Modules read their format version from _metadata (MNASNet refuses to load without one); a file
    # without it (safetensors, a re-keyed dict) is taken to be in the current format.
    metadata = getattr(sd, "_metadata", None)
    sd = _with_metadata(sd, metadata if metadata is not None else getattr(expected, "_metadata", None))
    result = model.load_state_dict(sd, strict=False)
    left = set(result.missing_keys) - missing_ok
    if left or result.unexpected_keys:  # check_fit ran first: this would be a bug, not bad input
        raise RuntimeError(f"state dict did not load fully: {sorted(left)[:3]} {result.unexpected_keys[:3]}")


def _first(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


def _first_line(exc: BaseException) -> str:
    """A short reason from a library error: torch's weights-only errors carry advice (re-run with
    weights_only=False) that must not reach the user, so only the unpickler's own reason is kept."""
    text = " ".join(str(exc).split())
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    text = text.split(" Check the documentation", 1)[0]
    text = re.split(r"(?<=[a-z0-9)])\. ", text, maxsplit=1)[0].strip()
    return (text or type(exc).__name__)[:160]


# -- hub cache and downloads ---------------------------------------------------------------------------
def hub_checkpoint_dir() -> Path:
    """Where pretrained weights files are looked for and downloaded to, read at call time: this
    machine's weights folder if one is set (Settings, ``TS_WEIGHTS_DIR``), else torch hub's
    checkpoint folder (``$TORCH_HOME/hub/checkpoints``)."""
    from transfer_studio.machine_settings import weights_dir

    return weights_dir() or Path(torch.hub.get_dir()) / "checkpoints"


def cache_path_for_url(url: str) -> Path:
    return hub_checkpoint_dir() / url.rsplit("/", 1)[-1]


def hash_prefix_from_filename(name: str) -> str | None:
    """The sha256 prefix torch hub encodes in a file name (``resnet18-f37072fd.pth`` -> ``f37072fd``)."""
    m = _HASH_IN_NAME.search(name)
    return m.group(1) if m else None


def downloads_disabled() -> bool:
    return os.environ.get("TS_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def download_file(url: str, dest: str | os.PathLike[str], *, sha256_prefix: str | None = None,
                  progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                  timeout: float = 30.0) -> Path:
    """Stream ``url`` to a temp file next to ``dest``, verify, then ``os.replace`` it into place.

    progress(done_bytes, total_bytes) is called per chunk (total 0 when the server does not say);
    cancel() is polled per chunk and raises Cancelled. A partial file never remains at ``dest``.
    """
    dest = Path(dest)
    if downloads_disabled():
        raise UserError(f"downloads are disabled (TS_OFFLINE is set): cannot fetch {url}; "
                        f"copy the file to {dest} instead")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = create_temp_file(dest, ".part")  # 0666 minus the umask, as any new file
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            request = urllib.request.Request(url, headers={"User-Agent": "transfer-studio"})
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                total = int(resp.headers.get("Content-Length") or 0)
                digest = hashlib.sha256()
                done = 0
                if progress:
                    progress(0, total)
                while True:
                    if cancel is not None and cancel():
                        raise Cancelled(f"download of {url} cancelled")
                    chunk = resp.read(DOWNLOAD_CHUNK)
                    if not chunk:
                        break
                    fh.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
            fh.flush()
            os.fsync(fh.fileno())
        if total and done != total:
            raise UserError(f"download of {url} was cut short ({done} of {total} bytes); try again")
        if sha256_prefix and not digest.hexdigest().startswith(sha256_prefix):
            raise UserError(f"download of {url} is corrupt: its sha256 does not start with {sha256_prefix} "
                            "as its file name says; try again")
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
        return dest
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", None) or exc
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"HTTP {exc.code}: {reason}"
        raise UserError(f"could not download {url} ({reason}); copy the file to {dest} instead") from exc
    except OSError as exc:
        raise UserError(f"could not save the download to {dest}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
