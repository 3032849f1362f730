"""The project file's flow without Qt (``ui.models.project_files``): the unsaved-changes question before
anything discards edits, open/save/save-as and their failures, the recent list, closing with work in
progress, and the sample project (its job replaced by a fake; the UI tests make the real one). The
user's answers come from a fake ``Dialogs``; jobs run in the test's thread."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers.page_models import Jobs, record

from transfer_studio.config import Project
from transfer_studio.ui.models import project_files as pf
from transfer_studio.ui.models.project_files import ProjectFiles
from transfer_studio.ui.models.session import Session


class FileSession(Session):
    """A ``Session`` with ``AppState``'s file life cycle."""

    def open_project(self, path):
        self.new_project(Project.load(path), Path(path))

    def save(self, path=None) -> Path:
        target = Path(path) if path else self.path
        self.project.save(target)
        self.path = target
        self._set_modified(False)
        self.pathChanged.emit(str(target))
        return target


class Remembered:
    def __init__(self, folder: Path):
        self.recent: list[str] = []
        self.folder = folder

    def add_recent_project(self, path) -> None:
        self.recent = [str(path)] + [p for p in self.recent if p != str(path)]

    def remove_recent_project(self, path) -> None:
        self.recent.remove(str(path))

    def last_folder(self, kind: str) -> str:
        assert kind == "project"
        return str(self.folder)


class Dialogs:
    """Answers set by the test; every question asked is recorded as (kind, text)."""

    def __init__(self) -> None:
        self.unsaved, self.open_path, self.save_path = "cancel", "", ""
        self.reset, self.stop, self.overwrite = False, False, False
        self.asked: list[tuple[str, str]] = []

    def ask_unsaved(self, text):
        self.asked.append(("unsaved", text))
        return self.unsaved

    def ask_open_path(self, start):
        self.asked.append(("open", start))
        return self.open_path

    def ask_save_path(self, start):
        self.asked.append(("save", start))
        return self.save_path

    def confirm_overwrite(self, path):
        self.asked.append(("overwrite", path))
        return self.overwrite

    def confirm_reset_sample(self, text):
        self.asked.append(("reset", text))
        return self.reset

    def confirm_stop_work(self, text):
        self.asked.append(("stop", text))
        return self.stop


@pytest.fixture
def s(tmp_path):
    host = FileSession(Project(name="Birds"))
    settings, dialogs, jobs = Remembered(tmp_path), Dialogs(), Jobs()
    files = ProjectFiles(host, settings, jobs, dialogs, sample_dir=lambda: tmp_path / "sample")
    seen = record(files, ProjectFiles.EVENTS)
    shown = record(host, ("navigateRequested", "statusMessage"))
    return SimpleNamespace(host=host, settings=settings, dialogs=dialogs, jobs=jobs, files=files, seen=seen,
                           shown=shown, tmp=tmp_path)


def edit(host) -> None:
    host.project.data.root = "/data/cats"
    host.mark_changed("data")


def test_unchanged_projects_are_discarded_without_a_question(s):
    assert s.files.maybe_save("quitting") and s.dialogs.asked == []


@pytest.mark.parametrize("answer", ["cancel", "discard", "save"])
def test_unsaved_changes_are_asked_about(s, answer):
    edit(s.host)
    s.dialogs.unsaved = answer
    s.dialogs.save_path = str(s.tmp / "kept")
    assert s.files.maybe_save("quitting") == (answer != "cancel")
    kind, text = s.dialogs.asked[0]
    assert kind == "unsaved" and "“Birds” has unsaved changes" in text and "before quitting?" in text
    assert (s.tmp / "kept.tsproj").is_file() == (answer == "save")  # never saved yet: Save asks where
    assert s.host.modified == (answer != "save")


def test_save_without_a_file_chosen_keeps_the_edits(s):
    edit(s.host)
    s.dialogs.unsaved = "save"  # ... then the file dialog is cancelled
    assert not s.files.maybe_save() and s.host.modified and s.host.path is None


def test_new_project_asks_first_then_shows_the_model_page(s):
    edit(s.host)
    assert not s.files.new_project()
    assert s.host.project.name == "Birds" and s.shown["navigateRequested"] == []
    s.dialogs.unsaved = "discard"
    assert s.files.new_project()
    assert s.host.project.name == "Untitled" and not s.host.modified and s.host.path is None
    assert s.shown["navigateRequested"] == ["model"] and s.seen["messageCleared"]
    assert s.shown["statusMessage"][-1][0] == "New project: choose a model to start."


