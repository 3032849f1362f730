"""The Review labels page with the real label check on a worker thread: ranked images, previews,
decisions by keyboard, apply, undo after a restart, cancel, errors in the banner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.images import make_class_folder, make_digits_folder
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton

from transfer_studio.config import DataSpec, ModelSpec, Project, TrainSpec
from transfer_studio.core.label_journal import SET_ASIDE_DIR
from transfer_studio.ui.pages.review import ReviewPage
from transfer_studio.ui.state import AppState

TIMEOUT = 90_000
FLIPPED = {"1/0_000.png": "0", "3/2_001.png": "2", "5/4_002.png": "4"}  # where they are -> their true class


@pytest.fixture
def digits(tmp_path) -> Path:
    """100 digits, three of them filed under a wrong class."""
    root = make_digits_folder(tmp_path / "digits", per_class=10, size=32)
    for rel, true in FLIPPED.items():
        os.replace(root / true / Path(rel).name, root / rel)
    return root


def _project(root: Path) -> Project:
    return Project(name="review", model=ModelSpec("efficientnet_lite0"), data=DataSpec(root=str(root)),
                   train=TrainSpec(device="cpu", image_size=64, num_workers=0))


def _page(qtbot, state: AppState) -> ReviewPage:
    page = ReviewPage(state)
    qtbot.addWidget(page)
    page.resize(1200, 820)
    page.show()
    qtbot.waitExposed(page)
    page.activateWindow()
    qtbot.waitUntil(lambda: not page.busy(), timeout=TIMEOUT)  # the label journal has been read
    return page


def _check_button(page: ReviewPage) -> QPushButton:
    """The empty state's "Check labels" (the page's own shows once there is a check)."""
    assert page.empty.isVisible() and not page.check_button.isVisible()
    return page.empty.findChild(QPushButton, "review_empty_check")


def test_check_decide_by_keyboard_apply_and_undo_after_restart(qtbot, digits) -> None:
    state = AppState(_project(digits))
    page = _page(qtbot, state)
    assert page.empty.isVisible() and not page.splitter.isVisible()
    qtbot.mouseClick(_check_button(page), Qt.MouseButton.LeftButton)
    assert page.busy_bar.isVisible() and page.busy_bar.cancel_button.isVisible() and not page.check_button.isEnabled()
    qtbot.waitUntil(lambda: not page.busy() and page.model.result is not None, timeout=TIMEOUT)
    assert not page.busy_bar.isVisible() and page.splitter.isVisible() and not page.empty.isVisible()
    assert state.scan is not None and len(state.scan.files) == 100  # the check scanned the folder itself
    rows = page.table.rowCount()
    assert rows == len(page.model.items) >= 20
    top = [page.table.item(r, 1).text() for r in range(5)]
    assert len(set(top) & set(FLIPPED)) >= 2, top
    assert "probably mislabelled" in page.banner.text()

    # The current image: large preview (decoded off the GUI thread), labels, why it is listed.
    first = page.model.items[0]
    qtbot.waitUntil(lambda: page.preview.pixmap() is not None and not page.preview.pixmap().isNull(), timeout=10_000)
    assert page.preview.pixmap().width() >= 200
    assert f"Labelled '{first.given}'" in page.labels_label.text() and first.file in page.file_label.text()
    assert page.accept_button.text() == f"Accept '{first.suggested}' (A)"

    # Keyboard: accept, keep, set aside; each moves on to the next image.
    page.table.setFocus()
    qtbot.keyClick(page.table, Qt.Key.Key_A)
    assert page.model.current == 1 and page.table.currentRow() == 1
    assert page.table.item(0, 5).text() == f"→ '{first.suggested}'"
    qtbot.keyClick(page.table, Qt.Key.Key_K)
    qtbot.keyClick(page.table, Qt.Key.Key_S)
    second, third = page.model.items[1], page.model.items[2]
    assert page.table.item(1, 5).text() == f"keep '{second.given}'" and page.table.item(2, 5).text() == "set aside"
    assert page.summary_label.text() == f"1 to another class, 1 set aside, 1 kept (of {rows} listed)"
    assert page.apply_button.text() == "Apply 2 changes" and page.apply_button.isEnabled()

    qtbot.mouseClick(page.apply_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.busy() and page.undo_button.isEnabled(), timeout=TIMEOUT)
    moved = digits / first.suggested / Path(first.file).name
    assert moved.is_file() and not (digits / first.file).exists()
    assert (digits / SET_ASIDE_DIR / third.file).is_file()
    assert "Done: 1 image to another class, 1 set aside" in page.banner.text()
    assert page.table.rowCount() == rows - 2 and f"{first.suggested}/{Path(first.file).name}" in state.scan.files
    assert page.history.count() == 1 and "1 image to another class, 1 set aside" in page.history.item(0).text()

    # A restart: a new state and page read the journal; undo puts the files back.
    state2 = AppState(_project(digits))
    page2 = _page(qtbot, state2)
    qtbot.waitUntil(lambda: page2.undo_button.isEnabled(), timeout=TIMEOUT)
    assert page2.empty.isVisible()  # no check in this session yet, but its corrections are listed
    qtbot.mouseClick(page2.undo_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page2.busy() and "Undone" in page2.banner.text(), timeout=TIMEOUT)
    assert (digits / first.file).is_file() and (digits / third.file).is_file() and not moved.exists()
    assert page2.history.count() == 2 and page2.history.item(1).text().endswith("(undone)")
    page.shutdown()
    page2.shutdown()


def test_cancel_the_check(qtbot, digits) -> None:
    page = _page(qtbot, AppState(_project(digits)))
    qtbot.mouseClick(_check_button(page), Qt.MouseButton.LeftButton)
    assert page.busy_bar.isVisible()
    qtbot.mouseClick(page.busy_bar.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.busy(), timeout=TIMEOUT)
    assert "cancelled" in page.banner.text() and page.model.result is None
    assert page.empty.isVisible() and page.table.rowCount() == 0 and _check_button(page).isEnabled()
    page.shutdown()


def test_a_failed_check_says_why_in_the_banner(qtbot, tmp_path) -> None:
    root = make_class_folder(tmp_path / "one", {"a": 1, "b": 4}, size=16)
    page = _page(qtbot, AppState(_project(root)))
    qtbot.mouseClick(_check_button(page), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.busy() and bool(page.banner.text()), timeout=TIMEOUT)
    assert page.banner.level() == "error" and "fewer than 2 images" in page.banner.text()
    assert _check_button(page).isEnabled()
    page.shutdown()


def test_reachable_from_the_main_window(qtbot, main_window) -> None:
    main_window.page_actions["review"].trigger()
    assert main_window.current_page_key() == "review"
    page = main_window.page("review")
    assert isinstance(page, ReviewPage) and page.isVisible()
    assert not page.check_button.isEnabled()  # the test project has no data folder
    assert "Data page" in page.check_button.toolTip() and "Data page" in page.empty.text_label.text()
    assert not page.empty.findChild(QPushButton, "review_empty_check").isVisible()
