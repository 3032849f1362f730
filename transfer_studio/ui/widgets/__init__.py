"""Small shared widgets for every page.

- ``MessageBanner``: an inline message (info / success / warning / error) with an optional action
  and details; pages show errors here instead of modal dialogs.
- ``BusyIndicator``: spinner + text + progress bar + Cancel, for a background task (ui/worker.py).
- ``ElidedLabel``: one line of text shortened to the width it gets (full text as tooltip).
- ``EmptyState``: a centred icon, title, explanation and action buttons for a page with nothing to
  show yet.
- ``format_count`` / ``format_share`` / ``format_shape`` / ``format_bytes``: compact numbers for labels.

Only Qt is imported here; nothing heavy (torch) loads with these widgets.
"""

from transfer_studio.ui.widgets.banner import MessageBanner
from transfer_studio.ui.widgets.busy import BusyIndicator, Spinner
from transfer_studio.ui.widgets.elided_label import ElidedLabel
from transfer_studio.ui.widgets.empty_state import EmptyState
from transfer_studio.ui.widgets.formatting import format_bytes, format_count, format_shape, format_share

__all__ = ["BusyIndicator", "ElidedLabel", "EmptyState", "MessageBanner", "Spinner", "format_bytes", "format_count",
           "format_shape", "format_share"]
