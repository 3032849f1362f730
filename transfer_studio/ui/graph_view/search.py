"""Search matches of the graph: which nodes match, which one is current, which visible boxes hold one.

Plain data (no Qt): the view does the showing (expanding, centring, highlighting).
"""

from __future__ import annotations

from transfer_studio.core.graph_layout import Hierarchy, Layout


class SearchMatches:
    """Nodes whose id or type contains a query, in execution order, and a cursor stepping through them."""

    def __init__(self) -> None:
        self.nodes: list[str] = []  # node ids matching the search, in execution order
        self.index = -1  # the current match (-1: none stepped to yet)
        self.units: set[str] = set()  # visible units holding a match, for the layout shown

    def find(self, hierarchy: Hierarchy | None, text: str) -> None:
        """Match ``text`` (case-insensitive, trimmed; empty matches nothing); the cursor starts over."""
        query = text.strip().lower()
        self.clear()
        if query and hierarchy is not None:
            self.nodes = [nid for nid, n in hierarchy.nodes.items()
                          if query in nid.lower() or query in str(n.type).lower()]
            self.nodes.sort(key=hierarchy.order.__getitem__)

    def clear(self) -> None:
        self.nodes, self.index = [], -1

    def step(self, step: int = 1) -> str | None:
        """Move the cursor by ``step`` (wrapping around) and return that node, or None without matches."""
        if not self.nodes:
            return None
        self.index = (self.index + step) % len(self.nodes)
        return self.nodes[self.index]

    def position(self) -> tuple[int, int]:
        """(1-based index of the current match, number of matches)."""
        return self.index + 1, len(self.nodes)

    def locate(self, layout: Layout | None) -> set[str]:
        """Update and return ``units``: the boxes of ``layout`` holding a match (a collapsed block
        lights up for a match inside it)."""
        if not self.nodes or layout is None:
            self.units = set()
        else:
            unit_of = layout.unit_of_node
            self.units = {unit_of[nid] for nid in self.nodes if nid in unit_of}
        return self.units
