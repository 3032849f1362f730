"""Backbone features on disk, computed once and reused by advice, training and later tools.

A *space* is everything that decides a feature vector besides the image: the model, the identity of
its weights, the surgery that changes the backbone, the preprocessing (image size, resize, crop,
mean, std), the layer whose input is captured, the transform ("eval", "hflip", ...) and the
precision. Within a space, features are keyed by the image file's content (BLAKE2b), so a renamed or
moved image is found again, and an edited one is recomputed.

Layout: ``ROOT/<space hash>/key.json`` plus shards ``part-*.safetensors``, each holding ``features``
(N x D float32) and ``digests`` (N x 16 uint8). A shard is written atomically and never changed;
concurrent writers each add their own shard. ROOT is ``$TS_FEATURE_CACHE``, the machine setting, or the user's cache folder
(``~/.cache/transfer-studio/features``).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from transfer_studio.config import atomic_write_bytes, atomic_write_text

ENV = "TS_FEATURE_CACHE"
DIGEST_BYTES = 16
_lock = threading.Lock()
_spaces: dict[tuple[str, str], FeatureSpace] = {}


def default_root() -> Path:
    """``$TS_FEATURE_CACHE``, else the machine setting (Settings dialog / `transfer-studio settings`),
    else the user's cache folder."""
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    from transfer_studio import machine_settings

    configured = machine_settings.feature_cache_dir()
    if configured is not None:
        return configured.expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "transfer-studio" / "features"


def file_digest(path: str | os.PathLike[str]) -> bytes:
    h = hashlib.blake2b(digest_size=DIGEST_BYTES)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.digest()


def digests(paths: Sequence[str], check: Callable[[], None] | None = None) -> list[bytes]:
    """Content digests of ``paths``, read on a few threads (I/O bound)."""
    out: list[bytes] = [b""] * len(paths)
    with ThreadPoolExecutor(max_workers=4) as pool:
        for start in range(0, len(paths), 256):
            if check is not None:
                check()
            chunk = paths[start:start + 256]
            for i, d in enumerate(pool.map(file_digest, chunk)):
                out[start + i] = d
    return out


def space_key(**parts: Any) -> str:
    """A stable JSON text for the parts that decide a feature vector."""
    return json.dumps(parts, sort_keys=True, default=str)


class FeatureSpace:
    """The features of one space: look up by content digest, add computed ones."""

    def __init__(self, folder: Path, key: str):
        self.folder = folder
        self.key = key
        self._index: dict[bytes, tuple[int, int]] = {}
        self._shards: list[torch.Tensor] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        """Load shards written since the last look (by this or another process)."""
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("part-*.safetensors")):
            if path.name in self._seen:
                continue
            self._seen.add(path.name)
            try:
                data = load_file(str(path))
                feats, keys = data["features"], data["digests"]
            except (SafetensorError, OSError, KeyError, RuntimeError):
                continue  # a damaged shard is ignored: its images are computed again
            if feats.ndim != 2 or keys.shape != (len(feats), DIGEST_BYTES):
                continue
            k = len(self._shards)
            self._shards.append(feats)
            for row, d in enumerate(keys.numpy()):
                self._index[bytes(d)] = (k, row)

    def lookup(self, keys: Sequence[bytes]) -> tuple[dict[int, torch.Tensor], list[int]]:
        """({position: features} for stored keys, positions still missing)."""
        with self._lock:
            self._refresh()
            found: dict[int, torch.Tensor] = {}
            missing: list[int] = []
            for i, d in enumerate(keys):
                hit = self._index.get(d)
                if hit is None:
                    missing.append(i)
                else:
                    found[i] = self._shards[hit[0]][hit[1]]
            return found, missing

    def add(self, keys: Sequence[bytes], feats: torch.Tensor) -> None:
        if not len(keys):
            return
        feats = feats.detach().float().cpu().contiguous()
        keys_t = torch.from_numpy(np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, DIGEST_BYTES).copy())
        with self._lock:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                key_file = self.folder / "key.json"
                if not key_file.exists():
                    atomic_write_text(key_file, self.key + "\n")
                name = f"part-{uuid.uuid4().hex}.safetensors"
                atomic_write_bytes(self.folder / name, save({"features": feats, "digests": keys_t}))
            except OSError:
                return  # a read-only or full cache folder: features are simply not kept
            self._seen.add(name)
            k = len(self._shards)
            self._shards.append(feats)
            for row, d in enumerate(keys):
                self._index[bytes(d)] = (k, row)

    def features(self, paths: Sequence[str], compute: Callable[[list[int]], torch.Tensor], *,
                 check: Callable[[], None] | None = None, keys: Sequence[bytes] | None = None,
                 ) -> tuple[torch.Tensor, int]:
        """Features of ``paths`` in order, and how many had to be computed. ``compute(positions)``
        returns the features of those paths (N x D), in that order."""
        keys = list(keys) if keys is not None else digests(paths, check)
        found, missing = self.lookup(keys)
        new = compute(missing) if missing else None
        if new is not None:
            # identical files (duplicates) share one row
            first: dict[bytes, int] = {}
            rows = [first.setdefault(keys[i], j) for j, i in enumerate(missing)]
            unique = sorted(set(rows))
            self.add([keys[missing[j]] for j in unique], new[unique])
        if not paths:
            return torch.zeros(0, 0), 0
        dim = (new.shape[1] if new is not None else next(iter(found.values())).shape[0])
        out = torch.empty(len(paths), dim, dtype=torch.float32)
        for i, f in found.items():
            out[i] = f
        if new is not None:
            out[missing] = new.float().cpu()
        return out, len(missing)


def open_space(key: str, root: str | os.PathLike[str] | None = None) -> FeatureSpace:
    """The space for ``key`` under ``root`` (default: ``default_root()``), shared in this process."""
    root_path = Path(root) if root is not None else default_root()
    folder = root_path / hashlib.sha256(key.encode()).hexdigest()[:24]
    with _lock:
        space = _spaces.get((str(folder), key))
        if space is None:
            space = _spaces[(str(folder), key)] = FeatureSpace(folder, key)
        return space


def clear_memory() -> None:
    """Forget the spaces held in memory (tests point ``$TS_FEATURE_CACHE`` elsewhere)."""
    with _lock:
        _spaces.clear()

