"""Lazy image thumbnails for big folders: only what the view shows is decoded, off the GUI thread.

A ``QListView`` asks its model for the decoration of the items it paints, and only of those (with
uniform item sizes). ``ThumbnailModel`` answers from an LRU cache of pixmaps, or with a placeholder
while it asks ``ThumbnailLoader`` to decode the file. The loader keeps the most recent requests (what
is on screen now) first and forgets old ones beyond a small queue, so scrolling through 20,000
images never piles up work. Decoding and downscaling happen on a thread pool as ``QImage``
(thread-safe); the conversion to ``QPixmap`` happens on the GUI thread, as Qt requires.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import Sequence

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRunnable,
    QSize,
    Qt,
    QThreadPool,
    Signal,
)
from PySide6.QtGui import QColor, QImage, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QApplication, QListView, QWidget

_BROKEN = object()  # cache marker: the file could not be decoded (don't retry it on every repaint)


def decode_thumbnail(path: str, size: int) -> QImage | None:
    """Decode ``path`` as RGB and scale it to fit ``size`` x ``size``; None for an unreadable file.

    JPEGs are decoded at a reduced scale (PIL's draft mode: 8x faster on a camera photo); everything
    else goes through the core's ``load_rgb`` so CMYK, 16-bit and EXIF-rotated files look the same
    here as in training. Safe to call from any thread.
    """
    from PIL import Image, ImageOps

    from transfer_studio.core.imageio import load_rgb, to_rgb

    try:
        try:
            with Image.open(path) as im:
                if im.format != "JPEG":
                    raise ValueError("not a JPEG")
                im.draft("RGB", (size * 2, size * 2))
                im.load()
                img = to_rgb(ImageOps.exif_transpose(im))
        except Exception:  # noqa: BLE001 - fall back to the general loader
            img = load_rgb(path)
        # Fit the tile both ways: small images (e.g. 28 px digits) are enlarged so the grid reads evenly.
        img = ImageOps.contain(img.convert("RGB"), (size, size), Image.Resampling.BILINEAR)
        data = img.tobytes()
        qimg = QImage(data, img.width, img.height, 3 * img.width, QImage.Format.Format_RGB888)
        return qimg.copy()  # own the pixels: ``data`` goes away with this frame
    except Exception:  # noqa: BLE001 - an undecodable file is shown as "unreadable", never a crash
        return None


class _Emitter(QObject):
    done = Signal(str, object, int)  # path, QImage | None, generation


class _DecodeJob(QRunnable):
    def __init__(self, path: str, size: int, generation: int, emitter: _Emitter):
        super().__init__()
        self.setAutoDelete(True)
        self._path, self._size, self._generation, self._emitter = path, size, generation, emitter

    def run(self) -> None:
        image = decode_thumbnail(self._path, self._size)
        with contextlib.suppress(RuntimeError):  # the loader was deleted meanwhile (app closing)
            self._emitter.done.emit(self._path, image, self._generation)


class ThumbnailLoader(QObject):
    """Decodes thumbnails on a small thread pool; most-recently-requested first; LRU pixmap cache."""

    thumbnailReady = Signal(str)  # path; its pixmap is now in the cache

    def __init__(self, size: int = 96, *, cache_size: int = 800, threads: int = 2, queue_size: int = 256,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.size = size
        self._cache: OrderedDict[str, object] = OrderedDict()  # path -> QPixmap | _BROKEN
        self._cache_size = cache_size
        self._wanted: OrderedDict[str, None] = OrderedDict()  # newest last
        self._queue_size = queue_size
        self._in_flight: set[str] = set()
        self._generation = 0
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max(1, threads))
        self._max_in_flight = max(1, threads) * 2
        self._emitter = _Emitter()
        self._emitter.done.connect(self._on_done)  # queued: jobs emit from pool threads
        self.decoded = 0  # number of files decoded so far (measurements and tests)

    # -- requests ------------------------------------------------------------------------------
    def cached(self, path: str) -> QPixmap | None | object:
        """The cached pixmap, ``BROKEN`` for an unreadable file, or None when not loaded yet."""
        value = self._cache.get(path)
        if value is not None:
            self._cache.move_to_end(path)
        return value

    def request(self, path: str) -> None:
        """Ask for ``path``'s thumbnail; ``thumbnailReady(path)`` follows once it is cached."""
        if path in self._cache or path in self._in_flight:
            return
        self._wanted[path] = None
        self._wanted.move_to_end(path)
        while len(self._wanted) > self._queue_size:  # scrolled past long ago: forget it
            self._wanted.popitem(last=False)
        self._dispatch()

    def clear_queue(self) -> None:
        """Forget pending requests (the view now shows something else); the cache stays."""
        self._wanted.clear()
        self._pool.clear()  # queued jobs that haven't started
        self._generation += 1
        self._in_flight.clear()

    def pending(self) -> int:
        return len(self._wanted) + len(self._in_flight)

    def shutdown(self, wait_ms: int = 5000) -> None:
        self._wanted.clear()
        self._pool.clear()
        self._pool.waitForDone(wait_ms)

    # -- internals -----------------------------------------------------------------------------
    def _dispatch(self) -> None:
        while self._wanted and len(self._in_flight) < self._max_in_flight:
            path, _ = self._wanted.popitem(last=True)  # LIFO: what the user looks at now
            self._in_flight.add(path)
            self._pool.start(_DecodeJob(path, self.size, self._generation, self._emitter))

    def _on_done(self, path: str, image: QImage | None, generation: int) -> None:
        if generation == self._generation:
            self._in_flight.discard(path)
        self.decoded += 1
        self._cache[path] = QPixmap.fromImage(image) if image is not None else _BROKEN
        self._cache.move_to_end(path)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        self._dispatch()
        self.thumbnailReady.emit(path)


BROKEN = _BROKEN


class ThumbnailModel(QAbstractListModel):
    """Image files as a list model whose decorations load lazily (see module docstring)."""

    PathRole = Qt.ItemDataRole.UserRole + 1

    def __init__(self, loader: ThumbnailLoader | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.loader = loader or ThumbnailLoader(parent=self)
        self.loader.thumbnailReady.connect(self._on_ready)
        self._paths: list[str] = []
        self._labels: list[str] = []
        self._rows: dict[str, int] = {}
        self._placeholder: QPixmap | None = None
        self._broken: QPixmap | None = None

    def set_items(self, paths: Sequence[str], labels: Sequence[str] | None = None) -> None:
        """Show these files (absolute paths); ``labels`` are tooltips (e.g. relative paths)."""
        self.beginResetModel()
        self.loader.clear_queue()
        self._paths = [str(p) for p in paths]
        self._labels = list(labels) if labels is not None else [os.path.basename(p) for p in self._paths]
        self._rows = {p: i for i, p in enumerate(self._paths)}
        self.endResetModel()

    def path(self, row: int) -> str:
        return self._paths[row]

    # -- Qt model API --------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._paths)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._paths):
            return None
        path = self._paths[index.row()]
        if role == Qt.ItemDataRole.DecorationRole:
            value = self.loader.cached(path)
            if value is None:
                self.loader.request(path)
                return self._placeholder_pixmap()
            return self._broken_pixmap() if value is BROKEN else value
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._labels[index.row()]
        if role == self.PathRole:
            return path
        if role == Qt.ItemDataRole.SizeHintRole:
            return QSize(self.loader.size + 8, self.loader.size + 8)
        return None

    def _on_ready(self, path: str) -> None:
        row = self._rows.get(path)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])

    def _placeholder_pixmap(self) -> QPixmap:
        if self._placeholder is None:
            self._placeholder = _tile(self.loader.size, None)
        return self._placeholder

    def _broken_pixmap(self) -> QPixmap:
        if self._broken is None:
            self._broken = _tile(self.loader.size, "unreadable")
        return self._broken


