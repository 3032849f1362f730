"""Image-folder datasets: scan and health check, splits, and the torch Dataset used for training.

Layouts (``scan`` detects which):
  flat   ROOT/<class>/**/<image>                      one sub-folder per class (nested folders allowed)
  split  ROOT/{train,val,test}/<class>/**/<image>     already split; used as is
  file   ROOT/labels.csv (or .jsonl) of file,label[,split] naming the images' classes
         (core.labels_file); reported as "flat" or "split" with ``labels_file`` set
ROOT/_set_aside/ holds images the label review set aside (core.label_journal): never a class.

The scan is fast because it never decodes pixels unless asked (``verify=True``): per file it reads
the first bytes (the whole file when small) and the last bytes, lets PIL parse the header lazily for
the format and size, and checks the end marker for truncation. Exact duplicates are found by size
first, then a content hash only where sizes collide.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch.utils.data

from transfer_studio.core.imageio import (
    HEAD_BYTES,
    TAIL_BYTES,
    ImageReadError,
    load_rgb,
    probe_bytes,
    size_problem,
    sniff_format,
    truncation_reason,
    verify_decode,
)
from transfer_studio.core.label_journal import SET_ASIDE_DIR  # set-aside images: never a class
from transfer_studio.errors import Cancelled, UserError

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]

# Folder names of an already split dataset (case-insensitive) -> canonical split name.
SPLIT_DIR_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                   "validation": "val", "test": "test", "testing": "test"}
# OS litter, ignored silently (hidden files and folders - names starting with "." - are ignored too).
IGNORED_NAMES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini", "__macosx", "@eadir",
                           "$recycle.bin", "system volume information", "icon\r"})
NEAR_EMPTY = 10  # a class with fewer images than this gets a warning
IMBALANCE_WARNING = 3.0  # largest/smallest class ratio that earns a warning
_BATCH = 512  # files per progress/cancel step
_WORKERS = 4  # threads overlapping file I/O (most time is header parsing, bound by the GIL)


@dataclass
class SkippedFile:
    path: str  # relpath (posix) from the scanned root
    reason: str


@dataclass
class ScanReport:
    root: str
    layout: str  # "flat" | "split"
    classes: list[str]
    counts: dict[str, int]
    split_counts: dict[str, dict[str, int]]  # split layout: {split: {class: n}}; flat: {}
    num_images: int
    skipped: list[SkippedFile]
    duplicates: list[list[str]]  # groups of relpaths with identical content
    warnings: list[str]
    image_size_range: dict[str, int]  # {min_width, min_height, max_width, max_height}
    imbalance: float  # largest / smallest class
    # Per readable image, aligned: relpath (posix), class index, split folder ("train"/"val"/"test"
    # for the split layout, None for flat).
    files: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    file_splits: list[str | None] = field(default_factory=list)
    verified: bool = False
    labels_file: str | None = None  # the CSV/JSONL naming the labels (core.labels_file); None: class folders

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON document (everything but the per-file arrays)."""
        return {
            "root": self.root,
            "layout": self.layout,
            "classes": list(self.classes),
            "counts": dict(self.counts),
            "num_images": self.num_images,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "duplicates": [list(g) for g in self.duplicates],
            "warnings": list(self.warnings),
            "split_counts": {k: dict(v) for k, v in self.split_counts.items()},
            "image_size_range": dict(self.image_size_range),
            "imbalance": self.imbalance,
            "verified": self.verified,
            "labels_file": self.labels_file,
        }


# -- scanning ----------------------------------------------------------------------------------


@dataclass
class _Entry:
    path: str  # absolute path
    rel: str  # relpath (posix)
    size: int
    label: int
    split: str | None


@dataclass
class _Probe:
    ok: bool
    reason: str = ""
    width: int = 0
    height: int = 0
    digest: bytes | None = None  # content hash when the whole file was read


