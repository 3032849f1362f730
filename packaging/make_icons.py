"""Generate the application icon's raster forms from resources/transfer-studio.svg.

    python packaging/make_icons.py            # (re)write resources/app-icon/
    python packaging/make_icons.py --check    # exit 1 when the files are missing or older than the SVG

Writes ``resources/app-icon/``:

- ``transfer-studio-<N>.png`` for N in SIZES (Linux hicolor theme sizes; Qt's window icon),
- ``transfer-studio.ico`` (Windows: PyInstaller's exe icon; 16-256 px),
- ``transfer-studio.icns`` (macOS: the .app bundle's icon; 16-1024 px),
- ``SOURCE.sha256``: the SVG's digest, so a test notices an SVG edited without regenerating.

The SVG is rendered with Qt's own SVG renderer (the one the app uses), the .ico and .icns are
written by Pillow from those renders. Nothing here is drawn by hand.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SVG = ROOT / "resources" / "transfer-studio.svg"
OUT = ROOT / "resources" / "app-icon"
NAME = "transfer-studio"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
ICNS_SIZES = (16, 32, 64, 128, 256, 512, 1024)


def svg_digest(svg: Path = SVG) -> str:
    return hashlib.sha256(svg.read_bytes()).hexdigest()


def render_png(svg: Path, size: int) -> bytes:
    """The SVG drawn at ``size`` x ``size`` pixels with Qt, as PNG bytes."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([])  # noqa: F841 - QImage painting needs one
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buf, "PNG")
    buf.close()
    return bytes(data.data())


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def generate(svg: Path = SVG, out: Path = OUT) -> list[Path]:
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    renders: dict[int, bytes] = {}
    for size in sorted(set(SIZES) | set(ICO_SIZES) | set(ICNS_SIZES)):
        renders[size] = render_png(svg, size)
    for size in SIZES:
        path = out / f"{NAME}-{size}.png"
        _write(path, renders[size])
        written.append(path)

    def image(size: int) -> Image.Image:
        return Image.open(io.BytesIO(renders[size])).convert("RGBA")

    # .ico: Pillow stores each requested size; give it the largest render and the size list.
    buf = io.BytesIO()
    image(max(ICO_SIZES)).save(buf, format="ICO", sizes=[(s, s) for s in ICO_SIZES])
    _write(out / f"{NAME}.ico", buf.getvalue())
    written.append(out / f"{NAME}.ico")
    # .icns: Pillow takes the other sizes from append_images (each a real render, not a resample).
    buf = io.BytesIO()
    image(max(ICNS_SIZES)).save(buf, format="ICNS",
                                append_images=[image(s) for s in ICNS_SIZES if s != max(ICNS_SIZES)])
    _write(out / f"{NAME}.icns", buf.getvalue())
    written.append(out / f"{NAME}.icns")
    _write(out / "SOURCE.sha256", (svg_digest(svg) + "  " + svg.name + "\n").encode())
    written.append(out / "SOURCE.sha256")
    return written


def expected_files(out: Path = OUT) -> list[Path]:
    return ([out / f"{NAME}-{s}.png" for s in SIZES]
            + [out / f"{NAME}.ico", out / f"{NAME}.icns", out / "SOURCE.sha256"])


def up_to_date(svg: Path = SVG, out: Path = OUT) -> list[str]:
    """Problems that make the generated icons stale (empty when they match the SVG)."""
    problems = [f"missing {p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}"
                for p in expected_files(out) if not p.is_file()]
    stamp = out / "SOURCE.sha256"
    if stamp.is_file() and stamp.read_text().split()[0] != svg_digest(svg):
        problems.append(f"{svg.name} changed since the icons were generated")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the icons are up to date")
    args = parser.parse_args(argv)
    if args.check:
        problems = up_to_date()
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print("run: python packaging/make_icons.py", file=sys.stderr)
        return 1 if problems else 0
    for path in generate():
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
