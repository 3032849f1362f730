"""The main window's menus, actions and keyboard shortcuts, the recent-projects menu, and the Help
menu's two dialogs.

``build_menus(window)`` creates them on the window, as the pages' ``*_widgets.build(page)`` do: the
actions are the window's attributes (``act_new``, ``act_open``, ``act_save``, ``act_save_as``,
``act_quit``, ``act_sample``, ``act_reset_sample``, ``act_undo``, ``act_redo``, ``act_settings``,
``act_sidebar``, ``act_fullscreen``, ``page_actions``, ``theme_actions``, ``recent_menu``). Every
action is added to the window too, so its shortcut works while the menu bar is hidden.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMenu, QMessageBox, QWidget

from transfer_studio.ui import theme
from transfer_studio.ui.models.project_files import recent_entries
from transfer_studio.ui.window_pages import PAGES, page_shortcut

APP_NAME = "Transfer Studio"
SHORTCUTS = [("Ctrl+N / Ctrl+O", "New / open project"), ("Ctrl+S / Ctrl+Shift+S", "Save / save as"),
             ("Ctrl+Z / Ctrl+Shift+Z", "Undo / redo freezing and surgery"),
             ("Ctrl+0", "Welcome page"), ("Ctrl+1 … Ctrl+9", "Model, Data, Strategy, … Runs"),
             ("Ctrl+Shift+L", "Review labels (keys A, K, S, 1–9 there)"),
             ("Ctrl+PgDown / Ctrl+PgUp", "Next / previous step"),
             ("Graph: wheel, + / −, 0", "Zoom, fit"), ("Graph: drag", "Pan"),
             ("Graph: double-click a block", "Expand / collapse"), ("Graph: Ctrl+F", "Search layers"),
             ("Ctrl+Q", "Quit")]
SK = QKeySequence.StandardKey


def action(window: QWidget, text: str, slot: Callable[[], object], shortcut: QKeySequence | str | None = None,
           name: str = "", icon: str = "", tip: str = "") -> QAction:
    """An action of ``window`` (its shortcut works without a menu); ``icon`` names a theme icon."""
    act = QAction(text, window)
    if shortcut:
        act.setShortcut(QKeySequence(shortcut))
    if name:
        act.setObjectName(name)
    if icon:
        act.setData(icon)
    if tip:
        act.setStatusTip(tip)
    act.triggered.connect(lambda _checked=False: slot())
    window.addAction(act)  # shortcuts work even while the menu bar is hidden
    return act


def build_menus(w: Any) -> None:
    """File, Edit, View, Go and Help on the main window ``w`` (see the module docstring)."""
    mb = w.menuBar()
    mb.setObjectName("menu_bar")
    f = mb.addMenu("&File")
    f.setObjectName("menu_file")
    w.act_new = action(w, "&New Project", w.new_project, QKeySequence(SK.New), "action_new", "new")
    w.act_open = action(w, "&Open Project…", w.open_project_dialog, QKeySequence(SK.Open), "action_open", "open")
    w.recent_menu = f.addMenu("Open &Recent")
    w.recent_menu.setObjectName("menu_recent")
    w.recent_menu.aboutToShow.connect(lambda: fill_recent_menu(w.recent_menu, w))
    w.act_sample = action(w, "Try the &Sample Project", w.open_sample, None, "action_sample", "sample",
                          "Handwritten digits with the bundled EfficientNet-Lite0 (no download)")
    w.act_reset_sample = action(w, "&Reset the Sample Project…", w.reset_sample, None, "action_reset_sample", "",
                                "Put the sample project back to its defaults (asks first)")
    w.act_save = action(w, "&Save", w.save, QKeySequence(SK.Save), "action_save", "save")
    w.act_save_as = action(w, "Save &As…", w.save_as, QKeySequence("Ctrl+Shift+S"), "action_save_as")
    w.act_quit = action(w, "&Quit", w.close, QKeySequence("Ctrl+Q"), "action_quit")
    for a in (w.act_new, w.act_open):
        f.addAction(a)
    f.addMenu(w.recent_menu)
    f.addAction(w.act_sample)
    f.addAction(w.act_reset_sample)
    f.addSeparator()
    f.addAction(w.act_save)
    f.addAction(w.act_save_as)
    f.addSeparator()
    f.addAction(w.act_quit)

    e = mb.addMenu("&Edit")
    e.setObjectName("menu_edit")
    w.act_undo = w.state.undo_stack.createUndoAction(w, "&Undo")
    w.act_undo.setObjectName("action_undo")
    w.act_undo.setShortcut(QKeySequence(SK.Undo))
    w.act_redo = w.state.undo_stack.createRedoAction(w, "&Redo")
    w.act_redo.setObjectName("action_redo")
    w.act_redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
    w.act_undo.setData("undo")
    w.act_redo.setData("redo")
    e.addAction(w.act_undo)
    e.addAction(w.act_redo)
    e.addSeparator()
    w.act_settings = action(w, "&Settings…", w.open_settings, "Ctrl+,", "action_settings")
    w.act_settings.setMenuRole(QAction.MenuRole.PreferencesRole)
    e.addAction(w.act_settings)

    v = mb.addMenu("&View")
    v.setObjectName("menu_view")
    tm = v.addMenu("&Theme")
    group = QActionGroup(w)
    current = w.settings.theme()
    w.theme_actions = {}
    for name, label in (("system", "Follow &System"), ("light", "&Light"), ("dark", "&Dark")):
        act = QAction(label, w, checkable=True)
        act.setObjectName(f"action_theme_{name}")
        act.setChecked(name == current)
        act.triggered.connect(lambda _c=False, n=name: w.set_theme(n))
        group.addAction(act)
        tm.addAction(act)
        w.theme_actions[name] = act
    v.addSeparator()
    w.act_sidebar = QAction("Show &Sidebar", w, checkable=True, checked=True)
    w.act_sidebar.setObjectName("action_sidebar")
    w.act_sidebar.toggled.connect(w.sidebar.setVisible)
    v.addAction(w.act_sidebar)
    w.act_fullscreen = action(w, "&Full Screen", lambda: toggle_fullscreen(w), QKeySequence(SK.FullScreen),
                              "action_fullscreen")
    v.addAction(w.act_fullscreen)

    g = mb.addMenu("&Go")
    g.setObjectName("menu_go")
    w.page_actions = {}
    for spec in PAGES:
        act = action(w, spec.title, lambda k=spec.key: w.show_page(k), page_shortcut(spec) or None,
                     f"action_page_{spec.key}", spec.icon, spec.hint)
        g.addAction(act)
        w.page_actions[spec.key] = act
        if spec.key == "welcome":
            g.addSeparator()
    g.addSeparator()
    g.addAction(action(w, "&Next Step", lambda: w.step(1), QKeySequence("Ctrl+PgDown"), "action_next"))
    g.addAction(action(w, "&Previous Step", lambda: w.step(-1), QKeySequence("Ctrl+PgUp"), "action_previous"))

    h = mb.addMenu("&Help")
    h.setObjectName("menu_help")
    h.addAction(action(w, "&Keyboard Shortcuts", lambda: show_shortcuts(w), QKeySequence(SK.HelpContents),
                       "action_shortcuts"))
    h.addAction(action(w, "&About Transfer Studio", lambda: show_about(w), None, "action_about"))


def refresh_icons(w: Any) -> None:
    """The sidebar's and the actions' icons in the current theme."""
    for i, spec in enumerate(PAGES):
        w.sidebar.item(i).setIcon(theme.icon(spec.icon))
    for act in w.findChildren(QAction):
        name = act.data()
        if isinstance(name, str) and name:
            act.setIcon(theme.icon(name))


def fill_recent_menu(menu: QMenu, w: Any) -> None:
    """File → Open Recent, filled when it opens: the projects that still exist, and Clear List."""
    menu.clear()
    recent = w.settings.recent_projects(existing_only=True)
    if not recent:
        menu.addAction("No recent projects").setEnabled(False)
    for text, path in recent_entries(recent):
        a = menu.addAction(text)
        a.setData(path)
        a.triggered.connect(lambda _c=False, p=path: w.open_project(p))
    menu.addSeparator()
    clear = menu.addAction("Clear List")
    clear.setEnabled(bool(recent))
    clear.triggered.connect(w.settings.clear_recent_projects)


def toggle_fullscreen(w: QWidget) -> None:
    w.showNormal() if w.isFullScreen() else w.showFullScreen()


def show_shortcuts(parent: QWidget) -> None:
    text = "".join(f"<tr><td><b>{k}</b>&nbsp;&nbsp;</td><td>{v}</td></tr>" for k, v in SHORTCUTS)
    QMessageBox.information(parent, "Keyboard shortcuts", f"<table>{text}</table>")


def show_about(parent: QWidget) -> None:
    from transfer_studio import __version__

    QMessageBox.about(parent, f"About {APP_NAME}",
                      f"<h3>{APP_NAME} {__version__}</h3><p>Point-and-click transfer learning for image "
                      "classifiers, offline on your workstation.</p><p>Pick a pretrained network, freeze "
                      "what it already knows, and fine-tune it on your own pictures.</p>")
