"""Reading images: any common file -> RGB, and cheap health checks that avoid a full decode.

``load_rgb`` is what every consumer (training, prediction, preview, thumbnails) uses, so that a
16-bit PNG, a CMYK JPEG or a phone photo with an EXIF orientation looks the same everywhere.
HEIC/HEIF phone photos are read through pillow-heif's Pillow plugin (registered on import),
AVIF through Pillow's own decoder.

``probe_bytes`` is the scanner's fast path: from the first bytes of a file (and its last few bytes)
it finds the format and size through PIL's lazy header parsing and catches the common truncation
(a JPEG without its end-of-image marker, a PNG without its IEND chunk) without decoding pixels.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from transfer_studio.errors import UserError

# Bytes read from the start of a file for the header; small images are read whole (one read).
HEAD_BYTES = 64 * 1024
# Bytes read from the end of a file to look for an end marker (some writers pad or append a little).
TAIL_BYTES = 1024

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
     ".pgm", ".pbm", ".heic", ".heif", ".hif", ".avif"}
)


def _register_heif() -> bool:
    """Phone photos (HEIC/HEIF) through pillow-heif's Pillow plugin, registered once on import so
    every reader (scan, training, prediction, thumbnails) decodes them. AVIF is Pillow's own (11.2+,
    when built with libavif). False when the plugin is not installed."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


HEIF_SUPPORTED = _register_heif()
HEIF_MISSING = "HEIC/HEIF image: reading it needs pillow-heif (pip install pillow-heif)"
# ISO base media file brands of HEIF stills (HEVC-coded: heic & co; mif1/msf1: any codec).
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1",
                          b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})

_PNG_IEND = b"IEND\xaeB`\x82"  # the IEND chunk type followed by its (constant) CRC

# Decompression bombs and absurd proportions: a few kilobytes of PNG can declare 20000 x 20000 pixels
# (1.2 GB decoded), and a 1 x 60000 strip resized to a 256-pixel shorter side is 15 gigapixels.
# Images beyond these limits are refused (by size, before any pixel is decoded), not loaded.
MAX_PIXELS = 89_478_485  # PIL's own warning threshold (it refuses only at twice that)
MAX_ASPECT_RATIO = 100  # longer side / shorter side


def size_problem(width: int, height: int) -> str | None:
    """Why an image of this size is refused, or None when it is fine."""
    if width * height > MAX_PIXELS:
        return (f"image too large ({width} x {height} = {width * height / 1e6:.0f} megapixels; the limit is "
                f"{MAX_PIXELS / 1e6:.0f}): possibly a decompression bomb")
    if max(width, height) > MAX_ASPECT_RATIO * max(1, min(width, height)):
        return (f"extreme proportions ({width} x {height}, more than {MAX_ASPECT_RATIO}:1): resized for the "
                "network it would need far too much memory")
    return None


class ImageReadError(UserError):
    """An image file that cannot be read (missing, not an image, corrupt or truncated)."""


@dataclass(frozen=True)
class HeaderInfo:
    format: str  # PIL's format name: "JPEG", "PNG", ...
    width: int
    height: int
    mode: str


