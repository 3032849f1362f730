"""Image folders for bench_advisor, generated offline, each with a TEST folder from disjoint sources.

Three domains, five classes each:

photo    crops of colour photographs that ship with scikit-learn and scikit-image (one photograph
         per class: a near-ImageNet domain). Training crops come from two diagonal quarters of each
         photograph, TEST crops from the other two: no TEST pixel was ever seen in training.
glyph    letters rendered in TrueType fonts (b, d, p, q, a: orientation matters, b/d and p/q are
         mirror images). Training uses some fonts, TEST the others.
texture  procedural textures (blobs, stripes, checks, dots, cells) in random colours, orientations
         and scales: flip- and rotation-invariant classes. TEST images use other generator seeds.

Every image is ``size`` pixels square (default 96). ``make_folder(domain, root, per_class, seed,
split)`` writes ``root/<class>/<i>.png`` (photo: ``.jpg``) and is idempotent.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

DOMAINS = ("photo", "glyph", "texture")
GLYPHS = ("a", "b", "d", "p", "q")
TEXTURES = ("blobs", "stripes", "checks", "dots", "cells")
SPLIT_SEED = {"train": 1, "test": 2}
VERSION = 2  # bump when a generator changes: folders of an older version are written again


def classes(domain: str) -> tuple[str, ...]:
    return {"photo": tuple(_photo_sources()), "glyph": GLYPHS, "texture": TEXTURES}[domain]


def make_folder(domain: str, root: str | os.PathLike[str], per_class: int, seed: int, split: str,
                size: int = 96) -> Path:
    """Write ``per_class`` images of every class of ``domain`` under ``root`` (skipped when complete)."""
    root = Path(root)
    done = root / ".complete"
    stamp = f"{domain} {per_class} {seed} {split} {size} v{VERSION}"
    if done.is_file() and done.read_text() == stamp:
        return root
    make = {"photo": _photo_image, "glyph": _glyph_image, "texture": _texture_image}[domain]
    for ci, name in enumerate(classes(domain)):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rng = np.random.default_rng([seed, SPLIT_SEED[split], ci, i])
            img, ext = make(name, rng, split, size)
            path = folder / f"{i:04d}{ext}"
            if ext == ".jpg":
                img.save(path, quality=int(rng.integers(60, 95)))
            else:
                img.save(path)
    done.write_text(stamp)
    return root


# -- photo -----------------------------------------------------------------------------------------

_PHOTOS: dict[str, np.ndarray] = {}


def _photo_sources() -> dict[str, np.ndarray]:
    if not _PHOTOS:
        from sklearn.datasets import load_sample_images

        sk = load_sample_images()
        by_name = dict(zip((os.path.basename(f).split(".")[0] for f in sk.filenames), sk.images, strict=True))
        _PHOTOS["china"] = by_name["china"]
        _PHOTOS["flower"] = by_name["flower"]
        try:
            from skimage import data
        except ImportError as exc:  # pragma: no cover - a bench dependency
            raise SystemExit("the photo domain needs scikit-image: pip install scikit-image") from exc
        _PHOTOS["cat"] = data.chelsea()
        _PHOTOS["coffee"] = data.coffee()
        _PHOTOS["rocket"] = data.rocket()
    return _PHOTOS


def _photo_image(name: str, rng: np.random.Generator, split: str, size: int) -> tuple[Image.Image, str]:
    photo = _photo_sources()[name]
    h, w = photo.shape[:2]
    # The photograph in 2 x 2 tiles: training crops lie inside the top-left or bottom-right tile,
    # TEST crops inside the other two. No TEST pixel is ever seen in training, and both splits see
    # both halves of the photograph (disjoint halves would make TEST a different scene).
    tiles = ((0, 0), (1, 1)) if split == "train" else ((0, 1), (1, 0))
    ty, tx = tiles[int(rng.integers(2))]
    th, tw = h // 2, w // 2
    side = int(rng.uniform(0.5, 1.0) * min(th, tw))
    x = tx * tw + int(rng.integers(0, tw - side + 1))
    y = ty * th + int(rng.integers(0, th - side + 1))
    img = Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR)
    arr = np.asarray(img).astype(np.float32)
    arr = arr * rng.uniform(0.6, 1.3) + rng.uniform(-30, 30)  # exposure
    arr = arr * (1 + rng.uniform(-0.15, 0.15, size=3))  # white balance
    if rng.random() < 0.2:
        arr = np.repeat(arr.mean(axis=2, keepdims=True), 3, axis=2)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    return img, ".jpg"


# -- glyph -----------------------------------------------------------------------------------------


def _fonts() -> list[str]:
    found: list[str] = []
    for base in ("/usr/share/fonts", "/usr/local/share/fonts", os.path.expanduser("~/.fonts"),
                 "/Library/Fonts", "/System/Library/Fonts", "C:/Windows/Fonts"):
        for dirpath, _, files in os.walk(base):
            found += [os.path.join(dirpath, f) for f in files if f.lower().endswith((".ttf", ".otf"))]
    return sorted(f for f in set(found) if _renders_letters(f))


def _renders_letters(path: str) -> bool:
    """Symbol fonts (dingbats, maths) draw something else, or nothing, for 'b' and 'd'."""
    try:
        font = ImageFont.truetype(path, 32)
    except OSError:
        return False
    family = " ".join(font.getname()).lower()
    if any(word in family for word in ("dingbat", "symbol", "d050000l", "emoji")):
        return False
    shapes = []
    for ch in ("b", "d", "o"):
        img = Image.new("L", (48, 48))
        ImageDraw.Draw(img).text((8, 4), ch, font=font, fill=255)
        shapes.append(np.asarray(img) > 128)
    b, d, o = shapes
    return bool(b.sum() > 20 and (b != d).sum() > 20 and (b != o).sum() > 20 and (b != b[:, ::-1]).sum() > 20
                )


def font_split() -> dict[str, list[str]]:
    """Training fonts and TEST fonts (every fourth): disjoint sources."""
    fonts = _fonts()
    if len(fonts) < 4:
        return {"train": [], "test": []}  # PIL's own font; splits differ by generator seed only
    return {"test": fonts[::4], "train": [f for i, f in enumerate(fonts) if i % 4]}


def _glyph_image(name: str, rng: np.random.Generator, split: str, size: int) -> tuple[Image.Image, str]:
    fonts = font_split()[split]
    px = int(size * rng.uniform(0.5, 0.8))
    if fonts:
        font = ImageFont.truetype(fonts[int(rng.integers(len(fonts)))], px)
    else:
        font = ImageFont.load_default(px)
    bg = rng.integers(0, 256, 3)
    fg = (bg + rng.integers(90, 166, 3) * rng.choice([-1, 1], 3)) % 256
    canvas = Image.new("RGB", (size * 2, size * 2), tuple(int(c) for c in bg))
    draw = ImageDraw.Draw(canvas)
    box = draw.textbbox((0, 0), name, font=font)
    cx = size - (box[0] + box[2]) / 2 + rng.uniform(-0.12, 0.12) * size
    cy = size - (box[1] + box[3]) / 2 + rng.uniform(-0.12, 0.12) * size
    draw.text((cx, cy), name, font=font, fill=tuple(int(c) for c in fg))
    canvas = canvas.rotate(rng.uniform(-10, 10), resample=Image.BILINEAR, fillcolor=tuple(int(c) for c in bg))
    img = canvas.crop((size // 2, size // 2, size // 2 + size, size // 2 + size))
    arr = np.asarray(img).astype(np.float32) + rng.normal(0, rng.uniform(2, 12), (size, size, 3))
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return img, ".png"


# -- texture ---------------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    noise = rng.normal(size=(size, size))
    f = np.fft.fftfreq(size)
    fx, fy = np.meshgrid(f, f)
    kernel = np.exp(-(fx**2 + fy**2) * (scale**2) * 2 * math.pi**2)
    out = np.real(np.fft.ifft2(np.fft.fft2(noise) * kernel))
    return (out - out.mean()) / (out.std() + 1e-8)


def _texture_image(name: str, rng: np.random.Generator, split: str, size: int) -> tuple[Image.Image, str]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    u = xx * math.cos(angle) + yy * math.sin(angle)
    v = -xx * math.sin(angle) + yy * math.cos(angle)
    if name == "blobs":
        mask = _smooth_noise(rng, size, rng.uniform(3, 8)) > rng.uniform(-0.3, 0.3)
        field = mask.astype(np.float32)
    elif name == "stripes":
        period = rng.uniform(6, 16)
        field = 0.5 + 0.5 * np.sin(2 * math.pi * u / period + rng.uniform(0, 2 * math.pi))
    elif name == "checks":
        period = rng.uniform(8, 20)
        field = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    elif name == "dots":
        field = np.zeros((size, size), np.float32)
        r = rng.uniform(2, 5)
        for _ in range(int(rng.integers(15, 40))):
            cx, cy = rng.uniform(0, size, 2)
            field[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = 1.0
    else:  # cells: Voronoi borders
        pts = rng.uniform(0, size, (int(rng.integers(10, 30)), 2)).astype(np.float32)
        d = np.sqrt((xx[..., None] - pts[:, 0]) ** 2 + (yy[..., None] - pts[:, 1]) ** 2)
        d.sort(axis=-1)
        field = (d[..., 1] - d[..., 0] < rng.uniform(1.5, 3.0)).astype(np.float32)
    field = field + 0.15 * _smooth_noise(rng, size, 1.0)
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    while np.abs(a - b).sum() < 150:
        b = rng.integers(0, 256, 3)
    rgb = a[None, None, :] * (1 - field[..., None]) + b[None, None, :] * field[..., None]
    rgb = rgb + rng.normal(0, 6, rgb.shape)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)), ".png"

