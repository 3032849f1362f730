"""A page's heading and its one-paragraph explanation, styled by the theme's label roles."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel


def page_heading(title: str, hint: str) -> tuple[QLabel, QLabel]:
    """The page's title label (role "heading") and its word-wrapped hint (role "muted")."""
    heading = QLabel(title)
    heading.setProperty("role", "heading")
    explanation = QLabel(hint)
    explanation.setProperty("role", "muted")
    explanation.setWordWrap(True)
    return heading, explanation
