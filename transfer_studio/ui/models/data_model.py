"""The Data page's model: the scanned folder, its split, what the page says about them, and the project's
``data`` section.

The scan (``core.dataset.scan``) and the split (``core.dataset.make_split``) run through the job runner
(``ui.worker.run_task`` in the app); a newer scan or split makes an older one's answer void (tokens).
What the user decides lands in ``project.data`` (root, shares, seed, the frozen split, class names) and
the scan report in ``host.scan`` for the Strategy, Augment and Review pages. These edits are not on the
undo stack (they never were: the split follows the folder and the seed, and undoing a folder would leave
the scan and the project apart); a head replaced for another dataset is matched to the classes found
(``core.head``). The page (``ui.pages.data``) renders the events below and keeps what needs Qt: the
recent-folders list, thumbnails, the chart, the debounce of the split fields.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from transfer_studio.errors import Cancelled, UserError
from transfer_studio.ui.models.base import Event, Host, Job, JobRunner
from transfer_studio.ui.runtime import import_core

# A class is "under-represented" below this share of the largest class, or below NEAR_EMPTY images.
UNDER_REPRESENTED = 1 / 3
NEAR_EMPTY = 10
VAL_RANGE, TEST_RANGE, SEED_MAX = (1, 90), (0, 80), 2**31 - 1  # the split fields' ranges (val and test in %)
__all__ = ["NEAR_EMPTY", "UNDER_REPRESENTED", "DataModel", "fmt_int", "scan_folder", "split_class_counts",
           "split_dataset", "under_represented"]


# -- background jobs (run on worker threads; only plain data crosses back) ------------------------------
def scan_folder(root: str, verify: bool, val: float, test: float, seed: int,
                progress: Any = None, cancel: Any = None) -> tuple[Any, dict[str, list[str]], dict]:
    """Scan ``root`` and split it: (ScanReport, split, per-class split counts).

    OS errors while scanning (a folder deleted meanwhile, permission denied) become one-line
    UserErrors that say what to do.
    """
    dataset = import_core("dataset")
    import_core("head")  # for the GUI thread, which matches the head to the classes found
    try:
        report = dataset.scan(root, verify=verify, progress=progress, cancel=cancel)
    except (UserError, Cancelled):
        raise
    except PermissionError as exc:
        where = exc.filename or root
        raise UserError(f"Permission denied reading {where}. Give your user account read access to "
                        "the folder, or choose another folder.") from exc
    except FileNotFoundError as exc:
        raise UserError(f"{exc.filename or root} disappeared while it was being scanned (deleted or "
                        "moved?). Check the folder and scan it again.") from exc
    except OSError as exc:
        raise UserError(f"Could not read {exc.filename or root}: {exc.strerror or exc}. "
                        "Check the folder and scan it again.") from exc
    if cancel is not None and cancel():
        raise Cancelled()
    split, per_class = split_dataset(report, val, test, seed)
    return report, split, per_class


def split_dataset(report: Any, val: float, test: float, seed: int) -> tuple[dict[str, list[str]], dict]:
    """``make_split`` plus the number of images of each class in each part."""
    dataset = import_core("dataset")
    split = dataset.make_split(report, val=val, test=test, seed=seed)
    return split, split_class_counts(report, split)


def split_class_counts(report: Any, split: dict[str, list[str]]) -> dict[str, list[int]]:
    label_of = dict(zip(report.files, report.labels, strict=True))
    out: dict[str, list[int]] = {}
    for part, files in split.items():
        counts = [0] * len(report.classes)
        for f in files:
            label = label_of.get(f)
            if label is not None:
                counts[label] += 1
        out[part] = counts
    return out


def under_represented(counts: list[int]) -> list[bool]:
    top = max(counts, default=0)
    return [c < NEAR_EMPTY or c < top * UNDER_REPRESENTED for c in counts]


def fmt_int(n: int) -> str:
    return f"{n:,}"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


# -- what the page says about a report ----------------------------------------------------------------
def class_counts(report: Any) -> list[int]:
    return [int(report.counts.get(c, 0)) for c in report.classes]


def summary_text(report: Any) -> str:
    sizes = report.image_size_range or {}
    size_text = ""
    if sizes.get("min_width"):
        size_text = (f" · sizes from {sizes['min_width']}×{sizes['min_height']} to "
                     f"{sizes['max_width']}×{sizes['max_height']} pixels")
    layout = " (already split into train/val folders)" if report.layout == "split" else ""
    return (f"<b>{fmt_int(report.num_images)} images</b> in <b>{len(report.classes)} classes</b>{layout}"
            f"{size_text} · largest class / smallest class: {report.imbalance:.1f}×")


def warnings_text(report: Any) -> str:
    """The scan's warnings, one a line ("" when there are none)."""
    return "\n".join(f"⚠  {_sentence(w)}" for w in report.warnings)


