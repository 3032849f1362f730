"""The new classification head's class count: one rule for the engine and the app (torch-free).

A project's new head is its last ``replace_head`` surgery op; it must predict the dataset's classes.
The dataset's classes are those of the latest scan of its folder when there is one, else the ones
the project recorded. ``match_head`` brings the head in line: the trainer (``training.engine``) does
it for every run, the Data page when a scan finds another number of classes, the Strategy page when
it applies a suggestion (so the graph shows what will train), and the Model page's "Replace head"
proposes ``class_count``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transfer_studio.config import Project, SurgeryOp

REPLACE_HEAD = "replace_head"


def dataset_classes(project: Project, scan: Any = None) -> list[str]:
    """The dataset's class names: the scan's (``core.dataset.ScanReport``) if given, else the project's."""
    classes = getattr(scan, "classes", None) if scan is not None else None
    return list(classes) if classes else list(project.data.classes)


def class_count(project: Project, scan: Any = None) -> int:
    """How many classes the head must predict; 0 while no dataset is known."""
    return len(dataset_classes(project, scan))


def head_op(project: Project) -> SurgeryOp | None:
    """The op that makes the project's new head (the last replace_head), or None."""
    heads = [op for op in project.surgery if op.op == REPLACE_HEAD]
    return heads[-1] if heads else None


@dataclass(frozen=True)
class HeadChange:
    added: bool  # the project had no new head: one was appended
    previous: Any  # the class count the head had before (None when added)


def match_head(project: Project, num_classes: int, *, add: bool = True) -> HeadChange | None:
    """Make the project's new head predict ``num_classes`` (in place); None when it already does.

    Without a head, one is appended when ``add`` (the trainer and the Strategy page), else nothing
    changes (the Data page: the user has not asked for a new head yet)."""
    if num_classes < 1:
        return None
    op = head_op(project)
    if op is None:
        if not add:
            return None
        project.surgery.append(SurgeryOp(REPLACE_HEAD, params={"num_classes": int(num_classes)}))
        return HeadChange(True, None)
    previous = op.params.get("num_classes")
    if previous == num_classes:
        return None
    op.params = {**op.params, "num_classes": int(num_classes)}
    return HeadChange(False, previous)
