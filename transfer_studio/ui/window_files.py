"""The main window's questions about the project file: the message boxes and file dialogs that
``ui.models.project_files.ProjectFiles`` (the Qt-free flow: new, open, save, the sample) asks through."""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from transfer_studio.ui.models.project_files import OPEN_FILTER, SAVE_FILTER, UNSAVED_TITLE

B = QMessageBox.StandardButton


class FileDialogs:
    """``project_files.Dialogs`` with Qt's static dialogs, on top of ``parent``."""

    def __init__(self, parent: QWidget):
        self.parent = parent

    def ask_unsaved(self, text: str) -> str:
        answer = QMessageBox.warning(self.parent, UNSAVED_TITLE, text, B.Save | B.Discard | B.Cancel, B.Save)
        return "save" if answer == B.Save else "discard" if answer == B.Discard else "cancel"

    def ask_open_path(self, start: str) -> str:
        path, _ = QFileDialog.getOpenFileName(self.parent, "Open Project", start, OPEN_FILTER)
        return path

    def ask_save_path(self, start: str) -> str:
        path, _ = QFileDialog.getSaveFileName(self.parent, "Save Project As", start, SAVE_FILTER)
        return path

    def confirm_overwrite(self, path: str) -> bool:
        return QMessageBox.question(self.parent, "Replace the project file?", f"{path} already exists. Replace it?",
                                    B.Yes | B.Cancel, B.Cancel) == B.Yes

    def confirm_reset_sample(self, text: str) -> bool:
        return QMessageBox.question(self.parent, "Reset the sample project", text, B.Reset | B.Cancel,
                                    B.Cancel) == B.Reset

    def confirm_stop_work(self, text: str) -> bool:
        return QMessageBox.question(self.parent, "Work in progress", text, B.Yes | B.No, B.No) == B.Yes