def chart_legend(report: Any, flags: list[bool], mark: str) -> str:
    """Below the chart: the under-represented classes (``mark``: the coloured square, as rich text)."""
    few = [c for c, f in zip(report.classes, flags, strict=True) if f]
    if not few:
        return "Images per class: the classes are reasonably balanced."
    names = ", ".join(f"'{c}'" for c in few[:6]) + (" …" if len(few) > 6 else "")
    return (f"{mark} Too few images compared with the largest class: "
            f"{names}. Add images to these classes if you can; training balances the classes either way.")


def problems_texts(report: Any) -> tuple[str, str, str]:
    """(skipped files' title, duplicates' title, the Problems tab's title)."""
    n, d = len(report.skipped), len(report.duplicates)
    skipped = (f"<b>{n} file{'s' if n != 1 else ''} left out</b> — they are not used for training." if n
               else "No unreadable files: every image could be read.")
    duplicates = (f"<b>{d} group{'s' if d != 1 else ''} of identical files</b> — each group is kept in the same "
                  "split, so validation never sees a copy of a training image." if d
                  else "No duplicate files.")
    return skipped, duplicates, f"Problems ({n + d})" if n + d else "Problems"


class DataModel:
    """See the module docstring. Events carry plain data; the page reads ``report``, ``split`` and
    ``split_counts`` when told they changed."""

    def __init__(self, host: Host, jobs: JobRunner):
        self.host, self.jobs = host, jobs
        for name in ("folderText", "message", "messageCleared", "busyStarted", "busyText", "busyStopped",
                     "reportShown", "emptied", "splitShown", "splitPending", "splitFailed", "fieldsChanged",
                     "scanned"):
            setattr(self, name, Event())
        self.report: Any = None  # the ScanReport shown
        self.split: dict[str, list[str]] | None = None
        self.split_counts: dict[str, list[int]] = {}
        self.fields: tuple[float, float, int] = (20.0, 0.0, 0)  # the split fields: val %, test %, seed
        self.verify = False  # "Decode every image"
        self.scan_job: Job | None = None
        self.split_job: Job | None = None
        self.shown_message: tuple[str, str] | None = None  # (text, level) in the page's banner
        self._scan_token = 0
        self._split_token = 0
        self._cancelling = False
        self._restoring = False  # the scan re-reads the opened project's folder: keep its saved split
        self._loading = False
        host.projectReplaced.connect(self.load_from_project)
        host.projectChanged.connect(self._on_project_changed)

    # -- messages ------------------------------------------------------------------------------------
    def _say(self, text: str, level: str) -> None:
        self.shown_message = (text, level)
        self.message.emit(text, level)

    def clear_message(self) -> None:
        self.shown_message = None
        self.messageCleared.emit()

    def message_dismissed(self) -> None:
        """The user closed the banner."""
        self.shown_message = None

    # -- scanning ------------------------------------------------------------------------------------
    def choose_folder(self, path: str | os.PathLike[str], *, verify: bool | None = None) -> None:
        """Scan ``path`` (in the background) and make it the project's dataset when it succeeds."""
        self._start_scan(str(path).strip(), verify=verify, restoring=False)

    def cancel_scan(self) -> None:
        if self.scan_job is not None:
            self.scan_job.cancel()
            self._cancelling = True
            self.busyText.emit("Cancelling…")

    def busy(self) -> bool:
        return any(job is not None and job.is_running() for job in (self.scan_job, self.split_job))

    def _start_scan(self, path: str, *, verify: bool | None, restoring: bool) -> None:
        if not path:
            self._say("Choose a folder first.", "error")
            return
        if self.scan_job is not None:
            self.scan_job.cancel()
        if verify is None:
            verify = self.verify
        self._scan_token += 1
        token = self._scan_token
        self._restoring = restoring
        self._cancelling = False
        self.folderText.emit(path)
        self.clear_message()
        val, test, seed = self.fields
        self.scan_job = None
        job = self.jobs(
            scan_folder, path, verify, val / 100, test / 100, seed, name="scan",
            on_progress=lambda d, t: self._on_scan_progress(token, d, t),
            on_result=lambda r: self._on_scan_result(token, r),
            on_error=lambda m, tb: self._on_scan_error(token, path, m, tb),
            on_cancelled=lambda: self._on_scan_cancelled(token),
            on_finished=lambda: self._on_scan_finished(token),
        )
        if token == self._scan_token and job.is_running():  # (a synchronous runner has finished it)
            self.scan_job = job
            self.busyStarted.emit(f"Scanning {path}…", job)

    def _on_scan_progress(self, token: int, done: int, total: int) -> None:
        if token == self._scan_token and total > 0 and not self._cancelling:
            self.busyText.emit(f"Scanning… {fmt_int(done)} of {fmt_int(total)} files")

    def _on_scan_result(self, token: int, result: tuple) -> None:
        if token != self._scan_token:
            return
        report, split, per_class = result
        self.scanned.emit(report.root)
        restoring, self._restoring = self._restoring, False
        self._show_report(report)
        self._set_split(split, per_class)
        self._apply_to_project(report, split, restoring=restoring)
        self.host.set_scan(report)
        self.host.status(f"Scanned {report.root}: {fmt_int(report.num_images)} images in "
                         f"{len(report.classes)} classes")

    def _on_scan_error(self, token: int, path: str, message: str, tb: str) -> None:
        if token != self._scan_token:
            return
        self._restoring = False
        text = message if not tb else f"The scan of {path} failed: {message}"
        if self.report is not None:
            text += f" — still showing the previous dataset ({self.report.root})."
        self._say(text, "error")

    def _on_scan_cancelled(self, token: int) -> None:
        if token != self._scan_token:
            return
        self._restoring = False
        shown = f" Still showing {self.report.root}." if self.report is not None else ""
        self._say("Scan cancelled." + shown, "info")
        if self.report is not None:
            self.folderText.emit(self.report.root)

    def _on_scan_finished(self, token: int) -> None:
        if token == self._scan_token:
            self.scan_job = None
            self.busyStopped.emit()

    def _show_report(self, report: Any) -> None:
        self.report = report
        self.folderText.emit(report.root)
        self.reportShown.emit(report)

    # -- the split -----------------------------------------------------------------------------------
    def edit_split_settings(self, val: float, test: float, seed: int) -> None:
        """The split fields changed (val and test in %): the project follows, and a new split is due
        (``splitPending``: the page debounces, then calls ``start_split``)."""
        self.fields = (val, test, int(seed))
        data = self.host.project.data
        data.val_split = round(val / 100, 4)
        data.test_split = round(test / 100, 4)
        data.seed = int(seed)
        if data.val_split + data.test_split >= 0.95:
            self._say("Validation and test together take almost every image: leave at least 5 % for training.",
                      "warning")
            return
        self._loading = True
        try:
            self.host.mark_changed("data")
        finally:
            self._loading = False
        if self.report is not None:
            self.splitPending.emit()

    def start_split(self) -> None:
        if self.report is None:
            return
        if self.split_job is not None:
            self.split_job.cancel()
        self._split_token += 1
        token = self._split_token
        data = self.host.project.data
        self.split_job = self.jobs(
            split_dataset, self.report, data.val_split, data.test_split, data.seed, name="split",
            pass_control=False,
            on_result=lambda r: self._on_split_result(token, r),
            on_error=lambda m, tb: self._on_split_error(token, m),
        )

    def _on_split_result(self, token: int, result: tuple) -> None:
        if token != self._split_token or self.report is None:
            return
        split, per_class = result
        self._set_split(split, per_class)
        data = self.host.project.data
        if data.split != split:
            data.split = split
            self.host.mark_changed("data")

    def _on_split_error(self, token: int, message: str) -> None:
        if token == self._split_token:
            self.splitFailed.emit()
            self._say(f"Could not split the dataset: {message}", "error")

    def _set_split(self, split: dict[str, list[str]], per_class: dict[str, list[int]]) -> None:
        self.split = split
        self.split_counts = per_class
        self.splitShown.emit()

    def split_text(self) -> str:
        """The counts next to the split fields, and the classes without a validation image."""
        split = self.split or {}
        parts = [("train", "training"), ("val", "validation"), ("test", "test")]
        text = " · ".join(f"{fmt_int(len(split.get(k, [])))} {label}" for k, label in parts
                          if k != "test" or split.get("test"))
        val_counts = self.split_counts.get("val", [])
        warn = []
        if self.report is not None and len(val_counts) == len(self.report.classes):
            warn = [c for c, n in zip(self.report.classes, val_counts, strict=True) if n == 0]
        if warn:
            text += "<br>⚠ no validation image for " + ", ".join(f"'{c}'" for c in warn[:5])
        return text

    def part_count(self, part: str, class_index: int) -> int:
        """Images of a class in a part of the split (0 when the part is empty)."""
        counts = self.split_counts.get(part)
        return counts[class_index] if counts else 0

    # -- the project ---------------------------------------------------------------------------------
    def _apply_to_project(self, report: Any, split: dict[str, list[str]], *, restoring: bool) -> None:
        data = self.host.project.data
        changed = False
        had_split = data.split is not None
        keep_saved = (restoring and data.split is not None and os.path.normpath(data.root)
                      == os.path.normpath(report.root) and data.classes == list(report.classes)
                      and set().union(*map(set, data.split.values())) <= set(report.files))
        if keep_saved:
            # The opened project's frozen split still matches the folder: keep it exactly.
            if data.split != split:
                self._set_split(data.split, split_class_counts(report, data.split))
        else:
            val, test, seed = self.fields
            new = {"root": report.root, "classes": list(report.classes), "split": split,
                   "val_split": round(val / 100, 4), "test_split": round(test / 100, 4), "seed": int(seed)}
            changed_keys = []
            for key, value in new.items():
                if getattr(data, key) != value:
                    setattr(data, key, value)
                    changed_keys.append(key)
            changed = bool(changed_keys)
            if restoring and changed and had_split:
                self._say("The dataset folder changed since the project was saved, so it was split again.", "info")
            # Opening a project that never stored its split (the sample, a hand-written file): the
            # split is derived from the files and the seed, the same on every open, so filling it in
            # is not an edit to ask about on close. It is saved with the project's next save.
            derived_only = restoring and not had_split and set(changed_keys) <= {"split", "classes"}
            if derived_only:
                self.host.projectChanged.emit("data")
                changed = False
        if changed:
            self.host.mark_changed("data")
        self._update_head(len(report.classes))

    def _update_head(self, num_classes: int) -> None:
        """A head replaced for the old dataset must predict the new dataset's classes (``core.head``,
        imported by the scan's worker thread)."""
        change = import_core("head").match_head(self.host.project, num_classes, add=False)
        if change is not None:
            self.host.mark_changed("surgery")
            notice = (f"The model's new output layer now predicts {num_classes} classes (it had "
                      f"{int(change.previous or 0)}) to match this dataset.")
            if self.shown_message is not None and self.shown_message[1] == "info" and self.shown_message[0]:
                notice = self.shown_message[0] + " " + notice
            self._say(notice, "info")

    def _project_fields(self) -> tuple[float, float, int]:
        """The project's split settings as the fields show them (within the fields' ranges)."""
        data = self.host.project.data

        def clamp(value: float, lo: float, hi: float) -> float:
            return float(min(max(value, lo), hi))

        return (clamp(round(data.val_split * 100), *VAL_RANGE), clamp(round(data.test_split * 100), *TEST_RANGE),
                int(clamp(int(data.seed), 0, SEED_MAX)))

    def load_from_project(self) -> None:
        """Fill the fields from the project (new/open) and re-read the project's dataset."""
        if self.scan_job is not None:
            self.scan_job.cancel()
            self._scan_token += 1  # ignore whatever the old scan reports
            self.scan_job = None
            self.busyStopped.emit()
        data = self.host.project.data
        self.fields = self._project_fields()
        self.fieldsChanged.emit(*self.fields)
        self.clear_message()
        self.folderText.emit(data.root)
        scan = self.host.scan
        if scan is not None and data.root and os.path.normpath(scan.root) == os.path.normpath(data.root):
            self._show_report(scan)
            split = data.split or {}
            self._set_split(split, split_class_counts(scan, split))
            return
        self.report = None
        self.split = None
        self.emptied.emit()
        if data.root:
            if Path(data.root).is_dir():
                self._start_scan(data.root, verify=None, restoring=True)
            else:
                self._say(f"The project's dataset folder {data.root} no longer exists. Choose its new location.",
                          "error")

    def _on_project_changed(self, section: str) -> None:
        if section != "data" or self._loading:
            return
        fields = self._project_fields()
        if fields != self.fields:
            self.fields = fields
            self.fieldsChanged.emit(*fields)

    # -- the files -----------------------------------------------------------------------------------
    def gallery_files(self, class_index: int) -> list[str]:
        """The report's files (relative paths) of a class, or all of them (``class_index`` < 0)."""
        report = self.report
        if report is None:
            return []
        if class_index < 0:
            return list(report.files)
        return [f for f, lab in zip(report.files, report.labels, strict=True) if lab == class_index]

    def folder_of(self, path: str) -> str:
        """The folder to open for ``path`` (relative to the dataset root, or absolute)."""
        p = Path(path)
        if not p.is_absolute() and self.report is not None:
            p = Path(self.report.root) / p
        return str(p if p.is_dir() else p.parent)