def test_open_dialog_is_not_shown_when_the_question_is_cancelled(s, tmp_path):
    edit(s.host)
    assert not s.files.open_dialog() and [k for k, _ in s.dialogs.asked] == ["unsaved"]
    s.dialogs.unsaved = "discard"
    assert not s.files.open_dialog()  # the file dialog cancelled
    assert s.dialogs.asked[-1] == ("open", str(tmp_path))  # it starts in the last folder
    Project(name="Fish").save(tmp_path / "fish.tsproj")
    s.dialogs.open_path = str(tmp_path / "fish.tsproj")
    assert s.files.open_dialog()
    assert s.host.project.name == "Fish" and s.host.path == tmp_path / "fish.tsproj"
    assert s.settings.recent == [str(tmp_path / "fish.tsproj")]
    assert s.shown["navigateRequested"] == ["model"] and len(s.seen["opened"]) == 1
    assert s.shown["statusMessage"][-1][0] == f"Opened {tmp_path / 'fish.tsproj'}"


def test_the_project_stays_while_a_page_holds_it(s, tmp_path):
    """Runs being deleted on the Runs page: their records would be removed from a project already
    saved or closed (the window's ``holds``), so new, open and the sample wait and say why."""
    Project(name="Fish").save(tmp_path / "fish.tsproj")
    s.files.holds = lambda: "Runs are being deleted: wait."
    assert not s.files.new_project() and not s.files.open(tmp_path / "fish.tsproj", ask=False)
    assert not s.files.open_dialog() and not s.files.open_sample()
    assert s.host.project.name == "Birds" and s.dialogs.asked == [] and s.jobs.started == []
    assert s.seen["message"][-1][:2] == ("Runs are being deleted: wait.", "warning")
    s.files.holds = lambda: None
    assert s.files.open(tmp_path / "fish.tsproj", ask=False) and s.host.project.name == "Fish"


