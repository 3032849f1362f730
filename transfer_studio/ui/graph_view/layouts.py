"""Layouts of one graph by expanded set: cached, computed on the spot when small, on a worker when large."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from transfer_studio.core.graph_layout import Hierarchy, Layout, compute_layout

SYNC_LAYOUT_UNITS = 250  # larger expansions are laid out on a worker thread
CACHE_SIZE = 8  # layouts kept per graph (expanding and collapsing again costs nothing)


class LayoutCache:
    """Hands the layout of a requested expansion to ``apply`` (layout, unit to centre on or None).

    ``pending(True)`` when a worker thread starts on a large one, ``pending(False)`` when it is done,
    failed or cancelled. A result that arrives for a graph or an expansion no longer wanted is dropped.
    """

    def __init__(self, apply: Callable[[Layout, str | None], None], pending: Callable[[bool], None]):
        self._apply = apply
        self._pending_changed = pending
        self._cache: OrderedDict[frozenset[str], Layout] = OrderedDict()
        self._hierarchy: Hierarchy | None = None
        self._task: object | None = None
        self._key: frozenset[str] | None = None
        self._centre: str | None = None

    def reset(self, hierarchy: Hierarchy | None) -> None:
        """Another graph (or none): cancel what is being computed and forget the cached layouts."""
        self.cancel()
        self._cache.clear()
        self._hierarchy = hierarchy

    def remember(self, layout: Layout) -> None:
        self._cache[layout.expanded] = layout
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    def is_pending(self) -> bool:
        return self._task is not None

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()  # type: ignore[attr-defined]
            self._task = None
            self._key = None
            self._pending_changed(False)

    def request(self, key: frozenset[str], centre_on: str | None) -> None:
        """Show the expansion ``key`` of the current graph: at once when cached or small, else later."""
        hierarchy = self._hierarchy
        if hierarchy is None:
            return
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            self.cancel()
            self._apply(cached, centre_on)
            return
        if hierarchy.count_units(key) <= SYNC_LAYOUT_UNITS:
            self.cancel()
            layout = compute_layout(hierarchy, key)
            self.remember(layout)
            self._apply(layout, centre_on)
            return
        self._start(hierarchy, key, centre_on)

    def _start(self, hierarchy: Hierarchy, key: frozenset[str], centre_on: str | None) -> None:
        from transfer_studio.ui.worker import run_task

        self.cancel()
        self._key, self._centre = key, centre_on

        def done(layout: Layout) -> None:
            if self._hierarchy is hierarchy and self._key == key:
                self._task, self._key = None, None
                self.remember(layout)
                self._apply(layout, self._centre)
                self._pending_changed(False)

        def failed(message: str, _tb: str) -> None:
            self._task, self._key = None, None
            self._pending_changed(False)

        self._task = run_task(compute_layout, hierarchy, key, name="graph-layout", pass_control=False,
                              needs_torch=False, on_result=done, on_error=failed)
        self._pending_changed(True)
