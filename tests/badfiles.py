"""Write awkward inputs into a folder at test time (no binary files live in the repository).

Each writer returns {file name: expectation}. For images an expectation is either
{"size": (w, h), "pixels": {(x, y): (r, g, b)}} for files that must decode, or
{"reason": "..."} for files that must raise UnreadableItem with that text in the reason.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

BOMB_SIDE = 20_000


def photo(width: int = 320, height: int = 240) -> Image.Image:
    """A smooth, textured RGB picture (JPEG-friendly, not a flat colour)."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(0)
    red = 128 + 100 * np.sin(x / 17.0)
    green = 128 + 100 * np.cos(y / 11.0)
    blue = (x + y) % 256
    array = np.stack([red, green, blue], axis=-1) + rng.normal(0, 8, (height, width, 3))
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def jpeg_bytes(img: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=90, **options)
    return buffer.getvalue()


def write_bad_images(folder: Path) -> dict[str, dict]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    expect: dict[str, dict] = {}

    (folder / "zero.jpg").write_bytes(b"")
    expect["zero.jpg"] = {"reason": "empty file (0 bytes)"}

    whole = jpeg_bytes(photo())
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    expect["truncated.jpg"] = {"reason": "truncated or corrupt image (image file is truncated)"}

    (folder / "text.jpg").write_text("this is not a picture\n")
    expect["text.jpg"] = {"reason": "not an image (cannot identify image file)"}

    (folder / "folder.jpg").mkdir(exist_ok=True)
    expect["folder.jpg"] = {"reason": "is a directory"}

    _write_gif_as_jpg(folder, expect)
    _write_transparent(folder, expect)
    _write_modes(folder, expect)
    _write_rotated(folder, expect)

    write_bomb_png(folder / "bomb.png")
    expect["bomb.png"] = {"reason": "image too large (20000x20000 = 400M pixels; limit 64M)"}
    return expect


def _write_gif_as_jpg(folder: Path, expect: dict) -> None:
    # Two frames: red then blue; only the first may be read.
    frames = [Image.new("RGB", (40, 30), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(folder / "gif_named.jpg", format="GIF", save_all=True, append_images=frames[1:])
    expect["gif_named.jpg"] = {"size": (40, 30), "pixels": {(5, 5): (255, 0, 0)}}


def _write_transparent(folder: Path, expect: dict) -> None:
    # Left half fully transparent (must become white), right half opaque blue.
    rgba = np.zeros((30, 40, 4), dtype=np.uint8)
    rgba[:, 20:] = (0, 0, 255, 255)
    Image.fromarray(rgba).save(folder / "alpha.png")
    expect["alpha.png"] = {
        "size": (40, 30),
        "pixels": {(5, 5): (255, 255, 255), (30, 5): (0, 0, 255)},
    }

    # Palette PNG whose index 0 is transparent (a tRNS chunk).
    palette = Image.new("P", (40, 30), 0)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.paste(1, (20, 0, 40, 30))
    palette.save(folder / "palette_transparent.png", transparency=0)
    expect["palette_transparent.png"] = {
        "size": (40, 30),
        "pixels": {(5, 5): (255, 255, 255), (30, 5): (0, 255, 0)},
    }


def _write_modes(folder: Path, expect: dict) -> None:
    Image.new("L", (40, 30), 100).save(folder / "grey.png")
    expect["grey.png"] = {"size": (40, 30), "pixels": {(5, 5): (100, 100, 100)}}

    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(folder / "cmyk.jpg", quality=95)
    expect["cmyk.jpg"] = {"size": (40, 30), "pixels": {(5, 5): (255, 0, 0)}}

    # 16-bit greyscale gradient 0..65535 left to right: must be rescaled, not clipped at 255.
    ramp = np.linspace(0, 65535, 256).round().astype(np.uint16)
    Image.fromarray(np.tile(ramp, (8, 1))).save(folder / "deep16.png")
    expect["deep16.png"] = {
        "size": (256, 8),
        "pixels": {(0, 0): (0, 0, 0), (128, 0): (128, 128, 128), (255, 0): (255, 255, 255)},
    }


def _write_rotated(folder: Path, expect: dict) -> None:
    # Stored 60 wide x 40 high, red top-left corner; orientation 6 = rotate 90 degrees clockwise,
    # so it displays 40 x 60 with the red corner at the top right.
    stored = Image.new("RGB", (60, 40), (0, 0, 0))
    stored.paste((255, 0, 0), (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    (folder / "rotated.jpg").write_bytes(jpeg_bytes(stored, exif=exif.tobytes()))
    expect["rotated.jpg"] = {"size": (40, 60), "pixels": {(35, 4): (255, 0, 0), (4, 4): (0, 0, 0)}}


def write_bomb_png(path: Path, side: int = BOMB_SIDE) -> None:
    """A valid 1-bit greyscale PNG of side x side pixels, all black, about 50 kB."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    chunks = [packer.compress(row * 1000) for _ in range(side // 1000)]
    chunks.append(packer.compress(row * (side % 1000)))
    chunks.append(packer.flush())
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
    data += _chunk(b"IDAT", b"".join(chunks)) + _chunk(b"IEND", b"")
    Path(path).write_bytes(data)


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def write_bad_texts(folder: Path) -> dict[str, dict]:
    """Text tables. Expectation: {"items": n, "skipped": {row id: reason}} or {"error": text}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    expect: dict[str, dict] = {}

    # Data rows: 1 ok, 2 empty line, 3 blank text with a label, 4 whitespace text, 5 ok.
    (folder / "blanks.csv").write_text("text,label\ngood one,a\n\n,b\n   ,a\nanother,b\n")
    expect["blanks.csv"] = {
        "items": 2,
        "ids": ["1", "5"],
        "skipped": {"2": "empty text", "3": "empty text", "4": "empty text"},
    }

    (folder / "no_text_col.csv").write_text("review,stars\nnice,5\nbad,1\n")
    expect["no_text_col.csv"] = {"error": "--text-col"}

    latin1 = "caf\u00e9 cr\u00e8me,b\n".encode("latin-1")
    body = b"text,label\nplain row,a\n" + latin1 + b"third row,a\n"
    (folder / "bad_utf8.csv").write_bytes(body)
    expect["bad_utf8.csv"] = {"items": 2, "ids": ["1", "3"], "skipped": {"2": "not valid UTF-8"}}

    long_text = "word " * 20_000  # 100,000 characters
    (folder / "long_row.csv").write_text(f"text,label\nshort,a\n{long_text},b\n")
    expect["long_row.csv"] = {"items": 2, "ids": ["1", "2"], "skipped": {}, "longest": 100_000}

    lines = [json.dumps({"text": "fine", "label": 0}), "{not json", json.dumps({"text": "ok"})]
    (folder / "bad_line.jsonl").write_text("\n".join(lines) + "\n")
    expect["bad_line.jsonl"] = {
        "items": 1,
        "ids": ["1"],
        "skipped": {"2": "not valid JSON", "3": "missing label"},
    }
    return expect