def scan(root: str | os.PathLike[str], *, verify: bool = False, progress: Progress | None = None,
         cancel: Cancel | None = None) -> ScanReport:
    """Scan an image folder: classes, counts, skipped files with reasons, duplicates, warnings.

    Raises UserError for a folder that cannot be trained on (missing, no class sub-folders, one
    class, a class without a readable image, train/ and val/ with different classes) and Cancelled
    when ``cancel()`` turns true.
    """
    root_path = Path(os.path.expanduser(os.fspath(root)))
    if not root_path.exists():
        raise UserError(f"data folder not found: {root_path}")
    if not root_path.is_dir():
        raise UserError(f"{root_path} is not a folder: point to a folder with one sub-folder per class")
    root_path = root_path.resolve()
    warnings: list[str] = []
    from transfer_studio.core import labels_file as lf

    table = lf.find(root_path)  # a CSV/JSONL of file,label instead of class folders
    listed = lf.listing(root_path, table, warnings, cancel) if table is not None else None
    if listed is not None:
        layout, classes, split_names = listed.layout, listed.classes, listed.splits
    else:
        layout, groups, split_names = _detect_layout(root_path, warnings)
        classes = sorted({name for _, name, _ in groups})
    if len(classes) < 2:
        what = f"labels in {listed.labels_file}" if listed is not None else "class sub-folders"
        raise UserError(
            f"{root_path} has only one class ('{shown(classes[0])}'): a classifier needs at least two {what}"
            if classes else f"{root_path} has no {what}"
        )
    class_index = {c: i for i, c in enumerate(classes)}

    entries: list[_Entry] = []
    prefix = len(str(root_path).rstrip(os.sep)) + 1
    if listed is not None:
        entries, missing = _listed_entries(root_path, listed)
    else:
        missing = []
        for split, name, directory in groups:
            _check_cancel(cancel)
            for path, size in _walk_files(directory, warnings, root_path, cancel):
                rel = path[prefix:].replace(os.sep, "/")
                entries.append(_Entry(path, rel, size, class_index[name], split))
    entries.sort(key=lambda e: e.rel)  # results never depend on the file system's order
    total = len(entries)
    if progress:
        progress(0, total)

    probes: list[_Probe] = []
    with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="scan") as pool:
        for start in range(0, total, _BATCH):
            _check_cancel(cancel)
            batch = entries[start:start + _BATCH]
            # One task per chunk, not per file: a Future per file costs as much as a header parse.
            chunk = -(-len(batch) // _WORKERS)
            chunks = [batch[k:k + chunk] for k in range(0, len(batch), chunk)]
            for result in pool.map(lambda c: [_probe_file(e, verify) for e in c], chunks):
                probes.extend(result)
            if progress:
                progress(len(probes), total)
        _check_cancel(cancel)
        duplicates = _find_duplicates(entries, probes, pool)

    skipped: list[SkippedFile] = list(missing)
    files: list[str] = []
    labels: list[int] = []
    file_splits: list[str | None] = []
    widths: list[int] = []
    heights: list[int] = []
    for entry, probe in zip(entries, probes, strict=True):
        if not probe.ok:
            skipped.append(SkippedFile(entry.rel, probe.reason))
            continue
        files.append(entry.rel)
        labels.append(entry.label)
        file_splits.append(entry.split)
        widths.append(probe.width)
        heights.append(probe.height)

    label_arr = np.asarray(labels, dtype=np.int64)
    counts = {c: int((label_arr == i).sum()) for i, c in enumerate(classes)}
    listed_class = {rel: classes[k] for rel, k, _ in listed.files} if listed is not None else None
    for c in classes:
        if counts[c] == 0:
            bad = [s for s in skipped if (listed_class.get(s.path) if listed_class is not None
                                          else _class_of(s.path, layout)) == c]
            if bad:
                raise UserError(
                    f"class '{shown(c)}' has no readable image ({len(bad)} file(s) skipped, e.g. {shown(bad[0].path)}: "
                    f"{shown(bad[0].reason)}): add readable images or remove the folder"
                )
            raise UserError(f"class folder '{shown(c)}' has no images: add images to it or remove the folder")

    split_counts: dict[str, dict[str, int]] = {}
    if layout == "split":
        splits_arr = np.asarray(file_splits, dtype=object)
        for split in split_names:
            in_split = label_arr[splits_arr == split]
            split_counts[split] = {c: int((in_split == i).sum()) for i, c in enumerate(classes)}
            missing = [c for c in classes if split_counts[split][c] == 0]
            if missing:
                warnings.append(f"{split}/ has no readable image of class(es) {_names(missing)}")

    imbalance = max(counts.values()) / min(counts.values())
    warnings.extend(_data_warnings(counts, imbalance, skipped, duplicates, files, labels, classes))
    size_range = {
        "min_width": min(widths), "min_height": min(heights),
        "max_width": max(widths), "max_height": max(heights),
    }
    return ScanReport(
        root=str(root_path), layout=layout, classes=classes, counts=counts, split_counts=split_counts,
        num_images=len(files), skipped=skipped, duplicates=duplicates, warnings=warnings,
        image_size_range=size_range, imbalance=round(imbalance, 3), files=files, labels=labels,
        file_splits=file_splits, verified=verify, labels_file=listed.labels_file if listed is not None else None,
    )


def _listed_entries(root: Path, listed: Any) -> tuple[list[_Entry], list[SkippedFile]]:
    """Entries of the files a labels file lists, and what it lists that cannot be used."""
    entries: list[_Entry] = []
    skipped = [SkippedFile(path, reason) for path, reason in listed.skipped]
    for rel, label, split in listed.files:
        path = os.path.join(root, *rel.split("/"))
        try:
            st = os.stat(path)
        except OSError:
            skipped.append(SkippedFile(rel, f"listed in {listed.labels_file} but missing from the folder"))
            continue
        if not stat.S_ISREG(st.st_mode):
            skipped.append(SkippedFile(rel, f"listed in {listed.labels_file} but not a file"))
            continue
        entries.append(_Entry(path, rel, st.st_size, label, split))
    return entries, skipped


def _check_cancel(cancel: Cancel | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled("scan cancelled")


def _ignored(name: str) -> bool:
    return name.startswith(".") or name.lower() in IGNORED_NAMES


def _subdirs(directory: Path) -> tuple[list[os.DirEntry[str]], int]:
    """Visible sub-folders of a folder (sorted by name) and the number of visible plain files."""
    dirs: list[os.DirEntry[str]] = []
    nfiles = 0
    try:
        with os.scandir(directory) as it:
            for e in it:
                if _ignored(e.name):
                    continue
                try:
                    if e.is_dir():
                        dirs.append(e)
                    elif e.is_file():
                        nfiles += 1
                except OSError:
                    continue
    except FileNotFoundError as exc:
        raise UserError(f"folder {directory} disappeared while scanning") from exc
    except OSError as exc:
        raise UserError(f"cannot read folder {directory}: {exc.strerror or exc}") from exc
    dirs.sort(key=lambda e: e.name)
    return dirs, nfiles


def _no_loops(dirs: list[os.DirEntry[str]], root: Path, warnings: list[str]) -> list[os.DirEntry[str]]:
    """Class folders, minus links that point back at the data folder or above it."""
    keep = [d for d in dirs if not (d.is_symlink() and _loops_back(d.path, str(root), root))]
    if len(keep) < len(dirs):
        names = [d.name for d in dirs if d not in keep]
        warnings.append(f"folder link(s) {_names(names)} point back to the data folder (a loop) and are not classes")
    return keep


def _detect_layout(root: Path, warnings: list[str]) -> tuple[str, list[tuple[str | None, str, Path]], list[str]]:
    """("flat" | "split", [(split, class name, folder)], split names present)."""
    dirs, loose = _subdirs(root)
    dirs = [d for d in dirs if d.name != SET_ASIDE_DIR]  # images set aside in the label review
    split_dirs: dict[str, os.DirEntry[str]] = {}
    for d in dirs:
        canonical = SPLIT_DIR_NAMES.get(d.name.lower())
        if canonical is None:
            continue
        if canonical in split_dirs:
            raise UserError(
                f"{root} has both {shown(split_dirs[canonical].name)}/ and {shown(d.name)}/: keep one folder per split"
            )
        split_dirs[canonical] = d
    # train/ with val/ or test/ beside it, or train/ alone (validation is then carved out of it).
    is_split = "train" in split_dirs and (len(split_dirs) >= 2 or len(dirs) == 1)
    if not is_split:
        if not dirs:
            extra = f" (it holds {loose} file(s) directly)" if loose else ""
            raise UserError(
                f"{root} has no class sub-folders{extra}: put each class's images in its own sub-folder, "
                f"e.g. {root / 'cat'}/1.jpg and {root / 'dog'}/1.jpg"
            )
        if loose:
            warnings.append(f"{loose} file(s) directly in the data folder are outside any class folder and were ignored")
        return "flat", [(None, d.name, Path(d.path)) for d in _no_loops(dirs, root, warnings)], []

    others = [d.name for d in dirs if d.name.lower() not in SPLIT_DIR_NAMES]
    if others:
        warnings.append(f"folder(s) {_names(others)} next to train/ are not a split and were ignored")
    order = [s for s in ("train", "val", "test") if s in split_dirs]
    groups: list[tuple[str | None, str, Path]] = []
    class_sets: dict[str, list[str]] = {}
    for split in order:
        sub, loose_in_split = _subdirs(Path(split_dirs[split].path))
        class_sets[split] = [d.name for d in sub]
        if loose_in_split:
            warnings.append(f"{loose_in_split} file(s) directly in {split_dirs[split].name}/ are outside any "
                            "class folder and were ignored")
        groups.extend((split, d.name, Path(d.path)) for d in _no_loops(sub, root, warnings))
    train_classes = set(class_sets["train"])
    if not train_classes:
        raise UserError(f"{split_dirs['train'].path} has no class sub-folders: put each class's images "
                        "in its own sub-folder of train/")
    for split in order[1:]:
        other = set(class_sets[split])
        if other != train_classes:
            only_train = sorted(train_classes - other)
            only_other = sorted(other - train_classes)
            parts = []
            if only_train:
                parts.append(f"only in train/: {_names(only_train)}")
            if only_other:
                parts.append(f"only in {split_dirs[split].name}/: {_names(only_other)}")
            raise UserError(
                f"train/ and {split_dirs[split].name}/ have different classes ({'; '.join(parts)}): "
                "give every split the same class folders"
            )
    return "split", groups, order


def _contains(folder: str, path: str) -> bool:
    """True when ``path`` is ``folder`` or inside it (both real paths)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _loops_back(link: str, where: str, root: Path) -> bool:
    """A folder link that points at the data folder, at one of its parents, or at a folder that
    contains the link itself: following it would scan images twice, under other classes, or walk
    the whole disk."""
    try:
        target = os.path.realpath(link)
    except (OSError, ValueError):
        return True
    return _contains(target, str(root)) or _contains(target, where)


def _walk_files(directory: Path, warnings: list[str], root: Path, cancel: Cancel | None) -> list[tuple[str, int]]:
    """(path, size) of every visible file under a class folder, following nested folders.

    Folder links are followed (a dataset assembled from links is common) except those that loop
    back (``_loops_back``): they are reported in one warning and skipped.
    """
    out: list[tuple[str, int]] = []
    stack = [str(directory)]
    seen: set[tuple[int, int]] = set()
    loops: list[str] = []
    while stack:
        current = stack.pop()
        _check_cancel(cancel)
        try:
            st = os.stat(current)
            key = (st.st_dev, st.st_ino)
            if key in seen:  # reached twice (through a link)
                continue
            seen.add(key)
            real_current = os.path.realpath(current)
            with os.scandir(current) as it:
                for e in it:
                    if _ignored(e.name):
                        continue
                    try:
                        st_e = e.stat()
                    except OSError:
                        continue  # dangling symlink
                    if stat.S_ISDIR(st_e.st_mode):
                        if e.is_symlink() and _loops_back(e.path, real_current, root):
                            loops.append(_rel(e.path, root))
                            continue
                        stack.append(e.path)
                    elif stat.S_ISREG(st_e.st_mode):
                        out.append((e.path, st_e.st_size))
                        if len(out) % 4096 == 0:
                            _check_cancel(cancel)
        except FileNotFoundError:
            if not root.exists():
                raise UserError(f"data folder {root} disappeared while scanning") from None
            continue
        except OSError as exc:
            warnings.append(f"folder {shown(_rel(current, root))}/ could not be read ({exc.strerror or exc}) and was "
                            "ignored")
    if loops:
        warnings.append(f"{len(loops)} folder link(s) point back to a folder that contains them (a loop) and "
                        f"were not followed (e.g. {shown(sorted(loops)[0])})")
    return out


def _rel(path: str, root: Path) -> str:
    prefix = str(root).rstrip(os.sep) + os.sep
    return (path[len(prefix):] if path.startswith(prefix) else path).replace(os.sep, "/")


def _probe_file(entry: _Entry, verify: bool) -> _Probe:
    if entry.size == 0:
        return _Probe(False, "zero-byte file")
    try:
        with open(entry.path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
            size = entry.size
            if len(head) < HEAD_BYTES:
                size = len(head)  # whole file read (it may have changed since the listing)
                tail = head[-TAIL_BYTES:]
            else:
                fh.seek(max(0, size - TAIL_BYTES))
                tail = fh.read(TAIL_BYTES)
    except FileNotFoundError:
        return _Probe(False, "unreadable (the file disappeared during the scan)")
    except OSError as exc:
        return _Probe(False, f"unreadable ({exc.strerror or exc})")
    if not head:
        return _Probe(False, "zero-byte file")
    # A known format missing its end marker is truncated, whether or not its header survived.
    reason = truncation_reason(sniff_format(head), head, tail, size)
    if reason:
        return _Probe(False, reason)
    try:
        info = probe_bytes(head, entry.path)
    except ImageReadError as exc:
        return _Probe(False, str(exc))
    if info.width <= 0 or info.height <= 0:
        return _Probe(False, f"invalid image size {info.width}x{info.height}")
    problem = size_problem(info.width, info.height)
    if problem:
        return _Probe(False, problem)
    if verify:
        try:
            verify_decode(entry.path)
        except ImageReadError as exc:
            return _Probe(False, str(exc))
    digest = hashlib.blake2b(head, digest_size=16).digest() if len(head) < HEAD_BYTES else None
    return _Probe(True, "", info.width, info.height, digest)


def _hash_file(path: str) -> bytes | None:
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.digest()


def _find_duplicates(entries: Sequence[_Entry], probes: Sequence[_Probe],
                     pool: ThreadPoolExecutor) -> list[list[str]]:
    """Groups of readable files with identical content: same size first, then a content hash."""
    by_size: dict[int, list[int]] = defaultdict(list)
    for i, (e, p) in enumerate(zip(entries, probes, strict=True)):
        if p.ok:
            by_size[e.size].append(i)
    candidates = [i for idx in by_size.values() if len(idx) > 1 for i in idx]
    need_hash = [i for i in candidates if probes[i].digest is None]
    full = dict(zip(need_hash, pool.map(lambda i: _hash_file(entries[i].path), need_hash), strict=True))
    by_content: dict[tuple[int, bytes], list[str]] = defaultdict(list)
    for i in candidates:
        digest = probes[i].digest if probes[i].digest is not None else full[i]
        if digest is not None:
            by_content[(entries[i].size, digest)].append(entries[i].rel)
    groups = [sorted(g) for g in by_content.values() if len(g) > 1]
    return sorted(groups)


def _class_of(rel: str, layout: str) -> str:
    parts = rel.split("/")
    return parts[1] if layout == "split" else parts[0]


def _names(names: Sequence[str], limit: int = 5) -> str:
    text = ", ".join(f"'{shown(n)}'" for n in names[:limit])
    return text + (f" and {len(names) - limit} more" if len(names) > limit else "")


def shown(text: str) -> str:
    """A file or folder name as it can be shown on one line: control characters (a newline in a
    name) and bytes that are not UTF-8 are escaped (\\n, \\udcff)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _data_warnings(counts: dict[str, int], imbalance: float, skipped: list[SkippedFile],
                   duplicates: list[list[str]], files: list[str], labels: list[int],
                   classes: list[str]) -> list[str]:
    out: list[str] = []
    for c, n in counts.items():
        if n < NEAR_EMPTY:
            out.append(f"class '{shown(c)}' has only {n} image(s): the model will barely learn it; add more images")
    if imbalance >= IMBALANCE_WARNING:
        big = max(counts, key=lambda c: counts[c])
        small = min(counts, key=lambda c: counts[c])
        out.append(
            f"classes are imbalanced: '{shown(big)}' has {counts[big]} images, '{shown(small)}' only "
            f"{counts[small]} ({imbalance:.1f}x); training compensates by weighting classes, but more images "
            f"of '{shown(small)}' help"
        )
    if skipped:
        out.append(f"{len(skipped)} file(s) skipped because they cannot be used (listed with reasons)")
    if duplicates:
        nfiles = sum(len(g) for g in duplicates)
        out.append(f"{len(duplicates)} group(s) of identical files ({nfiles} files); identical files are "
                   "always kept in the same split")
        label_of = dict(zip(files, labels, strict=True))
        conflicts = [g for g in duplicates if len({label_of[p] for p in g}) > 1]
        if conflicts:
            g = conflicts[0]
            out.append(f"{len(conflicts)} group(s) of identical files are filed under different classes "
                       f"(e.g. {' = '.join(shown(p) for p in g[:3])}): their labels contradict each other")
    return out


# -- splits ------------------------------------------------------------------------------------


def make_split(report: ScanReport, val: float = 0.2, test: float = 0.0, seed: int = 0) -> dict[str, list[str]]:
    """Split the readable images into train/val/test relpath lists.

    Stratified per class and seeded; groups of identical files always land in the same split (else
    validation would score images the model trained on). A pre-split folder is used as is; only when
    it has no val/ folder is a validation share carved out of train/ the same way.
    """
    for name, value in (("validation", val), ("test", test)):
        if not 0.0 <= value < 1.0:
            raise UserError(f"the {name} share must be between 0 and 1 (got {value})")
    if val + test >= 1.0:
        raise UserError(f"validation + test shares must leave images to train on (got {val} + {test})")

    if report.layout == "split":
        out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        for rel, split in zip(report.files, report.file_splits, strict=True):
            out[split or "train"].append(rel)
        if not out["val"] and val > 0:
            idx = [i for i, s in enumerate(report.file_splits) if s == "train"]
            carved = _stratified(report, idx, val, 0.0, seed)
            out["train"], out["val"] = carved["train"], carved["val"]
        return out
    return _stratified(report, list(range(len(report.files))), val, test, seed)


def _stratified(report: ScanReport, indices: list[int], val: float, test: float,
                seed: int) -> dict[str, list[str]]:
    # Union identical files into units; a unit's class is that of its first (sorted) member.
    index_of = {report.files[i]: i for i in indices}
    unit_of = {i: i for i in indices}
    for group in report.duplicates:
        members = sorted(index_of[p] for p in group if p in index_of)
        for m in members:
            unit_of[m] = members[0]
    units: dict[int, list[int]] = defaultdict(list)
    for i in indices:
        units[unit_of[i]].append(i)
    by_class: dict[int, list[int]] = defaultdict(list)
    for head in sorted(units, key=lambda u: report.files[u]):
        by_class[report.labels[head]].append(head)

    out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for label in sorted(by_class):
        heads = by_class[label]
        # Seeded per class name: adding images to one class does not reshuffle the others.
        rng = np.random.default_rng([seed, zlib.crc32(report.classes[label].encode("utf-8", "surrogateescape"))])
        order = [heads[k] for k in rng.permutation(len(heads))]
        n = len(order)
        n_test = _share(n, test, available=n, reserve=1 + int(val > 0))
        n_val = _share(n, val, available=n - n_test, reserve=1)
        for k, head in enumerate(order):
            split = "test" if k < n_test else "val" if k < n_test + n_val else "train"
            out[split].extend(report.files[i] for i in units[head])
    for paths in out.values():
        paths.sort()
    return out


def _share(n: int, fraction: float, available: int, reserve: int) -> int:
    """round(n * fraction), at least 1 when fraction > 0, taken from ``available`` units while
    leaving ``reserve`` of them for the other splits (training always keeps at least one)."""
    if fraction <= 0:
        return 0
    return max(0, min(max(1, round(n * fraction)), available - reserve))


def labels_for(report: ScanReport, relpaths: Sequence[str]) -> np.ndarray:
    """Class indices of relpaths from a saved split; UserError if some are no longer in the folder."""
    label_of = dict(zip(report.files, report.labels, strict=True))
    missing = [p for p in relpaths if p not in label_of]
    if missing:
        raise UserError(
            f"{len(missing)} image(s) of the saved split are no longer readable in {report.root} "
            f"(e.g. {shown(missing[0])}): restore them or make a new split"
        )
    return np.fromiter((label_of[p] for p in relpaths), dtype=np.int64, count=len(relpaths))


def assign_split(project: Any, report: ScanReport, *, force: bool = False) -> dict[str, list[str]]:
    """Make the project's split (unless it has one and ``force`` is false) and record the classes.

    The split is saved in ``project.data.split`` so a resumed or re-evaluated run sees the same images.
    """
    data = project.data
    if data.split is None or force:
        data.split = make_split(report, data.val_split, data.test_split, data.seed)
    data.classes = list(report.classes)
    data.root = report.root
    return data.split


# -- training dataset --------------------------------------------------------------------------


class ImageDataset(torch.utils.data.Dataset):
    """Images from relpaths under root, loaded one at a time as RGB and passed through ``transform``.

    Paths live in one joined UTF-8 buffer plus offsets and labels in an int64 array: no per-item
    Python objects, so DataLoader workers do not copy the pages (reference counting writes to every
    object a worker touches). An image that became unreadable after the scan is logged, recorded in
    ``skipped`` (in the process that hit it: each worker has its own copy) and replaced by another
    image of the same class, so an epoch never crashes on one bad file.
    """

    def __init__(self, root: str | os.PathLike[str], relpaths: Sequence[str], labels: Sequence[int] | np.ndarray,
                 transform: Callable[[Any], Any] | None = None) -> None:
        if len(relpaths) != len(labels):
            raise ValueError(f"{len(relpaths)} paths but {len(labels)} labels")
        self.root = os.fspath(root)
        # surrogateescape: file names that are not valid UTF-8 (os.fsdecode's lone surrogates) round-trip
        encoded = [p.encode("utf-8", "surrogateescape") for p in relpaths]
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=self._offsets[1:])
        self._buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        self.labels = np.asarray(labels, dtype=np.int64).copy()
        self.transform = transform
        self.skipped: list[SkippedFile] = []
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.labels)

    def relpath(self, index: int) -> str:
        start, end = self._offsets[index], self._offsets[index + 1]
        return self._buffer[start:end].tobytes().decode("utf-8", "surrogateescape")

    def path(self, index: int) -> str:
        return os.path.join(self.root, self.relpath(index))

    def __getitem__(self, index: int) -> tuple[Any, int]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(index)
        index %= n
        for candidate in self._candidates(index):
            try:
                image = load_rgb(self.path(candidate))
            except (ImageReadError, OSError) as exc:
                self._mark_bad(candidate, exc)
                continue
            if self.transform is not None:
                image = self.transform(image)
            return image, int(self.labels[candidate])
        raise UserError(f"no readable image left in the dataset under {self.root}")

    def _candidates(self, index: int):  # noqa: ANN202 - a generator of indices
        """The image itself, then the other images of its class, then any other image."""
        if index not in self._bad:
            yield index
        n = len(self)
        label = self.labels[index]
        order = np.roll(np.arange(n), -index)[1:]
        same = order[self.labels[order] == label]
        for i in np.concatenate([same, order[self.labels[order] != label]]):
            if int(i) not in self._bad:
                yield int(i)

    def _mark_bad(self, index: int, exc: BaseException) -> None:
        self._bad.add(index)
        reason = str(exc)
        self.skipped.append(SkippedFile(self.relpath(index), reason))
        log.warning("skipping unreadable image %s: %s (replaced by another image)", self.path(index), reason)
