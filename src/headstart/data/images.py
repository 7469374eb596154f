"""Robust image decoding: any file a user may have becomes an RGB image or an UnreadableItem.

Decoding is per item: one bad file must never stop a run, so every failure is turned into
an UnreadableItem with a short reason the caller can report.
"""

from __future__ import annotations

import re
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from headstart.data.suffixes import IMAGE_SUFFIXES
from headstart.errors import UnreadableItem
from headstart.zoo.config import ImagePreprocess

if TYPE_CHECKING:  # reading a folder's file list must not import torch (cached runs skip it)
    import torch


# 8000 x 8000. Checked by us on the declared size, before any pixel is decoded.
MAX_PIXELS = 64_000_000

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
_TRANSPARENT_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def is_image_path(path: Path | str) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def load_rgb(path: Path | str, draft_to: int | None = None) -> Image.Image:
    """Decode `path` to an RGB image, upright, with transparency on white.

    With `draft_to`, JPEGs are scaled down while decoding (by 1/2, 1/4 or 1/8) but their
    shorter side stays >= draft_to. Raises UnreadableItem with a short reason on any failure.
    """
    path = Path(path)
    with opened_image(path) as img:
        if draft_to and img.format in ("JPEG", "MPO"):
            img.draft("RGB", (draft_to, draft_to))
        img.load()  # decode inside the guard: truncated files fail here
        upright = ImageOps.exif_transpose(img)  # always a copy, detached from the file
        return to_rgb(upright)


@contextmanager
def opened_image(path: Path):
    """The first frame of `path`, opened and checked for size; whatever fails inside (opening,
    decoding, converting) becomes an UnreadableItem with a short reason."""
    _check_file(path)
    try:
        # PIL's own bomb guard warns above its limit; as an error it stops before decoding.
        # Our check below on the declared size is the real guard; this one is belt and braces.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                _check_size(img.size)
                img.seek(0)  # first frame of animations and multi-page TIFFs
                yield img
    except UnreadableItem:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise UnreadableItem(_bomb_reason(path, err)) from err
    except Image.UnidentifiedImageError as err:
        raise UnreadableItem("not an image (cannot identify image file)") from err
    except MemoryError as err:
        raise UnreadableItem("image too large to decode (out of memory)") from err
    except Exception as err:  # plugins raise OSError, SyntaxError, ValueError, struct.error...
        raise UnreadableItem(f"truncated or corrupt image ({_short(err)})") from err


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: 16-bit rescaled, transparency composited on white."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        img = _deep_to_l(img)
    if img.mode in _TRANSPARENT_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode == "RGB":
        return img
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def to_model_tensor(img: Image.Image, pre: ImagePreprocess) -> torch.Tensor:
    """Resize the shorter side to pre.resize_size, centre-crop pre.input_size; uint8 (3, H, W).

    Follows timm's eval transform (torchvision Resize + CenterCrop) arithmetic. Not normalised:
    that happens on the batch as (x / 255 - mean) / std.
    """
    img = to_rgb(img)
    width, height = img.size
    short, long = min(width, height), max(width, height)
    new_short, new_long = pre.resize_size, int(pre.resize_size * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    side = pre.input_size
    if min(new_w, new_h) < side:  # only after odd rounding: the padded two-step path
        img = img.resize((new_w, new_h), _RESAMPLE[pre.interpolation], reducing_gap=3.0)
        img = _centre_crop(img, side)
    elif (new_w, new_h) != (width, height) or (width, height) != (side, side):
        # Resample only the region the centre crop keeps: the same pixels as resize-then-crop
        # (mean difference under 0.01 grey levels) for about 60% of the work.
        top, left = int(round((new_h - side) / 2.0)), int(round((new_w - side) / 2.0))
        sx, sy = width / new_w, height / new_h
        box = (left * sx, top * sy, (left + side) * sx, (top + side) * sy)
        img = img.resize((side, side), _RESAMPLE[pre.interpolation], box=box, reducing_gap=3.0)
    import torch

    array = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def decode_for_model(path: Path | str, pre: ImagePreprocess) -> torch.Tensor:
    """load_rgb (with JPEG draft decoding) then to_model_tensor."""
    return to_model_tensor(load_rgb(path, draft_to=pre.resize_size), pre)


def _check_file(path: Path) -> None:
    try:
        if path.is_dir():
            raise UnreadableItem("is a directory")
        size = path.stat().st_size
    except FileNotFoundError as err:
        raise UnreadableItem("file not found") from err
    except PermissionError as err:
        raise UnreadableItem("cannot read (permission denied)") from err
    except OSError as err:
        raise UnreadableItem(f"cannot read ({_short(err)})") from err
    if size == 0:
        raise UnreadableItem("empty file (0 bytes)")


def _check_size(size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise UnreadableItem(_too_large(width, height))


def _too_large(width: int, height: int) -> str:
    pixels = width * height
    return (
        f"image too large ({width}x{height} = {pixels / 1e6:.0f}M pixels; "
        f"limit {MAX_PIXELS / 1e6:.0f}M)"
    )


def _bomb_reason(path: Path, err: Exception) -> str:
    """PIL refused the file at open; say how large it claims to be."""
    size = _declared_size(path)
    if size:
        return _too_large(*size)
    found = re.search(r"\((\d+) pixels\)", str(err))
    pixels = f"{int(found.group(1)) / 1e6:.0f}M pixels" if found else "too many pixels"
    return f"image too large ({pixels}; limit {MAX_PIXELS / 1e6:.0f}M)"


def _declared_size(path: Path) -> tuple[int, int] | None:
    """Read only the header, without PIL's bomb check, which raises before giving the size."""
    Image.init()
    try:
        with path.open("rb") as fp:
            prefix = fp.read(16)
            for name in Image.ID:
                factory, accept = Image.OPEN[name]
                found = accept(prefix) if accept else True
                if not found or isinstance(found, str):
                    continue
                fp.seek(0)
                try:
                    return factory(fp, str(path)).size
                except Exception:
                    continue
    except OSError:
        return None
    return None


def _deep_to_l(img: Image.Image) -> Image.Image:
    """16-bit or float greyscale to 8 bit: rescaled by 1/257 when it uses the 16-bit range."""
    values = np.asarray(img, dtype=np.float64)
    if values.size and values.max() > 255:
        values = values / 257.0
    elif img.mode == "F" and values.size and values.max() <= 1.0:
        values = values * 255.0  # float images in [0, 1]
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))


def _centre_crop(img: Image.Image, size: int) -> Image.Image:
    width, height = img.size
    if width < size or height < size:  # only after odd rounding; pad like torchvision would
        canvas = Image.new("RGB", (max(width, size), max(height, size)))
        canvas.paste(img, ((canvas.width - width) // 2, (canvas.height - height) // 2))
        img, (width, height) = canvas, canvas.size
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def _short(err: Exception) -> str:
    """First clause of an error message, e.g. 'image file is truncated'."""
    text = str(err).strip() or type(err).__name__
    text = re.sub(r"\s*\(\d+ bytes not processed\)", "", text)
    return text.splitlines()[0][:120]
