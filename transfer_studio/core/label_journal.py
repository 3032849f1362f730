"""Label corrections that never lose data: a journal written before anything moves.

A correction gives an image another class, or sets it aside. In a folder-per-class dataset the file
moves into its new class folder (set aside: into ``_set_aside/`` inside the dataset, keeping its
path; never deleted); in a dataset labelled by a file (``core.labels_file``) the label is rewritten
there (set aside: the label is emptied) and no image moves.

The journal is ``DATA/.transfer-studio/label-journal.jsonl``, one JSON record per line, appended
and synced to disk:

    {"type": "begin", "batch": ID, "time": T, "kind": "move" | "relabel", "changes": [...], ...}
    {"type": "done", "batch": ID}            every change of the batch has been made
    {"type": "abandoned", "batch": ID, ...}  recovery found the data changed by someone else

A batch's begin record, with every source and destination, is on disk before the first file moves.
A move links the file under its new name (which fails rather than overwrite an existing file), then
removes the old name; where the file system has no hard links, it renames after checking the name
is free. So a crash at any point leaves each file under its old name, its new name, or (between the
two steps) both names of one file, which ``recover`` resolves: every begun batch is completed the
next time the journal is opened for writing (the user asked for those corrections), and each file
is then in exactly one place. A batch that touched a labels file is completed the same way: the file
is rewritten atomically, so it holds the old labels or the new ones.

Undo is another batch, the inverse of one that is done (``undo``), so it works the same after a
restart, and can itself be undone. ``resolve`` and ``changes_since`` let a run trained before some
corrections find its moved images and say which labels changed since.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
import uuid
from collections.abc import Container, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from transfer_studio.config import fsync_dir, is_temp_name
from transfer_studio.errors import UserError

JOURNAL_DIR = ".transfer-studio"  # hidden: the scan never reads it as a class folder
JOURNAL_NAME = "label-journal.jsonl"
LOCK_NAME = "label-journal.lock"
SET_ASIDE_DIR = "_set_aside"  # inside the data folder; the scan ignores it
SET_ASIDE = ""  # the label of a set-aside image


@dataclass
class Correction:
    """What the user decided for one image: a new class, or ``SET_ASIDE``."""

    file: str  # relpath (posix) under the data folder, as the scan lists it
    label: str  # the new class name, or "" to set the image aside
    part: str | None = None  # the project split it belongs to ("train", "val", "test"), kept for undo


@dataclass
class Change:
    file: str  # relpath before
    to_file: str  # relpath after (== file when a labels file is rewritten)
    from_label: str
    to_label: str  # "" set aside
    part: str | None = None


@dataclass
class Batch:
    id: str
    time: float  # seconds since the epoch, when it began
    kind: str  # "move" | "relabel"
    changes: list[Change]
    state: str = "pending"  # "pending" | "done" | "abandoned"
    undo_of: str | None = None
    undone_by: str | None = None  # the done batch that undid this one
    labels_file: str | None = None  # relabel: the table's name in the data folder
    note: str = ""

    @property
    def undoable(self) -> bool:
        return self.state == "done" and self.undone_by is None

    def summary(self) -> str:
        """One line: "3 images to another class, 1 set aside" (or "undo of ...")."""
        moved = sum(1 for c in self.changes if c.to_label)
        aside = len(self.changes) - moved
        parts = []
        if moved:
            parts.append(f"{moved} image{'s' if moved != 1 else ''} to another class")
        if aside:
            parts.append(f"{aside} set aside" if not self.undo_of else f"{aside} set aside again")
        text = ", ".join(parts) or "no change"
        return f"undo: {text}" if self.undo_of else text


@dataclass
class Resolution:
    """Where an image of an older split is now, and its label then and now."""

    file: str  # relpath now ("" when set aside or no longer found)
    set_aside: bool = False
    label_then: str | None = None  # set when a correction since changed its label
    label_now: str | None = None


class Journal:
    """The label journal of one data folder."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.folder = self.root / JOURNAL_DIR
        self.path = self.folder / JOURNAL_NAME

    # -- reading ----------------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        """Every intact record, in order; a line cut short by a crash is ignored."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read the label journal {self.path}: {exc}") from exc
        out = []
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("batch"), str):
                out.append(rec)
        return out

    def batches(self) -> list[Batch]:
        """Batches in the order they began, with their state and who undid them."""
        by_id: dict[str, Batch] = {}
        for rec in self.records():
            kind = rec.get("type")
            if kind == "begin":
                try:
                    changes = [Change(**c) for c in rec["changes"]]
                    by_id[rec["batch"]] = Batch(rec["batch"], float(rec["time"]), rec["kind"], changes,
                                                undo_of=rec.get("undo_of"), labels_file=rec.get("labels_file"))
                except (KeyError, TypeError, ValueError):
                    continue
            elif kind in ("done", "abandoned") and rec["batch"] in by_id:
                by_id[rec["batch"]].state = kind
                by_id[rec["batch"]].note = str(rec.get("note", ""))
        for b in by_id.values():
            if b.undo_of in by_id and b.state == "done":
                by_id[b.undo_of].undone_by = b.id
        return list(by_id.values())

    def pending(self) -> list[Batch]:
        return [b for b in self.batches() if b.state == "pending"]

    # -- writing ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time (the app and the command line), held across plan, moves and records."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as exc:
            raise UserError(f"cannot write in the data folder {self.root} ({exc.strerror or exc}): "
                            "corrections need a writable data folder") from exc
        try:
            _lock(fd)
            yield
        finally:
            os.close(fd)

    def _append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with open(self.path, "a+b") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() > 0:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":  # the previous append was cut short: keep it on its own line
                    line = "\n" + line
            fh.write(line.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        fsync_dir(self.folder)

    def recover(self) -> list[str]:
        """Complete every batch a crash interrupted; one note per batch touched."""
        with self._locked():
            return self._recover()

    def _recover(self) -> list[str]:
        self._remove_stale_temp_files()
        notes = []
        for batch in self.pending():
            problems = self._complete(batch)
            if problems is None:
                self._append({"type": "done", "batch": batch.id, "note": "completed after an interruption"})
                notes.append(f"completed an interrupted correction ({batch.summary()})")
            else:
                self._append({"type": "abandoned", "batch": batch.id, "note": problems})
                notes.append(f"an interrupted correction could not be completed: {problems}")
        return notes

    def _remove_stale_temp_files(self) -> None:
        """The temp file a rewrite of the labels file killed before its rename left (only those:
        other hidden files in the user's folder are not ours)."""
        from transfer_studio.core.labels_file import LABEL_FILE_NAMES

        with contextlib.suppress(OSError):
            for entry in os.scandir(self.root):
                if (is_temp_name(entry.name) and entry.name[1:].rsplit(".", 2)[0] in LABEL_FILE_NAMES
                        and entry.is_file(follow_symlinks=False)):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

    def apply(self, corrections: Sequence[Correction], report: Any) -> Batch:
        """Make the corrections (``report``: the data folder's ``ScanReport``): journal first, then
        move files or rewrite the labels file. Returns the done batch; UserError for a correction
        that does not fit the folder (unknown file or class, nothing to change)."""
        with self._locked():
            self._recover()
            batch = self._plan(corrections, report)
            self._begin(batch)
            problems = self._complete(batch)
            if problems is not None:  # someone changed the folder between plan and move
                self._append({"type": "abandoned", "batch": batch.id, "note": problems})
                raise UserError(f"the corrections could not all be made: {problems}")
            self._append({"type": "done", "batch": batch.id})
            batch.state = "done"
            return batch

    def undo(self, batch_id: str) -> Batch:
        """Reverse a done batch with a new batch; UserError when that is no longer possible (undone
        already, or its images were corrected again or moved away since)."""
        with self._locked():
            self._recover()
            batches = {b.id: b for b in self.batches()}
            target = batches.get(batch_id)
            if target is None:
                raise UserError(f"no correction {batch_id} in the label journal of {self.root}")
            if target.state != "done":
                raise UserError("that correction was never completed: there is nothing to undo")
            if target.undone_by:
                raise UserError("that correction has been undone already")
            inverse = [Change(c.to_file, c.file, c.to_label, c.from_label, c.part) for c in reversed(target.changes)]
            if target.kind == "move":
                gone = [c.file for c in inverse if not (self.root / c.file).exists()]
                if gone:
                    raise UserError(f"{len(gone)} image(s) of that correction are no longer where it put them "
                                    f"(e.g. {gone[0]}): undo later corrections first")
                inverse = [Change(c.file, self._free_name(c.to_file, {x.to_file for x in inverse if x is not c}),
                                  c.from_label, c.to_label, c.part) for c in inverse]
            else:
                self._check_labels(target.labels_file, inverse)
            batch = Batch(_new_id(), time.time(), target.kind, inverse, undo_of=target.id,
                          labels_file=target.labels_file)
            self._begin(batch)
            problems = self._complete(batch)
            if problems is not None:
                self._append({"type": "abandoned", "batch": batch.id, "note": problems})
                raise UserError(f"the undo could not be completed: {problems}")
            self._append({"type": "done", "batch": batch.id})
            batch.state = "done"
            return batch

    def _begin(self, batch: Batch) -> None:
        self._append({"type": "begin", "batch": batch.id, "time": batch.time, "kind": batch.kind,
                      "undo_of": batch.undo_of, "labels_file": batch.labels_file,
                      "changes": [asdict(c) for c in batch.changes]})

    def _plan(self, corrections: Sequence[Correction], report: Any) -> Batch:
        if not corrections:
            raise UserError("no corrections to make")
        label_of = dict(zip(report.files, report.labels, strict=True))
        seen: set[str] = set()
        changes: list[Change] = []
        labels_file = getattr(report, "labels_file", None)
        taken: set[str] = set()
        for c in corrections:
            if c.file in seen:
                raise UserError(f"{c.file} is corrected twice in one batch")
            seen.add(c.file)
            if c.file not in label_of:
                raise UserError(f"{c.file} is not a readable image of {self.root}: scan the folder again")
            if c.label and c.label not in report.classes:
                raise UserError(f"'{c.label}' is not one of the classes ({', '.join(report.classes)})")
            old = report.classes[label_of[c.file]]
            if c.label == old:
                continue  # keeping the label is no change
            if labels_file:
                changes.append(Change(c.file, c.file, old, c.label, c.part))
            else:
                target = self._destination(c.file, c.label, report.layout)
                target = self._free_name(target, taken)
                taken.add(target)
                changes.append(Change(c.file, target, old, c.label, c.part))
        if not changes:
            raise UserError("every image keeps its label: nothing to change")
        if labels_file:
            self._check_labels(labels_file, changes)
        return Batch(_new_id(), time.time(), "relabel" if labels_file else "move", changes, labels_file=labels_file)

    @staticmethod
    def _destination(rel: str, label: str, layout: str) -> str:
        if not label:
            return f"{SET_ASIDE_DIR}/{rel}"
        parts = rel.split("/")
        if layout == "split":  # split/class/rest
            return "/".join([parts[0], label, *parts[2:]])
        return "/".join([label, *parts[1:]])

    def _free_name(self, rel: str, taken: set[str]) -> str:
        """``rel``, or ``name (2).ext`` ... when a file (or another move of this batch) has it."""
        stem, dot, ext = rel.rpartition(".")
        if not dot or "/" in ext:
            stem, ext = rel, ""
        candidate, k = rel, 2
        while candidate in taken or os.path.lexists(self.root / candidate):
            candidate = f"{stem} ({k}).{ext}" if ext else f"{stem} ({k})"
            k += 1
        return candidate

    def _check_labels(self, labels_file: str | None, changes: Iterable[Change]) -> None:
        from transfer_studio.core import labels_file as lf

        if not labels_file:
            raise UserError("this correction needs the dataset's labels file, which the journal does not name")
        now = lf.current_labels(self.root / labels_file)
        stale = [c.file for c in changes if now.get(c.file) != c.from_label]
        if stale:
            raise UserError(f"{labels_file} changed since the folder was scanned ({stale[0]} is labelled "
                            f"'{now.get(stale[0], '(not listed)')}'): scan again")

    def _complete(self, batch: Batch) -> str | None:
        """Make every change of the batch that is not made yet; None when all are, else what stops it."""
        if batch.kind == "relabel":
            return self._complete_relabel(batch)
        problems = []
        folders: set[Path] = set()
        for c in batch.changes:
            src, dst = self.root / c.file, self.root / c.to_file
            problem = _finish_move(src, dst)
            if problem:
                problems.append(problem)
            folders.update((src.parent, dst.parent))
        for folder in folders:
            fsync_dir(folder)
        return "; ".join(problems[:3]) + (f" and {len(problems) - 3} more" if len(problems) > 3 else "") \
            if problems else None

    def _complete_relabel(self, batch: Batch) -> str | None:
        from transfer_studio.core import labels_file as lf

        path = self.root / (batch.labels_file or "")
        try:
            now = lf.current_labels(path)
        except UserError as exc:
            return str(exc)
        if all(now.get(c.file) == c.to_label for c in batch.changes):
            return None
        if not all(now.get(c.file) in (c.from_label, c.to_label) for c in batch.changes):
            return f"{batch.labels_file} was edited meanwhile; its labels were left as they are"
        lf.relabel(path, {c.file: c.to_label for c in batch.changes})
        return None

    # -- runs trained before the corrections ---------------------------------------------------------
    def resolve(self, rels: Iterable[str], since: float | None = None) -> dict[str, Resolution]:
        """For images of a split saved at time ``since`` (None: the journal's start): where each one
        is now, and its label then and now where a correction since changed it. Only images some
        correction touched appear in the result."""
        out: dict[str, Resolution] = {}
        wanted = set(rels)
        batches = [b for b in self.batches() if b.state != "abandoned" and (since is None or b.time >= since)]
        where: dict[str, str] = {r: r for r in wanted}  # split relpath -> relpath now
        owner: dict[str, str] = {r: r for r in wanted}  # relpath now -> split relpath
        first: dict[str, str] = {}
        last: dict[str, str] = {}
        for b in batches:
            for c in b.changes:
                origin = owner.get(c.file)
                if origin is None or (b.state == "pending" and not (self.root / c.to_file).exists()):
                    continue
                first.setdefault(origin, c.from_label)
                last[origin] = c.to_label
                if c.to_file != c.file:
                    del owner[c.file]
                    owner[c.to_file] = origin
                    where[origin] = c.to_file
        for origin in first:
            now = where[origin]
            aside = last[origin] == SET_ASIDE
            changed = first[origin] != last[origin]
            out[origin] = Resolution(file="" if aside else now, set_aside=aside,
                                     label_then=first[origin] if changed else None,
                                     label_now=last[origin] if changed else None)
        return out

    def changes_since(self, rels: Iterable[str], since: float | None = None) -> list[tuple[str, str, str]]:
        """(relpath in the split, label then, label now) for images whose label changed since."""
        return [(rel, r.label_then or "", r.label_now or "") for rel, r in sorted(self.resolve(rels, since).items())
                if r.label_then is not None]


def follow_split(root: str | os.PathLike[str], split: dict[str, list[str]], present: Container[str],
                 since: float | None = None) -> tuple[dict[str, list[str]], dict[str, Resolution]]:
    """A saved split whose images corrections have moved since: each image no longer ``present``
    under its old name is looked up in the journal and listed under its name now, or left out when
    it was set aside. Returns (the split, the journal's answers for those images)."""
    missing = [r for rels in split.values() for r in rels if r not in present]
    if not missing or not (Path(root) / JOURNAL_DIR / JOURNAL_NAME).is_file():
        return split, {}
    found = Journal(root).resolve(missing, since)
    out: dict[str, list[str]] = {}
    for part, rels in split.items():
        out[part] = []
        for rel in rels:
            fix = found.get(rel) if rel not in present else None
            if fix is None:
                out[part].append(rel)
            elif not fix.set_aside and fix.file:
                out[part].append(fix.file)
    return out, found


def _new_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def _lock(fd: int) -> None:
    if os.name == "nt":  # pragma: no cover - Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
        return
    import fcntl

    fcntl.lockf(fd, fcntl.LOCK_EX)


def _finish_move(src: Path, dst: Path) -> str | None:
    """Bring one move to its end from whatever state a crash left; None when the file is at ``dst``
    (only), else why not. Never overwrites and never removes the only name of a file."""
    src_there, dst_there = os.path.lexists(src), os.path.lexists(dst)
    if dst_there and not src_there:
        return None
    if dst_there and src_there:
        if _same_file(src, dst):  # a crash between link and unlink: drop the old name
            os.unlink(src)
            return None
        return f"{dst.name} exists in two places ({src} and {dst}) with different content: both kept"
    if not src_there:
        return f"{src} is gone (moved or deleted outside the app)"
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():  # move the link itself, pointing at the same file from its new folder
        os.symlink(os.path.realpath(src), dst)
        os.unlink(src)
        return None
    try:
        os.link(src, dst)  # fails when dst exists: never overwrites
    except FileExistsError:
        return f"{dst} appeared meanwhile: {src} was left where it is"
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return f"{src} and {dst} are on different file systems: the file was left where it is"
        # No hard links here (FAT, some network shares): rename, the name having been free just now.
        if os.path.lexists(dst):
            return f"{dst} appeared meanwhile: {src} was left where it is"
        os.rename(src, dst)
        return None
    os.unlink(src)
    return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b) or (a.is_symlink() and b.is_symlink()
                                          and os.path.realpath(a) == os.path.realpath(b))
    except OSError:
        return False


def set_aside_count(root: str | os.PathLike[str]) -> int:
    """Files under the data folder's set-aside folder."""
    folder = Path(root) / SET_ASIDE_DIR
    return sum(len(files) for _, _, files in os.walk(folder)) if folder.is_dir() else 0


def remap_split(split: dict[str, list[str]] | None, batch: Batch) -> dict[str, list[str]] | None:
    """A project's saved split after a batch: moved images under their new names, set-aside ones
    left out, images an undo brings back put back into the part they came from."""
    if split is None:
        return None
    out = {k: list(v) for k, v in split.items()}
    for c in batch.changes:
        for rels in out.values():
            if c.file in rels:
                rels.remove(c.file)
                if c.to_label:
                    rels.append(c.to_file)
                break
        else:
            if c.to_label and c.part in out and c.to_file not in out[c.part]:
                out[c.part].append(c.to_file)
    for rels in out.values():
        rels.sort()
    return out


__all__ = ["Batch", "Change", "Correction", "Journal", "Resolution", "SET_ASIDE", "SET_ASIDE_DIR", "follow_split",
           "remap_split", "set_aside_count"]
