"""Labels from a file: a folder of images plus a CSV or JSONL table of ``file,label`` (and an optional
``split``), the layout Kaggle, Roboflow and Hugging Face image folders use.

The table sits in the data folder under one of ``LABEL_FILE_NAMES``; its ``file`` column holds paths
relative to that folder (``/`` or ``\\`` separators). Column names are matched without regard to case:
the file is in ``file``/``file_name``/``filename``/``image``/``path`` (Hugging Face's ``file_name``
among them), the label in ``label``/``class``/``category``, the split in ``split`` (train, val or
valid or validation, test). A row with an empty label is unlabelled: listed, not trained on (this is
what "set aside" writes in the label review).

Health check (``listing``), in the scan's own terms: rows whose file is missing or cannot be read
are skipped with a reason; a path that points outside the folder (absolute, or through ``..``) is
refused, never opened; a file listed twice with one label counts once, with two labels it is
skipped (the labels contradict each other); image files in the folder that the table does not list
are named in a warning.

``relabel`` writes label corrections back to the table (one atomic rewrite; other columns and rows
kept), which the label journal (``core.label_journal``) calls.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from transfer_studio.config import atomic_write_text
from transfer_studio.errors import Cancelled, UserError

LABEL_FILE_NAMES = ("labels.csv", "labels.jsonl", "metadata.csv", "metadata.jsonl")
FILE_COLUMNS = ("file", "file_name", "filename", "image", "image_path", "filepath", "path")
LABEL_COLUMNS = ("label", "class", "category", "class_name")
SPLIT_COLUMN = "split"
UNKNOWN_LIMIT = 3  # examples named in the "not listed" warning
MAX_TABLE_BYTES = 512 * 1024 * 1024  # a labels file larger than this is refused (not read into memory)

Cancel = Callable[[], bool]


@dataclass
class Row:
    number: int  # 1-based record number in the file (the CSV header is record 1)
    file: str  # the path as written in the table
    label: str  # "" when unlabelled
    split: str | None  # as written (None without a split column)


@dataclass
class Table:
    path: Path
    kind: str  # "csv" | "jsonl"
    file_column: str
    label_column: str
    split_column: str | None
    rows: list[Row]


@dataclass
class Listing:
    """What the table says, checked against the folder: the scan's entries come from ``files``."""

    labels_file: str  # its name, relative to the data folder
    layout: str  # "split" with a split column that names train, else "flat"
    classes: list[str]
    files: list[tuple[str, int, str | None]] = field(default_factory=list)  # (relpath, class index, split)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path as written, reason)
    splits: list[str] = field(default_factory=list)  # split names present, in train/val/test order
    unlabelled: int = 0


def find(root: Path) -> Path | None:
    """The labels file of a data folder, or None for a folder-per-class dataset."""
    found = [root / name for name in LABEL_FILE_NAMES if (root / name).is_file()]
    if len(found) > 1:
        raise UserError(f"{root} holds several labels files ({', '.join(p.name for p in found)}): keep one")
    return found[0] if found else None


def _pick(columns: list[str], wanted: tuple[str, ...]) -> str | None:
    lower = {c.strip().lower(): c for c in columns}
    return next((lower[w] for w in wanted if w in lower), None)


def read(path: Path) -> Table:
    """Parse a labels file; UserError when it cannot be used (unreadable, no file or label column)."""
    try:
        size = path.stat().st_size
        if size > MAX_TABLE_BYTES:
            raise UserError(f"{path} is {size / 2**20:.0f} MiB: a labels file may be at most "
                            f"{MAX_TABLE_BYTES / 2**20:.0f} MiB")
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text: save the labels file as UTF-8") from exc
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if path.suffix.lower() == ".jsonl":
        return _read_jsonl(path, text)
    return _read_csv(path, text)


def _columns(path: Path, columns: list[str]) -> tuple[str, str, str | None]:
    file_col = _pick(columns, FILE_COLUMNS)
    label_col = _pick(columns, LABEL_COLUMNS)
    if file_col is None or label_col is None:
        missing = [what for what, col in (("file", file_col), ("label", label_col)) if col is None]
        raise UserError(
            f"{path.name} has no {' or '.join(missing)} column (its columns: {', '.join(columns) or 'none'}); "
            f"name them file (or {', '.join(FILE_COLUMNS[1:])}) and label (or {', '.join(LABEL_COLUMNS[1:])})"
        )
    return file_col, label_col, _pick(columns, (SPLIT_COLUMN,))


def _delimiter(text: str) -> str:
    """',' unless the header line has none and uses ';' or a tab (spreadsheets in some locales)."""
    header = text.split("\n", 1)[0]
    if "," in header:
        return ","
    return ";" if ";" in header else "\t" if "\t" in header else ","


