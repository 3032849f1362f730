"""Picture galleries: a list of thumbnails (``ui.thumbnails``) with a caption under each, as the
Evaluate and Try pages show them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QSize, Qt
from PySide6.QtWidgets import QAbstractItemView, QListView


def caption_model_class() -> type:
    """A ThumbnailModel whose items carry a caption under the picture (built lazily: Qt-only import)."""
    from transfer_studio.ui.thumbnails import ThumbnailModel

    class CaptionModel(ThumbnailModel):
        def __init__(self, loader: Any = None, parent: Any = None):
            super().__init__(loader, parent)
            self._captions: list[str] = []

        def set_captioned(self, paths: Sequence[str], captions: Sequence[str], tooltips: Sequence[str]) -> None:
            self._captions = list(captions)
            self.set_items(paths, tooltips)

        def caption(self, row: int) -> str:
            return self._captions[row]

        def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
            if index.isValid() and 0 <= index.row() < len(self._captions):
                if role == Qt.ItemDataRole.DisplayRole:
                    return self._captions[index.row()]
                if role == Qt.ItemDataRole.SizeHintRole:
                    return QSize(self.loader.size + 28, self.loader.size + 40)
                if role == Qt.ItemDataRole.TextAlignmentRole:
                    return int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
            return super().data(index, role)

    return CaptionModel


def gallery_view(model: Any, name: str, thumb: int = 84) -> QListView:
    """A gallery of ``model``'s pictures, ``thumb`` pixels each, captions below."""
    from transfer_studio.ui.thumbnails import make_gallery_view

    view = make_gallery_view(model)
    view.setObjectName(name)
    view.setGridSize(QSize(thumb + 34, thumb + 44))
    view.setWordWrap(True)
    view.setTextElideMode(Qt.TextElideMode.ElideMiddle)
    view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    # In icon mode Fusion highlights only the caption of the selected item: frame the whole tile.
    view.setStyleSheet("QListView::item { border-radius: 6px; padding: 2px; }"
                       "QListView::item:selected { background: palette(highlight); color: palette(highlighted-text); }")
    return view
