"""The empty-state placeholder shows all of its text, whatever text it had before."""

from __future__ import annotations

from transfer_studio.ui.widgets import EmptyState


def _all_shown(empty: EmptyState) -> bool:
    label = empty.text_label
    return label.height() >= label.heightForWidth(label.width()) and label.width() >= label.minimumWidth()


def test_new_text_is_not_cut_after_a_few_words(qtbot):
    empty = EmptyState("evaluate", "Nothing yet", "Short.")
    qtbot.addWidget(empty)
    empty.resize(1100, 700)
    empty.show()
    qtbot.waitExposed(empty)
    empty.set_content("No trained model yet", "Train a model on the Train page, or choose a run or exported "
                      "bundle folder above.")
    qtbot.wait(20)
    label = empty.text_label
    natural = label.fontMetrics().horizontalAdvance(label.text())
    assert label.width() >= min(natural, label.maximumWidth() - 8)
    assert _all_shown(empty)
    long = " ".join(["A much longer explanation that has to wrap onto several lines."] * 4)
    empty.set_content("Title", long)
    qtbot.wait(20)
    assert label.width() == label.maximumWidth()
    assert label.height() >= 3 * label.fontMetrics().lineSpacing() and _all_shown(empty)


def test_an_empty_placeholder_gives_qt_no_negative_size(qtbot, qtlog):
    """Issue 12.10: "QWidget::setMinimumSize: Negative sizes (8,-1)" for the Evaluate placeholder."""
    empty = EmptyState("evaluate", "", "")
    qtbot.addWidget(empty)
    empty.show()
    empty.set_content("Title", "Some text.")
    empty.set_content("", "")
    assert not [r.message for r in qtlog.records if "Negative sizes" in r.message]
    assert empty.text_label.minimumHeight() == 0 and empty.text_label.isHidden()