def sniff_format(head: bytes) -> str | None:
    """The format named by a file's magic bytes, for the formats we check cheaply; None otherwise."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head.startswith(b"BM"):
        return "BMP"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[4:8] == b"ftyp":  # ISO base media: the major brand, then compatible brands
        brands = {head[i:i + 4] for i in range(8, min(len(head), 8 + int.from_bytes(head[:4], "big")), 4)}
        if head[8:12] in _AVIF_BRANDS:
            return "AVIF"
        if brands & _HEIF_BRANDS:
            return "HEIF"
    return None


def _unrecognised(fmt: str | None) -> str:
    """Why PIL could not identify a file: a HEIC photo without its decoder says so."""
    if fmt == "HEIF" and not HEIF_SUPPORTED:
        return HEIF_MISSING
    if fmt == "AVIF":
        return "AVIF image: this Pillow was built without AVIF support"
    return "not an image (unrecognised format)"


def truncation_reason(fmt: str | None, head: bytes, tail: bytes, size: int) -> str | None:
    """Why a file looks truncated from its first/last bytes alone, or None when it looks complete.

    JPEG: entropy-coded data never contains FF D9 (0xFF is byte-stuffed), so a missing end-of-image
    marker near the end means the file was cut. PNG: the IEND chunk must close the file. GIF: the
    0x3B trailer. BMP and WebP declare their total size in the header.
    """
    if fmt == "JPEG":
        if b"\xff\xd9" not in tail:
            return "truncated (no JPEG end-of-image marker)"
    elif fmt == "PNG":
        if _PNG_IEND not in tail:
            return "truncated (no PNG IEND chunk)"
    elif fmt == "GIF":
        if not tail.rstrip(b"\x00").endswith(b"\x3b"):
            return "truncated (no GIF trailer)"
    elif fmt == "BMP":
        if len(head) >= 6:
            declared = int.from_bytes(head[2:6], "little")
            # Some writers put 0 here; only a declared size larger than the file means truncation.
            if declared > size:
                return f"truncated (BMP header declares {declared} bytes, file has {size})"
    elif fmt == "WEBP" and len(head) >= 8:
        declared = int.from_bytes(head[4:8], "little") + 8
        if declared > size:
            return f"truncated (WebP header declares {declared} bytes, file has {size})"
    return None


_PNG_MODES = {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_MODES = {1: "L", 3: "RGB", 4: "CMYK"}


def fast_header(head: bytes) -> HeaderInfo | None:
    """Size and mode of a PNG or JPEG parsed straight from its header bytes, or None.

    About 20x cheaper than PIL's lazy open, which matters when scanning tens of thousands of files.
    None means "not sure" (another format, an unusual header, metadata beyond ``head``): the caller
    then asks PIL, which gives the same answer or the precise error.
    """
    try:
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            return _png_header(head)
        if head.startswith(b"\xff\xd8\xff"):
            return _jpeg_header(head)
    except (struct.error, IndexError, ValueError):
        return None
    return None


def _png_header(head: bytes) -> HeaderInfo | None:
    length, kind = struct.unpack(">I4s", head[8:16])
    if length != 13 or kind != b"IHDR" or b"eXIf" in head:  # eXIf may rotate: PIL reads it
        return None
    width, height, depth, color = struct.unpack(">IIBB", head[16:26])
    if width == 0 or height == 0 or depth not in _PNG_DEPTHS.get(color, ()):
        return None
    mode = "I;16" if color == 0 and depth == 16 else _PNG_MODES[color]
    return HeaderInfo("PNG", width, height, mode)


def _jpeg_header(head: bytes) -> HeaderInfo | None:
    i, n = 2, len(head)
    orientation = 1
    while i + 4 <= n:
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        (length,) = struct.unpack(">H", head[i + 2:i + 4])
        if marker == 0xE1 and head[i + 4:i + 10] == b"Exif\x00\x00":
            orientation = _exif_orientation(head[i + 10:i + 2 + length])
        if marker in _JPEG_SOF:
            height, width, components = struct.unpack(">HHB", head[i + 5:i + 10])
            if width == 0 or height == 0 or components not in _JPEG_MODES:
                return None
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            return HeaderInfo("JPEG", width, height, _JPEG_MODES[components])
        i += 2 + length
    return None


def _exif_orientation(tiff: bytes) -> int:
    """The Orientation tag (0x0112) of IFD0 in an EXIF (TIFF) block; 1 when absent or unreadable."""
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        (ifd,) = struct.unpack(order + "I", tiff[4:8])
        (count,) = struct.unpack(order + "H", tiff[ifd:ifd + 2])
        for k in range(count):
            entry = ifd + 2 + 12 * k
            tag, kind = struct.unpack(order + "HH", tiff[entry:entry + 4])
            if tag == 0x0112 and kind == 3:  # SHORT
                (value,) = struct.unpack(order + "H", tiff[entry + 8:entry + 10])
                return value
    except (KeyError, struct.error):
        pass
    return 1


def probe_bytes(head: bytes, path: str | None = None) -> HeaderInfo:
    """Identify an image from its header bytes without decoding pixels.

    PNG and JPEG headers are parsed directly (``fast_header``); anything else, or anything unusual,
    goes through PIL's lazy open. If the header does not fit in ``head`` (e.g. a JPEG with a huge
    metadata block) and ``path`` is given, the file itself is opened. Raises ImageReadError when it
    is not a readable image.
    """
    fast = fast_header(head)
    if fast is not None:
        return fast
    fmt = sniff_format(head)
    formats = [fmt] if fmt in ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF") else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. DecompressionBombWarning, odd metadata
            try:
                with Image.open(io.BytesIO(head), formats=formats) as im:
                    return _header_info(im, fmt)
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
                if path is None or len(head) < HEAD_BYTES:
                    raise
                with Image.open(path, formats=formats) as im:  # header longer than HEAD_BYTES
                    return _header_info(im, fmt)
    except UnidentifiedImageError as exc:
        raise ImageReadError(_unrecognised(fmt)) from exc
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"image too large ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise ImageReadError(f"unreadable image header ({_short(exc)})") from exc


def _header_info(im: Image.Image, fmt: str | None) -> HeaderInfo:
    width, height = im.width, im.height
    if "exif" in im.info:  # report the displayed size: orientations 5-8 swap width and height
        try:
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                width, height = height, width
        except (ValueError, TypeError, KeyError, SyntaxError, OSError, struct.error):
            pass  # broken EXIF: keep the stored size
    return HeaderInfo(im.format or fmt or "?", width, height, im.mode)


def verify_decode(path: str | os.PathLike[str]) -> None:
    """Decode every pixel of the (first frame of the) image; ImageReadError for what only a decode finds."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                problem = size_problem(*im.size)
                if problem:
                    raise ImageReadError(problem)
                im.load()
    except UnidentifiedImageError as exc:
        raise ImageReadError(_unrecognised(_sniff_path(path))) from exc
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"image too large ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise ImageReadError(f"corrupt image data ({_short(exc)})") from exc


