"""Packaging: the wheel and sdist hold what the app needs, and the wheel installs and runs in a fresh
environment; the app icons are generated from the SVG; the desktop entry installs and is removable.

The wheel test builds with ``--no-isolation`` (build and hatchling come with the dev extra) and
installs with ``--no-deps`` into a new virtual environment that sees this environment's packages
(torch, PySide6, ...) through a .pth file, so nothing is downloaded and the test stays fast.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

import transfer_studio
from transfer_studio import desktop

ROOT = Path(__file__).resolve().parents[1]
RESOURCES = ROOT / "resources"
BIN = "Scripts" if os.name == "nt" else "bin"


def _load_make_icons():
    spec = importlib.util.spec_from_file_location("make_icons", ROOT / "packaging" / "make_icons.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """``python -m build``: the sdist, and the wheel built from that sdist (so the sdist is complete)."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
         cwd=out, env=_clean_env())
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0]}


@pytest.fixture(scope="module")
def fresh_env(dist, tmp_path_factory) -> Path:
    """A new venv with only the wheel installed in it; dependencies come from this venv via a .pth."""
    env_dir = tmp_path_factory.mktemp("venv") / "fresh"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)])
    python = env_dir / BIN / ("python.exe" if os.name == "nt" else "python")
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     env=_clean_env()).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    # A path line in a .pth file is appended to sys.path; the .pth files *inside* that folder (the
    # project's editable install among them) are not processed, so only the wheel provides
    # transfer_studio in the new environment.
    (site / "zz_project_env.pth").write_text("\n".join(sorted(ours)) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
          "--disable-pip-version-check", "-q", str(dist["wheel"])], env=_clean_env())
    return env_dir


def test_wheel_holds_the_package_resources_and_entry_point(dist):
    with zipfile.ZipFile(dist["wheel"]) as zf:
        names = set(zf.namelist())
        entry_points = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
        metadata = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    expected = {"transfer_studio/__main__.py", "transfer_studio/cli/__init__.py",
                "transfer_studio/ui/app.py", "transfer_studio/resources_path.py"}
    for path in RESOURCES.rglob("*"):
        if path.is_file():
            expected.add("transfer_studio/resources/" + path.relative_to(RESOURCES).as_posix())
    missing = sorted(expected - names)
    assert missing == []
    assert "transfer_studio/resources/app-icon/transfer-studio-256.png" in names
    assert "transfer_studio/resources/icons/model.svg" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/", "packaging/", "docs/"))]
    assert "transfer-studio = transfer_studio.__main__:main" in entry_points
    assert f"\nVersion: {transfer_studio.__version__}\n" in metadata
    assert "Requires-Dist: torch" in metadata


def test_sdist_holds_what_builds_the_wheel_and_no_build_output(dist):
    with tarfile.open(dist["sdist"]) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for needed in ("pyproject.toml", "README.md", "CHANGELOG.md", "resources/style.qss",
                   "resources/transfer-studio.svg", "resources/app-icon/transfer-studio.ico",
                   "transfer_studio/__init__.py", "packaging/transfer_studio.spec", "tests/conftest.py",
                   ):
        assert needed in names, needed
    assert not [n for n in names if n.startswith((".venv/", "dist/", "build/", "docs/screenshots/"))]


def test_installed_wheel_runs_from_a_fresh_environment(fresh_env, tmp_path):
    script = fresh_env / BIN / "transfer-studio"
    python = fresh_env / BIN / "python"
    env = _clean_env(XDG_DATA_HOME=str(tmp_path / "share"), TS_CONFIG_DIR=str(tmp_path / "config"))
    version = _run([str(script), "--version"], cwd=tmp_path, env=env)
    assert version.stdout.strip() == f"transfer-studio {transfer_studio.__version__}"

    models = json.loads(_run([str(script), "models", "--json"], cwd=tmp_path, env=env).stdout)
    lite0 = next(m for m in models if m["name"] == "efficientnet_lite0")
    assert lite0["weights_available_offline"] is True  # the bundled weights, with no network

    # The code and its resources come from the new environment, not from this checkout.
    where = json.loads(_run([str(python), "-c",
                             "import json, transfer_studio; from transfer_studio.resources_path import "
                             "resources_dir; print(json.dumps([transfer_studio.__file__, str(resources_dir())]))"],
                            cwd=tmp_path, env=env).stdout)
    assert all(Path(p).resolve().is_relative_to(fresh_env.resolve()) for p in where), where
    assert (Path(where[1]) / "style.qss").is_file()

    # Its desktop entry runs this installation.
    _run([str(script), "desktop-entry", "install"], cwd=tmp_path, env=env)
    entry = (tmp_path / "share" / "applications" / "transfer-studio.desktop").read_text()
    assert f"Exec={script} %f" in entry
    assert (tmp_path / "share" / "icons" / "hicolor" / "48x48" / "apps" / "transfer-studio.png").is_file()


# -- icons ---------------------------------------------------------------------------------------
def test_app_icons_are_generated_from_the_current_svg():
    make_icons = _load_make_icons()
    assert make_icons.up_to_date() == [], "run: python packaging/make_icons.py"