def _read_csv(path: Path, text: str) -> Table:
    records = list(csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text)))
    while records and not any(cell.strip() for cell in records[-1]):
        records.pop()
    if not records:
        raise UserError(f"{path.name} is empty: its first line names the columns (file,label)")
    header = [c.strip() for c in records[0]]
    file_col, label_col, split_col = _columns(path, header)
    fi, li = header.index(file_col), header.index(label_col)
    si = header.index(split_col) if split_col else None
    rows = []
    for number, rec in enumerate(records[1:], start=2):
        if not any(cell.strip() for cell in rec):
            continue
        cell = (lambda k, r=rec: r[k].strip() if k is not None and k < len(r) else "")  # noqa: E731
        rows.append(Row(number, cell(fi), cell(li), cell(si) if si is not None else None))
    return Table(path, "csv", file_col, label_col, split_col, rows)


def _read_jsonl(path: Path, text: str) -> Table:
    objects: list[tuple[int, dict]] = []
    columns: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path.name} line {number} is not JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise UserError(f"{path.name} line {number} is not a JSON object")
        objects.append((number, obj))
        columns.extend(k for k in obj if k not in columns)
    if not objects:
        raise UserError(f"{path.name} is empty: one JSON object per line, e.g. {{\"file\": \"a.jpg\", \"label\": \"cat\"}}")
    file_col, label_col, split_col = _columns(path, columns)

    def text_of(value: object) -> str:
        return "" if value is None else str(value).strip()

    rows = [Row(number, text_of(obj.get(file_col)), text_of(obj.get(label_col)),
                text_of(obj.get(split_col)) if split_col else None) for number, obj in objects]
    return Table(path, "jsonl", file_col, label_col, split_col, rows)


def normalise(path: str) -> str | None:
    """A table's path as a relpath (posix) inside the folder; None for one that points outside it
    (absolute, a drive, or ``..`` that climbs above the folder) or is empty."""
    text = path.strip().replace("\\", "/")
    if not text or text.startswith("/") or PureWindowsPath(path.strip()).drive:
        return None
    parts: list[str] = []
    for part in PurePosixPath(text).parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
            continue
        parts.append(part)
    return "/".join(parts) if parts else None


def listing(root: Path, path: Path, warnings: list[str], cancel: Cancel | None = None) -> Listing:
    """Check a labels file against its folder (see the module docstring); UserError for a table
    that cannot be trained on."""
    from transfer_studio.core.dataset import SPLIT_DIR_NAMES, shown

    table = read(path)
    name = path.name
    by_file: dict[str, list[Row]] = {}
    out = Listing(labels_file=name, layout="flat", classes=[])
    outside: list[Row] = []
    for row in table.rows:
        rel = normalise(row.file)
        if rel is None:
            if row.file.strip():
                outside.append(row)
            continue
        by_file.setdefault(rel, []).append(row)
    for row in outside:
        out.skipped.append((row.file, f"{name} row {row.number}: the path points outside the data folder "
                                      "(refused)"))
    if outside:
        warnings.append(f"{len(outside)} row(s) of {name} point outside the data folder and were refused "
                        f"(e.g. row {outside[0].number}: {shown(outside[0].file)})")

    twice = [rows for rows in by_file.values() if len(rows) > 1]
    if twice:
        warnings.append(f"{len(twice)} file(s) are listed more than once in {name} (e.g. {shown(twice[0][0].file)}, "
                        f"rows {', '.join(str(r.number) for r in twice[0][:3])})")
    chosen: dict[str, Row] = {}
    for rel, rows in by_file.items():
        labels = {r.label for r in rows if r.label}
        if len(labels) > 1:
            out.skipped.append((rel, f"{name} rows {', '.join(str(r.number) for r in rows[:3])} give it different "
                                     f"labels ({', '.join(sorted(shown(x) for x in labels))})"))
            continue
        labelled = [r for r in rows if r.label]
        chosen[rel] = labelled[0] if labelled else rows[0]

    split_of: dict[str, str | None] = {}
    unknown_splits: Counter[str] = Counter()
    for rel, row in chosen.items():
        if table.split_column is None or not row.split:
            split_of[rel] = None
            continue
        canonical = SPLIT_DIR_NAMES.get(row.split.lower())
        if canonical is None:
            unknown_splits[row.split] += 1
        split_of[rel] = canonical
    if unknown_splits:
        names = ", ".join(f"'{shown(s)}'" for s in sorted(unknown_splits)[:5])
        warnings.append(f"{sum(unknown_splits.values())} row(s) of {name} name an unknown split ({names}): "
                        "they count as training images")
    present = {s for s in split_of.values() if s}
    if "train" in present:
        out.layout = "split"
        out.splits = [s for s in ("train", "val", "test") if s in present]
    elif present:
        warnings.append(f"{name} names no training split (only {', '.join(sorted(present))}): the split column "
                        "was ignored")

    classes = sorted({row.label for row in chosen.values() if row.label})
    out.classes = classes
    index = {c: i for i, c in enumerate(classes)}
    for rel in sorted(chosen):
        if cancel is not None and cancel():
            raise Cancelled("scan cancelled")
        row = chosen[rel]
        if not row.label:
            out.unlabelled += 1
            continue
        split = split_of[rel] or "train" if out.layout == "split" else None
        out.files.append((rel, index[row.label], split))
    if out.unlabelled:
        warnings.append(f"{out.unlabelled} image(s) in {name} have no label (set aside) and are not used")
    for c, n in Counter(row.label for row in chosen.values() if row.label).items():
        if n == 1:
            warnings.append(f"label '{shown(c)}' has only one image in {name}: check it is not a typo of another label")

    listed = set(by_file)
    unlisted = _unlisted_images(root, listed, cancel)
    if unlisted:
        eg = ", ".join(shown(p) for p in unlisted[:UNKNOWN_LIMIT])
        warnings.append(f"{len(unlisted)} image file(s) in the folder are not listed in {name} and were ignored "
                        f"(e.g. {eg})")
    return out


