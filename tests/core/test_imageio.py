"""load_rgb for every awkward image kind, and the cheap (no-decode) health checks."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transfer_studio.core.imageio import (
    ImageReadError,
    load_rgb,
    probe_bytes,
    sniff_format,
    truncation_reason,
    verify_decode,
)
from transfer_studio.errors import UserError


def _checks(path: Path) -> str | None:
    data = path.read_bytes()
    return truncation_reason(sniff_format(data), data, data[-1024:], len(data))


def test_16bit_gradient_stays_monotone_and_unsaturated(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 256).round().astype(np.uint16)
    img = Image.fromarray(np.tile(ramp, (8, 1)))
    assert img.mode == "I;16"
    img.save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")  # really stored as 16-bit

    out = np.asarray(load_rgb(tmp_path / "g16.png"))
    assert out.shape == (8, 256, 3) and out.dtype == np.uint8
    row = out[0, :, 0].astype(int)
    assert np.all(np.diff(row) >= 0), "gradient must stay monotone"
    assert row[0] == 0 and row[-1] == 255
    assert len(np.unique(row)) >= 250, "no saturation/banding: nearly every step stays distinct"
    assert abs(int(row[128]) - 128) <= 2, "scaled by the bit depth (65535 -> 255), not clipped"
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_16bit_scaled_by_bit_depth_not_by_its_maximum(tmp_path: Path) -> None:
    # A dim 16-bit image (values up to 4095) stays dim: we do not stretch by the image's own maximum.
    ramp = np.linspace(0, 4095, 64).astype(np.uint16)
    Image.fromarray(np.tile(ramp, (4, 1))).save(tmp_path / "dim.png")
    out = np.asarray(load_rgb(tmp_path / "dim.png"))[0, :, 0]
    assert out.max() == round(4095 * 255 / 65535)
    assert np.all(np.diff(out.astype(int)) >= 0)


def test_float_tiff_in_unit_range(tmp_path: Path) -> None:
    ramp = np.linspace(0.0, 1.0, 100, dtype=np.float32)
    Image.fromarray(np.tile(ramp, (3, 1)), mode="F").save(tmp_path / "f.tif")
    out = np.asarray(load_rgb(tmp_path / "f.tif"))[0, :, 0].astype(int)
    assert out[0] == 0 and out[-1] == 255 and np.all(np.diff(out) >= 0)


def test_cmyk_jpeg_loads_as_rgb(tmp_path: Path) -> None:
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    out = load_rgb(tmp_path / "cmyk.jpg")
    assert out.mode == "RGB"
    r, g, b = np.asarray(out)[8, 8].astype(int)
    assert r > 200 and g < 50 and b < 50  # pure red in CMYK is red in RGB


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[:, :2] = (0, 0, 255, 255)  # opaque blue
    arr[:, 2:] = (255, 0, 0, 0)  # fully transparent red
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    out = np.asarray(load_rgb(tmp_path / "a.png"))
    assert tuple(out[0, 0]) == (0, 0, 255)
    assert tuple(out[0, 3]) == (255, 255, 255)


def test_palette_with_transparency_and_grayscale_alpha(tmp_path: Path) -> None:
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([0, 255, 0] + [255, 0, 0] * 255)
    pal.putpixel((0, 0), 1)
    pal.save(tmp_path / "p.png", transparency=0)  # index 0 (green) is transparent
    out = np.asarray(load_rgb(tmp_path / "p.png"))
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert tuple(out[1, 1]) == (255, 255, 255)

    la = Image.fromarray(np.stack([np.full((2, 2), 10, np.uint8), np.array([[255, 0], [255, 0]], np.uint8)], -1), "LA")
    la.save(tmp_path / "la.png")
    out = np.asarray(load_rgb(tmp_path / "la.png"))
    assert tuple(out[0, 0]) == (10, 10, 10) and tuple(out[0, 1]) == (255, 255, 255)


def test_grayscale_and_bilevel(tmp_path: Path) -> None:
    Image.new("L", (3, 3), 77).save(tmp_path / "l.png")
    assert tuple(np.asarray(load_rgb(tmp_path / "l.png"))[1, 1]) == (77, 77, 77)
    Image.new("1", (3, 3), 1).save(tmp_path / "b.bmp")
    assert tuple(np.asarray(load_rgb(tmp_path / "b.bmp"))[1, 1]) == (255, 255, 255)


def test_exif_rotation_applied(tmp_path: Path) -> None:
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)  # stored: left half red, right half blue
    arr[:, 20:] = (0, 0, 255)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    out = load_rgb(tmp_path / "rot.jpg")
    assert out.size == (20, 40)  # width, height swapped
    px = np.asarray(out).astype(int)
    assert px[5, 10, 0] > 200 and px[5, 10, 2] < 60  # top (was left): red
    assert px[35, 10, 2] > 200 and px[35, 10, 0] < 60  # bottom (was right): blue


def test_unreadable_files_raise_user_errors(tmp_path: Path) -> None:
    (tmp_path / "fake.jpg").write_text("this is a text file, not a picture")
    with pytest.raises(ImageReadError, match="not an image"):
        load_rgb(tmp_path / "fake.jpg")
    with pytest.raises(UserError, match="not found"):
        load_rgb(tmp_path / "missing.png")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.jpg"):
        load_rgb(tmp_path / "cut.jpg")


def test_truncation_detected_without_decoding(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
    for ext in ("jpg", "png", "gif", "bmp", "webp"):
        img.save(tmp_path / f"ok.{ext}")
        data = (tmp_path / f"ok.{ext}").read_bytes()
        (tmp_path / f"cut.{ext}").write_bytes(data[: len(data) * 2 // 3])
        assert _checks(tmp_path / f"ok.{ext}") is None, ext
        assert _checks(tmp_path / f"cut.{ext}").startswith("truncated"), ext
    assert "end-of-image" in _checks(tmp_path / "cut.jpg")
    assert "IEND" in _checks(tmp_path / "cut.png")


def test_probe_reads_size_from_header_only(tmp_path: Path) -> None:
    Image.new("RGB", (123, 45)).save(tmp_path / "x.png")
    head = (tmp_path / "x.png").read_bytes()[:64]  # the header alone: no pixel data at all
    info = probe_bytes(head)
    assert (info.format, info.width, info.height) == ("PNG", 123, 45)
    with pytest.raises(ImageReadError, match="not an image"):
        probe_bytes(b"hello world, plain text")


def test_verify_decode_finds_corrupt_pixel_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    start = data.index(b"IDAT") + 40
    data[start:start + 200] = bytes(200)  # zero a stretch of the compressed stream; IEND intact
    (tmp_path / "bad.png").write_bytes(bytes(data))
    assert _checks(tmp_path / "bad.png") is None  # the cheap check cannot see it
    with pytest.raises(ImageReadError, match="corrupt"):
        verify_decode(tmp_path / "bad.png")


def test_fast_header_agrees_with_pil(tmp_path: Path) -> None:
    from transfer_studio.core.imageio import _header_info, fast_header

    rng = np.random.default_rng(2)
    rgb = Image.fromarray(rng.integers(0, 255, (30, 50, 3), dtype=np.uint8))
    rotated = rgb.copy()
    exif = rotated.getexif()
    exif[0x0112] = 8
    exif[0x010F] = "Camera maker"  # another tag before/after the orientation
    cases = {
        "rgb.png": (rgb, {}), "gray.png": (rgb.convert("L"), {}), "pal.png": (rgb.convert("P"), {}),
        "rgba.png": (rgb.convert("RGBA"), {}), "la.png": (rgb.convert("LA"), {}),
        "g16.png": (Image.fromarray(np.zeros((7, 9), np.uint16)), {}), "bw.png": (rgb.convert("1"), {}),
        "base.jpg": (rgb, {}), "prog.jpg": (rgb, {"progressive": True}), "gray.jpg": (rgb.convert("L"), {}),
        "cmyk.jpg": (rgb.convert("CMYK"), {}), "rot.jpg": (rotated, {"exif": exif.tobytes()}),
        "icc.jpg": (rgb, {"icc_profile": b"\0" * 5000}),
    }
    for name, (img, kwargs) in cases.items():
        img.save(tmp_path / name, **kwargs)
        data = (tmp_path / name).read_bytes()
        fast = fast_header(data)
        assert fast is not None, name
        with Image.open(tmp_path / name) as im:
            slow = _header_info(im, None)
        assert (fast.format, fast.width, fast.height) == (slow.format, slow.width, slow.height), name
        assert fast.mode == slow.mode or name in ("bw.png", "g16.png"), (name, fast.mode, slow.mode)
    rot = fast_header((tmp_path / "rot.jpg").read_bytes())
    assert (rot.width, rot.height) == (30, 50)  # stored 50x30; orientation 8 swaps
    Image.new("RGB", (4, 4)).save(tmp_path / "x.gif")
    assert fast_header((tmp_path / "x.gif").read_bytes()) is None  # other formats: PIL decides
    assert fast_header(b"\xff\xd8\xff\xe0\x00") is None  # cut short: PIL gives the precise error
