"""The host's messages between pages (issue 13.3): the typed ``project.ui`` and the signals that tell
pages what another page did, on the Qt-free ``Session`` (``AppState`` shares ``HostLogic``)."""

from __future__ import annotations

import pytest

from transfer_studio.config import Project, UiState
from transfer_studio.ui.models.session import Session


def _record(host: Session, *names: str) -> list[tuple[str, object]]:
    seen: list[tuple[str, object]] = []
    for name in names:
        getattr(host, name).connect(lambda *a, n=name: seen.append((n, a[0] if a else None)))
    return seen


def test_select_run_is_saved_announced_once_and_marks_the_project():
    host = Session()
    seen = _record(host, "projectChanged", "runSelected")
    host.select_run("/runs/1")
    assert host.project.ui.selected_run == "/runs/1" and host.modified
    assert seen == [("projectChanged", "ui"), ("runSelected", "/runs/1")]
    host.mark_changed("ui")  # another page's view state: no new run to follow
    assert seen[-1] == ("projectChanged", "ui")


def test_a_dict_style_write_of_selected_run_is_announced_too():
    """The Train page's run model writes ``ui["selected_run"]`` and marks ``ui``; pages still hear of it."""
    host = Session()
    seen = _record(host, "runSelected")
    host.project.ui["selected_run"] = "/runs/2"
    host.mark_changed("ui")
    assert seen == [("runSelected", "/runs/2")]


def test_opening_a_project_does_not_announce_its_saved_run():
    host = Session()
    seen = _record(host, "runSelected")
    host.new_project(Project(ui={"selected_run": "/runs/old"}))
    host.mark_changed("ui")
    assert seen == []
    host.select_run("/runs/new")
    assert seen == [("runSelected", "/runs/new")]


def test_request_evaluation_remembers_the_run_for_the_evaluate_page_and_announces_it():
    host = Session()
    seen = _record(host, "projectChanged", "evaluateRequested", "runSelected")
    host.request_evaluation("/runs/3")
    assert host.project.ui.evaluate_run == "/runs/3" and host.modified
    assert seen == [("projectChanged", "ui"), ("evaluateRequested", "/runs/3")]


def test_view_state_takes_the_typed_fields_only():
    host = Session()
    assert host.set_view_state(try_top_k=3, try_images=["/a.png"]) is True
    assert host.project.ui.try_top_k == 3 and not host.modified  # view state is not an edit
    assert host.set_view_state(try_top_k=3) is False
    with pytest.raises(AttributeError):
        host.set_view_state(no_such_field=1)
    with pytest.raises(TypeError):
        host.set_view_state(try_top_k="3")
    assert isinstance(host.project.ui, UiState)