def load_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Load any supported image as an 8-bit RGB PIL image, loaded into memory.

    Applies the EXIF orientation; composites transparency (RGBA, LA, palette with a transparent
    colour) on white; converts CMYK and grayscale; scales 16/32-bit integer images by their real bit
    depth (so a 16-bit gradient stays a gradient rather than clipping to white).
    Raises ImageReadError (a UserError) with a one-line reason.
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # someone flipped the global: we still want errors
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES must stay False")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                problem = size_problem(*im.size)  # before decoding a single pixel
                if problem:
                    raise ImageReadError(f"{path}: {problem}")
                im.load()
                return to_rgb(_apply_orientation(im))
    except FileNotFoundError as exc:
        raise ImageReadError(f"image not found: {path}") from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(f"{path}: {_unrecognised(_sniff_path(path))}") from exc
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{path}: image too large ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise ImageReadError(f"{path}: cannot read image ({_short(exc)})") from exc


def _apply_orientation(im: Image.Image) -> Image.Image:
    try:
        orientation = im.getexif().get(0x0112, 1)  # EXIF Orientation tag
        if orientation in (2, 3, 4, 5, 6, 7, 8):
            return ImageOps.exif_transpose(im)
    except (ValueError, TypeError, KeyError, SyntaxError, OSError, struct.error):
        pass  # a broken EXIF block: keep the stored orientation
    return im


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert a loaded PIL image of any mode to 8-bit RGB (see load_rgb)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_high_depth_to_uint8(im)).convert("RGB")
    if mode == "P":
        has_alpha = "transparency" in im.info or im.palette is not None and im.palette.mode == "RGBA"
        im = im.convert("RGBA" if has_alpha else "RGB")
        mode = im.mode
        if mode == "RGB":
            return im
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "L" and "transparency" in im.info:
        return to_rgb(im.convert("LA"))
    return im.convert("RGB")  # L, 1, CMYK (PIL applies the Adobe polarity), YCbCr, LAB, HSV


def _high_depth_to_uint8(im: Image.Image) -> np.ndarray:
    """16/32-bit integer or float grayscale -> uint8, scaled by the bit depth the file declares."""
    arr = np.asarray(im)
    if im.mode == "F":
        arr = arr.astype(np.float64)
        finite = arr[np.isfinite(arr)]
        peak = float(finite.max()) if finite.size else 1.0
        scale = 1.0 if peak <= 1.0 else peak  # [0, 1] floats as is, otherwise relative to the peak
        return (np.clip(np.nan_to_num(arr) / scale, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    bits = _declared_bits(im)
    if bits is None:
        peak = int(arr.max()) if arr.size else 0
        bits = 16 if peak <= 0xFFFF else 32
    maxval = float((1 << bits) - 1)
    arr = np.clip(arr.astype(np.float64), 0.0, maxval)
    return (arr * (255.0 / maxval) + 0.5).astype(np.uint8)


def _declared_bits(im: Image.Image) -> int | None:
    tags = getattr(im, "tag_v2", None)  # TIFF: BitsPerSample (e.g. 12 for many scientific cameras)
    if tags is not None:
        value = tags.get(258)
        if isinstance(value, tuple):
            value = value[0] if value else None
        if isinstance(value, int) and 1 <= value <= 32:
            return value
    if im.mode.startswith("I;16") or im.format == "PNG":
        return 16  # PNG stores at most 16 bits per sample
    return None


def _sniff_path(path: str | os.PathLike[str]) -> str | None:
    try:
        with open(path, "rb") as fh:
            return sniff_format(fh.read(64))
    except OSError:
        return None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