def _unlisted_images(root: Path, listed: set[str], cancel: Cancel | None) -> list[str]:
    """Image files under the folder (by extension) that the table does not list; hidden folders,
    the set-aside folder and OS litter are not looked at."""
    from transfer_studio.core.dataset import IGNORED_NAMES, SET_ASIDE_DIR
    from transfer_studio.core.imageio import IMAGE_EXTENSIONS

    out: list[str] = []
    prefix = len(str(root).rstrip(os.sep)) + 1
    for current, dirs, files in os.walk(root):
        if cancel is not None and cancel():
            raise Cancelled("scan cancelled")
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d.lower() not in IGNORED_NAMES
                         and not (current == str(root) and d == SET_ASIDE_DIR))
        for f in files:
            if f.startswith(".") or os.path.splitext(f)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            rel = os.path.join(current, f)[prefix:].replace(os.sep, "/")
            if rel not in listed:
                out.append(rel)
    return sorted(out)


# -- writing corrections back -----------------------------------------------------------------------


def current_labels(path: Path) -> dict[str, str]:
    """relpath -> label ("" unlabelled) as the table says now (the first labelled row wins)."""
    out: dict[str, str] = {}
    for row in read(path).rows:
        rel = normalise(row.file)
        if rel is not None and (rel not in out or not out[rel]):
            out[rel] = row.label
    return out


def relabel(path: Path, changes: Mapping[str, str]) -> int:
    """Write new labels (relpath -> label, "" to unlabel) into the table: every row of that file
    gets the label; other rows, columns, their order and the file's dialect are kept. One atomic
    rewrite. Returns the number of rows changed; UserError for a file the table does not list."""
    table = read(path)
    listed = {normalise(r.file) for r in table.rows}
    absent = [rel for rel in changes if rel not in listed]
    if absent:
        raise UserError(f"{path.name} does not list {absent[0]}" + (f" and {len(absent) - 1} more" if len(absent) > 1
                                                                     else ""))
    raw = path.read_bytes().decode("utf-8-sig")
    bom = path.read_bytes().startswith(b"\xef\xbb\xbf")
    if table.kind == "jsonl":
        text, n = _relabel_jsonl(raw, table, changes)
    else:
        text, n = _relabel_csv(raw, table, changes)
    data = ("\ufeff" if bom else "") + text
    atomic_write_text(path, data)
    return n


def _relabel_jsonl(raw: str, table: Table, changes: Mapping[str, str]) -> tuple[str, int]:
    ending = "\r\n" if "\r\n" in raw else "\n"
    lines = raw.splitlines()
    n = 0
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        obj = json.loads(line)
        rel = normalise("" if obj.get(table.file_column) is None else str(obj.get(table.file_column)))
        if rel in changes:
            new = changes[rel]
            obj[table.label_column] = new if new else None
            lines[i] = json.dumps(obj, ensure_ascii=False)
            n += 1
    return ending.join(lines) + (ending if raw.endswith(("\n", "\r")) else ""), n


def _relabel_csv(raw: str, table: Table, changes: Mapping[str, str]) -> tuple[str, int]:
    delimiter = _delimiter(raw)
    records = list(csv.reader(io.StringIO(raw, newline=""), delimiter=delimiter))
    header = [c.strip() for c in records[0]]
    fi, li = header.index(table.file_column), header.index(table.label_column)
    ending = "\r\n" if "\r\n" in raw else "\n"
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter, lineterminator=ending)
    n = 0
    for k, rec in enumerate(records):
        if k > 0 and fi < len(rec):
            rel = normalise(rec[fi])
            if rel in changes:
                rec = list(rec) + [""] * max(0, li + 1 - len(rec))
                rec[li] = changes[rel]
                n += 1
        writer.writerow(rec)
    return out.getvalue(), n
