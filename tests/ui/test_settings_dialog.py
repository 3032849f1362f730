"""The Settings dialog: machine defaults written where the CLI reads them, theme, Reset to Defaults."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QDialog

from transfer_studio import machine_settings as ms
from transfer_studio.ui import theme
from transfer_studio.ui.settings import Settings
from transfer_studio.ui.settings_dialog import SettingsDialog


def _dialog(qtbot, **kwargs) -> SettingsDialog:
    dialog = SettingsDialog(Settings(), **kwargs)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


def test_ok_stores_machine_defaults_for_the_cli_and_the_theme(qtbot, tmp_path):
    from transfer_studio.ui.train_worker import runs_root

    assert runs_root(tmp_path / "elsewhere" / "p.tsproj") == tmp_path / "elsewhere" / "runs"
    d = _dialog(qtbot, detected_device="CPU · 2 threads (no GPU found)")
    assert d.detected.text() == "CPU · 2 threads (no GPU found)"
    assert d.values() == ms.DEFAULTS and d.theme() == "system"
    d.device.setCurrentIndex(d.device.findData("cpu"))
    d.workers.setValue(2)
    d.runs_dir.setText(str(tmp_path / "runs"))
    d.theme_box.setCurrentIndex(d.theme_box.findData("dark"))
    qtbot.mouseClick(d.ok_button, Qt.MouseButton.LeftButton)
    assert d.result() == QDialog.DialogCode.Accepted and d.saved
    data = json.loads(ms.settings_path().read_text())
    assert data == {"device": "cpu", "num_workers": 2, "weights_dir": "", "runs_dir": str(tmp_path / "runs"),
                    "feature_cache_dir": ""}
    assert ms.effective().runs_dir == str(tmp_path / "runs")  # what the CLI and the trainer read
    assert runs_root(tmp_path / "elsewhere" / "p.tsproj") == tmp_path / "runs"  # the Train page's new runs
    assert d.theme() == "dark"


def test_a_typed_gpu_index_is_kept_and_a_bad_device_is_refused_in_place(qtbot):
    d = _dialog(qtbot)
    d.device.setEditText("cuda:1")
    assert d.values().device == "cuda:1"
    d.device.setEditText("tpu")
    qtbot.mouseClick(d.ok_button, Qt.MouseButton.LeftButton)
    assert d.isVisible() and not d.saved  # stays open: nothing stored
    assert "device 'tpu' is not one of" in d.banner.findChild(type(d.detected), "settings_banner_text").text()
    assert not ms.settings_path().exists()


def test_reset_to_defaults_fills_the_fields_and_ok_stores_them(qtbot, tmp_path):
    ms.save(ms.MachineSettings(device="cpu", num_workers=4, weights_dir=str(tmp_path / "w"),
                               runs_dir=str(tmp_path / "r"), feature_cache_dir=str(tmp_path / "f")))
    d = _dialog(qtbot)
    assert d.values() == ms.load_file()  # opens with what is stored
    assert d.workers.value() == 4 and d.weights_dir.text() == str(tmp_path / "w")
    assert d.feature_cache_dir.text() == str(tmp_path / "f")
    qtbot.mouseClick(d.reset_button, Qt.MouseButton.LeftButton)
    assert d.values() == ms.DEFAULTS and d.theme() == "system"
    assert d.workers.text() == "Auto (chosen for the device and core count)"
    assert ms.load_file().num_workers == 4  # nothing stored before OK
    qtbot.mouseClick(d.ok_button, Qt.MouseButton.LeftButton)
    assert ms.load_file() == ms.DEFAULTS


def test_environment_overrides_are_shown(qtbot, monkeypatch):
    monkeypatch.delenv("TS_FEATURE_CACHE", raising=False)  # the test session's own cache folder
    d = _dialog(qtbot)
    assert not d.overrides.isVisible()
    monkeypatch.setenv("TS_DEVICE", "cpu")
    d2 = _dialog(qtbot)
    assert d2.overrides.isVisible() and "TS_DEVICE=cpu" in d2.overrides.text()


def test_a_broken_settings_file_opens_with_a_warning_and_ok_repairs_it(qtbot):
    path = ms.settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{oops")
    d = _dialog(qtbot)
    assert d.banner.isVisible() and d.values() == ms.DEFAULTS
    qtbot.mouseClick(d.ok_button, Qt.MouseButton.LeftButton)
    assert ms.load_file() == ms.DEFAULTS and json.loads(path.read_text())["device"] == "auto"


def test_main_window_menu_opens_settings_and_applies_the_theme(qtbot, main_window):
    act = main_window.act_settings
    assert act in main_window.findChild(type(main_window.menuBar().actions()[0].menu()), "menu_edit").actions()

    def answer() -> None:
        dialog = QApplication.activeModalWidget()
        assert isinstance(dialog, SettingsDialog)
        dialog.theme_box.setCurrentIndex(dialog.theme_box.findData("dark"))
        dialog.workers.setValue(1)
        dialog.accept()

    QTimer.singleShot(0, answer)
    act.trigger()
    assert ms.load_file().num_workers == 1
    assert main_window.settings.theme() == "dark" and theme.is_dark()
    assert main_window.theme_actions["dark"].isChecked()
    main_window.set_theme("light")