def _tile(size: int, text: str | None) -> QPixmap:
    """A neutral square in the palette's colours (placeholder while loading, or 'unreadable')."""
    pal = QApplication.palette()
    pm = QPixmap(size, size)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    fill = QColor(pal.color(QPalette.ColorRole.Mid))
    fill.setAlpha(70)
    p.setBrush(fill)
    p.setPen(Qt.PenStyle.NoPen)
    p.drawRoundedRect(2, 2, size - 4, size - 4, 6, 6)
    if text:
        p.setPen(pal.color(QPalette.ColorRole.Text))
        p.drawText(pm.rect(), Qt.AlignmentFlag.AlignCenter, text)
    p.end()
    return pm


def make_gallery_view(model: ThumbnailModel, parent: QWidget | None = None) -> QListView:
    """An icon-grid view tuned for tens of thousands of items (uniform sizes, batched layout)."""
    view = QListView(parent)
    view.setViewMode(QListView.ViewMode.IconMode)
    view.setUniformItemSizes(True)  # the view never asks every item for its size
    view.setLayoutMode(QListView.LayoutMode.Batched)
    view.setBatchSize(500)
    view.setResizeMode(QListView.ResizeMode.Adjust)
    view.setMovement(QListView.Movement.Static)
    view.setWrapping(True)
    view.setSpacing(4)
    size = model.loader.size
    view.setIconSize(QSize(size, size))
    view.setGridSize(QSize(size + 12, size + 12))
    view.setSelectionMode(QListView.SelectionMode.SingleSelection)
    view.setModel(model)
    return view