def test_app_icon_files_have_their_sizes(tmp_path):
    from PIL import Image

    make_icons = _load_make_icons()
    for size in make_icons.SIZES:
        with Image.open(RESOURCES / "app-icon" / f"transfer-studio-{size}.png") as im:
            assert im.size == (size, size) and im.mode == "RGBA"
            assert im.getpixel((size // 2, size // 2))[3] == 255  # drawn, not an empty canvas
    with Image.open(RESOURCES / "app-icon" / "transfer-studio.ico") as im:
        assert {(s, s) for s in make_icons.ICO_SIZES} <= set(im.info["sizes"])
    with Image.open(RESOURCES / "app-icon" / "transfer-studio.icns") as im:
        assert (512, 512, 2) in im.info["sizes"]  # 1024 px for Retina displays


def test_stale_icons_are_detected(tmp_path):
    make_icons = _load_make_icons()
    svg = tmp_path / "icon.svg"
    svg.write_text((RESOURCES / "transfer-studio.svg").read_text())
    out = tmp_path / "out"
    make_icons.generate(svg, out)
    assert make_icons.up_to_date(svg, out) == []
    svg.write_text(svg.read_text().replace("#f0a33a", "#ff0000"))
    assert make_icons.up_to_date(svg, out) == ["icon.svg changed since the icons were generated"]


# -- desktop entry ---------------------------------------------------------------------------------
@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="XDG desktop entries are for Linux")
def test_desktop_entry_installs_for_the_user_and_is_removable(tmp_path):
    home = tmp_path / "share"
    (home / "applications").mkdir(parents=True)
    (home / "applications" / "other.desktop").write_text("[Desktop Entry]\nName=Other\n")
    result = desktop.install(["/opt/My Apps/transfer-studio"], home=home, refresh=False)
    entry = (home / "applications" / "transfer-studio.desktop").read_text()
    assert 'Exec="/opt/My Apps/transfer-studio" %f' in entry
    assert "Icon=transfer-studio" in entry and "MimeType=application/x-transfer-studio-project;" in entry
    assert [line for line in entry.splitlines() if line.startswith("Exec=")] == ['Exec="/opt/My Apps/transfer-studio" %f']
    written = {Path(p) for p in result.files}
    assert written == set(desktop.planned_files(home))
    assert home / "icons" / "hicolor" / "scalable" / "apps" / "transfer-studio.svg" in written
    assert home / "icons" / "hicolor" / "256x256" / "apps" / "transfer-studio.png" in written
    assert "*.tsproj" in (home / "mime" / "packages" / "transfer-studio.xml").read_text()
    validator = desktop.shutil.which("desktop-file-validate")
    if validator:
        check = subprocess.run([validator, str(home / "applications" / "transfer-studio.desktop")],
                               capture_output=True, text=True)
        assert check.returncode == 0 and not check.stdout.strip(), check.stdout

    removed = desktop.remove(home=home, refresh=False)
    assert {Path(p) for p in removed.files} == written
    assert not any(p.exists() for p in written)
    assert (home / "applications" / "other.desktop").is_file()  # nobody else's files
    assert desktop.remove(home=home, refresh=False).files == []


def test_desktop_entry_cli_reports_one_json_document(tmp_path):
    from transfer_studio.cli import main

    env = _clean_env(XDG_DATA_HOME=str(tmp_path / "share"))
    code = ("import sys; from transfer_studio.cli import main; "
            "sys.exit(main(['desktop-entry', 'install', '--exec', 'ts-app --flag', '--json']))")
    proc = _run([sys.executable, "-c", code], env=env, cwd=tmp_path)
    doc = json.loads(proc.stdout)
    assert doc["action"] == "install" and doc["exec"] == "ts-app --flag %f"
    assert str(tmp_path / "share" / "applications" / "transfer-studio.desktop") in doc["files"]
    assert main(["desktop-entry", "uninstall"]) == 2  # a typo is the user's mistake: exit 2


def test_data_home_follows_xdg_rules(tmp_path):
    assert desktop.data_home({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path
    assert desktop.data_home({"XDG_DATA_HOME": "relative/path"}) == Path.home() / ".local" / "share"
    assert desktop.data_home({}) == Path.home() / ".local" / "share"


# -- the app's identity and the start-up probe -----------------------------------------------------
def test_app_names_itself_and_sets_its_window_icon(tmp_path):
    script = """
import json, os
from transfer_studio.ui.app import create_window
app, win, _ = create_window(["--reset-settings"])
sizes = sorted(s.width() for s in win.windowIcon().availableSizes())
print(json.dumps({"name": app.applicationName(), "display": app.applicationDisplayName(),
                  "desktop": app.desktopFileName(), "window_icon": sizes,
                  "app_icon": sorted(s.width() for s in app.windowIcon().availableSizes())}), flush=True)
os._exit(0)
"""
    env = _clean_env(QT_QPA_PLATFORM="offscreen", TS_SETTINGS_FILE=str(tmp_path / "s.ini"),
                     TS_DATA_DIR=str(tmp_path / "data"))
    out = json.loads(_run([sys.executable, "-c", script], env=env, cwd=ROOT).stdout.strip().splitlines()[-1])
    assert out["name"] == "transfer-studio" and out["display"] == "Transfer Studio"
    assert out["desktop"] == "transfer-studio"  # matches the .desktop file: the shell groups its windows
    assert out["window_icon"] == out["app_icon"] == [16, 24, 32, 48, 64, 128, 256, 512]


def test_startup_probe_reports_the_first_painted_window_and_quits(tmp_path):
    import time

    probe = tmp_path / "probe.json"
    env = _clean_env(QT_QPA_PLATFORM="offscreen", TS_SETTINGS_FILE=str(tmp_path / "s.ini"),
                     TS_DATA_DIR=str(tmp_path / "data"), TS_STARTUP_PROBE=str(probe))
    t0 = time.time()
    _run([sys.executable, "-m", "transfer_studio"], env=env, cwd=tmp_path)
    marks = json.loads(probe.read_text())
    assert t0 < marks["painted"] < time.time()
    assert marks["torch_at_show"] is False