def test_a_file_that_cannot_be_opened_says_why(s, tmp_path, monkeypatch):
    bad = tmp_path / "bad.tsproj"
    bad.write_text("{ not json")
    s.settings.recent = [str(bad), str(tmp_path / "gone.tsproj")]
    assert not s.files.open(bad)
    text, level, *_ = s.seen["message"][-1]
    assert level == "error" and "corrupt" in text and s.host.project.name == "Birds"
    assert str(bad) in s.settings.recent  # still there: it may be repaired
    assert not s.files.open(tmp_path / "gone.tsproj")
    assert "not found" in s.seen["message"][-1][0]
    assert s.settings.recent == [str(bad)]  # a file that is gone leaves the list
    monkeypatch.setattr(s.host, "open_project", lambda p: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    assert not s.files.open(bad)
    assert s.seen["message"][-1][0] == f"cannot read {bad}: Permission denied"
    assert s.seen["opened"] == [] and s.shown["navigateRequested"] == []


def test_save_as_adds_the_suffix_and_names_an_untitled_project(s, tmp_path):
    s.host.project.name = ""
    s.dialogs.save_path = str(tmp_path / "my birds")
    assert s.files.save()  # no file yet: Save is Save As
    assert s.dialogs.asked == [("save", str(tmp_path / "Untitled.tsproj"))]  # named after the title
    saved = tmp_path / "my birds.tsproj"
    assert s.host.path == saved and s.host.project.name == "my birds" and Project.load(saved).name == "my birds"
    assert s.settings.recent == [str(saved)] and s.shown["statusMessage"][-1] == (f"Saved {saved}", 4000)
    s.dialogs.save_path = str(tmp_path / "copy.json")  # .json kept; a named project keeps its name
    assert s.files.save_as()
    assert s.dialogs.asked[-1] == ("save", str(saved)) and s.host.path == tmp_path / "copy.json"
    assert s.host.project.name == "my birds"
    s.dialogs.save_path = ""
    assert not s.files.save_as()


def test_save_as_asks_before_the_added_suffix_replaces_another_project(s, tmp_path):
    other = tmp_path / "birds.tsproj"
    Project(name="Other birds").save(other)
    s.dialogs.save_path = str(tmp_path / "birds")  # the dialog saw no file "birds": it did not ask
    assert not s.files.save_as()
    assert s.dialogs.asked[-1] == ("overwrite", str(other)) and Project.load(other).name == "Other birds"
    s.dialogs.overwrite = True
    assert s.files.save_as() and Project.load(other).name == "Birds"


def test_a_failed_save_keeps_the_edits_and_says_where_to_go(s, tmp_path, monkeypatch):
    s.host.path = tmp_path / "p.tsproj"
    edit(s.host)

    def full(path=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(s.host, "save", full)
    assert not s.files.save()
    text, level, *_ = s.seen["message"][-1]
    assert level == "error" and "No space left on device" in text and "Save As" in text
    assert s.host.modified and s.settings.recent == []


def test_closing_with_work_in_progress_asks_first(s):
    edit(s.host)
    assert not s.files.may_close(["Train", "Augment"])
    assert s.dialogs.asked == [("stop", pf.stop_work_text(["Train", "Augment"]))]  # unsaved not asked yet
    assert "Train, Augment still working" in s.dialogs.asked[0][1]
    s.dialogs.stop, s.dialogs.unsaved = True, "discard"
    assert s.files.may_close(["Train"]) and [k for k, _ in s.dialogs.asked] == ["stop", "stop", "unsaved"]
    assert s.files.may_close([]) and s.dialogs.asked[-1][0] == "unsaved"  # nothing running: no stop question
    settled = []
    assert s.files.may_close(["Runs"], settle=lambda: settled.append(len(s.dialogs.asked)))
    assert settled == [len(s.dialogs.asked) - 1]  # after the stop question, before the unsaved one


@pytest.fixture
def sample(s, monkeypatch):
    made: list[tuple[Path, bool]] = []
    answers: list = []

    def fake(dest, reset, progress=None, cancel=None):
        made.append((dest, reset))
        if answers:
            raise answers.pop(0)
        path = Path(dest) / "digits-sample.tsproj"
        project = Project(name="digits sample")
        project.save(path)
        return project, str(path)

    monkeypatch.setattr(pf, "make_sample", fake)
    (s.tmp / "sample").mkdir()
    return SimpleNamespace(made=made, answers=answers, path=s.tmp / "sample" / "digits-sample.tsproj")


def test_the_sample_opens_on_the_model_page(s, sample):
    s.jobs.sync = False
    assert s.files.open_sample()
    assert s.seen["busyStarted"][0][0].startswith("Preparing the sample project")
    assert not s.files.open_sample()  # one at a time
    s.jobs.run()
    assert sample.made == [(s.tmp / "sample", False)] and s.seen["busyStopped"]
    assert s.host.path == sample.path and s.host.project.name == "digits sample" and not s.host.modified
    assert s.settings.recent == [str(sample.path)] and s.shown["navigateRequested"] == ["model"]
    assert "Sample project ready: handwritten digits" in s.shown["statusMessage"][-1][0]


def test_edits_made_while_the_sample_is_prepared_are_asked_about(s, sample):
    s.jobs.sync = False
    assert s.files.open_sample()  # nothing unsaved yet: no question
    s.host.project.name = "Birds, edited meanwhile"
    s.host.mark_changed("data")
    s.dialogs.unsaved = "cancel"
    s.jobs.run()
    assert s.dialogs.asked and s.dialogs.asked[-1][0] == "unsaved"
    assert s.host.project.name == "Birds, edited meanwhile" and s.host.modified  # nothing lost


def test_a_failed_sample_offers_the_reset(s, sample):
    from transfer_studio.errors import UserError

    sample.answers.append(UserError("the digits folder is read-only"))
    assert s.files.open_sample()
    text, level, details, action_text, action = s.seen["message"][-1]
    assert text == "Could not open the sample project: the digits folder is read-only" and level == "error"
    assert action_text == "Reset the sample…" and action == s.files.reset_sample
    assert s.host.project.name == "Birds"


def test_resetting_the_sample_asks_first(s, sample):
    edit(s.host)  # another project's unsaved edits: the usual question first
    assert not s.files.reset_sample() and [k for k, _ in s.dialogs.asked] == ["unsaved"]
    s.dialogs.unsaved = "discard"
    assert not s.files.reset_sample()  # the reset itself declined
    kind, text = s.dialogs.asked[-1]
    assert kind == "reset" and str(s.tmp / "sample" / "runs") in text and sample.made == []
    s.dialogs.reset = True
    assert s.files.reset_sample() and sample.made == [(s.tmp / "sample", True)]
    assert "reset to its defaults" in s.shown["statusMessage"][-1][0]
    s.dialogs.asked.clear()
    edit(s.host)  # the open sample's own edits: covered by the reset question alone
    assert s.files.reset_sample() and [k for k, _ in s.dialogs.asked] == ["reset"]


def test_names_and_menu_entries():
    assert pf.safe_name("Birds / cats: v2") == "Birds _ cats_ v2" and pf.safe_name("  ") == "project"
    assert pf.save_target("/x/a") == Path("/x/a.tsproj") and pf.save_target("/x/a.TSPROJ") == Path("/x/a.TSPROJ")
    assert pf.save_target("/x/a.v2") == Path("/x/a.v2.tsproj")
    assert pf.save_start(None, "/last", "My: birds") == Path("/last/My_ birds.tsproj")
    assert pf.save_start(Path("/p/b.tsproj"), "/last", "x") == Path("/p/b.tsproj")
    paths = [f"/p/{i}/n{i}.tsproj" for i in range(11)]
    entries = pf.recent_entries(paths)
    assert entries[0] == ("&1  n0.tsproj  —  /p/0", paths[0]) and entries[8][0].startswith("&9  ")
    assert entries[9] == (paths[9], paths[9])  # past nine: the path, no accelerator
    assert pf.same_file("/a/../a/b", "/a/b") and not pf.same_file("/a/b", "/a/c")
