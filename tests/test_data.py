"""Readers and image decoding on awkward inputs written at test time."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from badfiles import jpeg_bytes, photo, write_bad_images, write_bad_texts, write_bomb_png
from PIL import Image, ImageFile

from headstart.data.images import decode_for_model, load_rgb, to_model_tensor
from headstart.data.sources import (
    Item,
    Source,
    read_source,
    source_from_paths,
    source_from_texts,
)
from headstart.errors import HeadstartError, UnreadableItem
from headstart.zoo.config import ImagePreprocess


@pytest.fixture(scope="module")
def bad_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_images")
    return folder, write_bad_images(folder)


@pytest.fixture(scope="module")
def bad_texts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_texts")
    return folder, write_bad_texts(folder)


# ---- load_rgb ---------------------------------------------------------------------------------


def _names(expectations: dict, key: str) -> list[str]:
    return sorted(name for name, expect in expectations.items() if key in expect)


_READABLE = [
    "alpha.png",
    "cmyk.jpg",
    "deep16.png",
    "gif_named.jpg",
    "grey.png",
    "palette_transparent.png",
    "rotated.jpg",
]
_UNREADABLE = ["bomb.png", "folder.jpg", "text.jpg", "truncated.jpg", "zero.jpg"]


def test_helper_lists_every_case(bad_images):
    _, expect = bad_images
    assert _names(expect, "size") == _READABLE
    assert _names(expect, "reason") == _UNREADABLE


@pytest.mark.parametrize("name", _READABLE)
def test_readable_images_decode_to_rgb(bad_images, name):
    folder, expect = bad_images
    img = load_rgb(folder / name)
    assert img.mode == "RGB"
    assert img.size == expect[name]["size"]
    for xy, colour in expect[name]["pixels"].items():
        assert np.abs(np.subtract(img.getpixel(xy), colour)).max() <= 6, (name, xy)


@pytest.mark.parametrize("name", _UNREADABLE)
def test_unreadable_images_raise_with_reason(bad_images, name):
    folder, expect = bad_images
    with pytest.raises(UnreadableItem) as caught:
        load_rgb(folder / name)
    assert str(caught.value) == expect[name]["reason"]


def test_truncated_jpeg_is_not_decoded_as_grey():
    assert not ImageFile.LOAD_TRUNCATED_IMAGES


def test_missing_file_is_unreadable(tmp_path):
    with pytest.raises(UnreadableItem, match="file not found"):
        load_rgb(tmp_path / "nope.jpg")


def test_bomb_fails_fast(tmp_path):
    start = time.perf_counter()
    write_bomb_png(tmp_path / "bomb.png")
    written = time.perf_counter()
    with pytest.raises(UnreadableItem, match="image too large"):
        load_rgb(tmp_path / "bomb.png")
    assert written - start < 2.0
    assert time.perf_counter() - written < 2.0
    assert (tmp_path / "bomb.png").stat().st_size < 200_000


@pytest.mark.parametrize("side", [9_000, 10_000])
def test_size_limit_below_pillows_own(tmp_path, side):
    # 81M pixels passes PIL's default limit; 100M only makes PIL warn. Both must fail.
    write_bomb_png(tmp_path / "big.png", side=side)
    with pytest.raises(UnreadableItem, match=f"{side}x{side}"):
        load_rgb(tmp_path / "big.png")


def test_draft_keeps_shorter_side(tmp_path):
    (tmp_path / "big.jpg").write_bytes(jpeg_bytes(photo(2000, 1200)))
    img = load_rgb(tmp_path / "big.jpg", draft_to=256)
    assert min(img.size) >= 256
    assert img.size[0] < 2000  # the decoder did scale down
    assert load_rgb(tmp_path / "big.jpg").size == (2000, 1200)


# ---- tensors ----------------------------------------------------------------------------------


def test_to_model_tensor_shape_and_type():
    pre = ImagePreprocess(input_size=224)
    for size in [(451, 300), (300, 451), (100, 100), (2000, 50)]:
        out = to_model_tensor(photo(*size), pre)
        assert out.dtype == torch.uint8
        assert tuple(out.shape) == (3, 224, 224)


def test_matches_timm_eval_transform(tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    from timm.data import create_transform, resolve_data_config

    path = tmp_path / "chelsea.jpg"
    Image.fromarray(skimage_data.chelsea()).save(path, quality=95)
    pre = ImagePreprocess(input_size=224, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=0.875)
    config = resolve_data_config(
        pretrained_cfg={
            "input_size": (3, 224, 224),
            "interpolation": "bicubic",
            "mean": pre.mean,
            "std": pre.std,
            "crop_pct": pre.crop_pct,
        }
    )
    expected = create_transform(**config)(Image.open(path).convert("RGB"))
    mean = torch.tensor(pre.mean).view(3, 1, 1)
    std = torch.tensor(pre.std).view(3, 1, 1)
    ours = (decode_for_model(path, pre).float() / 255 - mean) / std
    assert ours.shape == expected.shape
    assert (ours - expected).abs().mean().item() < 0.02


# ---- folders ----------------------------------------------------------------------------------


def _save(path: Path, size=(32, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    photo(*size).save(path)
    return path


def test_class_folders(tmp_path):
    _save(tmp_path / "cat" / "b.png")
    _save(tmp_path / "cat" / "a.jpg")
    _save(tmp_path / "dog" / "nested" / "c.JPG")
    (tmp_path / "dog" / "notes.txt").write_text("hi")
    (tmp_path / "dog" / ".DS_Store").write_bytes(b"x")
    (tmp_path / "dog" / "folder.jpg").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "README").write_text("top-level file")

    source = read_source(tmp_path)
    assert source.modality == "image"
    assert [Path(i.id).relative_to(tmp_path).as_posix() for i in source.items] == [
        "cat/a.jpg",
        "cat/b.png",
        "dog/nested/c.JPG",
    ]
    assert all(i.path == Path(i.id) for i in source.items)
    assert source.labels == ["cat", "cat", "dog"]
    assert source.class_names == ["cat", "dog"]
    reasons = {Path(s.id).relative_to(tmp_path).as_posix(): s.reason for s in source.skipped}
    assert reasons == {
        "dog/notes.txt": "not an image file (suffix .txt)",
        "dog/folder.jpg": "is a directory",
        "empty": "empty class folder (no image files)",
        "README": "not inside a class folder",
    }


def test_flat_folder(tmp_path):
    _save(tmp_path / "b.png")
    _save(tmp_path / "a.jpeg")
    (tmp_path / "zero.jpg").write_bytes(b"")  # still an item: decoding decides later
    (tmp_path / "data.csv").write_text("x\n1\n")
    (tmp_path / "folder.jpg").mkdir()
    (tmp_path / ".hidden.png").write_bytes(b"")

    source = read_source(str(tmp_path))
    assert [Path(i.id).name for i in source.items] == ["a.jpeg", "b.png", "zero.jpg"]
    assert source.labels is None
    assert source.class_names == []
    reasons = {Path(s.id).name: s.reason for s in source.skipped}
    assert reasons == {
        "data.csv": "not an image file (suffix .csv)",
        "folder.jpg": "is a directory",
    }


def test_folder_without_images_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(HeadstartError, match="nothing usable"):
        read_source(tmp_path)


def test_missing_and_unsupported_data(tmp_path):
    with pytest.raises(HeadstartError, match="DATA 'nowhere/x' does not exist"):
        read_source("nowhere/x")
    (tmp_path / "sheet.xlsx").write_bytes(b"PK")
    with pytest.raises(HeadstartError, match=r"\.xlsx file; expected"):
        read_source(tmp_path / "sheet.xlsx")


# ---- tables -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["blanks.csv", "bad_utf8.csv", "long_row.csv", "bad_line.jsonl", "no_text_col.csv"]
)
def test_bad_text_tables(bad_texts, name):
    folder, expect = bad_texts
    want = expect[name]
    if "error" in want:
        with pytest.raises(HeadstartError, match=want["error"]) as caught:
            read_source(folder / name)
        assert "['review', 'stars']" in str(caught.value)
        return
    source = read_source(folder / name)
    assert source.modality == "text"
    assert [i.id for i in source.items] == want["ids"]
    got = {s.id: s.reason for s in source.skipped}
    assert got.keys() == want["skipped"].keys()
    for row, reason in want["skipped"].items():
        assert got[row].startswith(reason)
    if "longest" in want:
        assert max(len(i.text) for i in source.items) == want["longest"]


def test_text_table_columns_and_labels(tmp_path):
    path = tmp_path / "reviews.tsv"
    path.write_text("review\tstars\tother\ngood\t1\tx\nbad\t0\ty\nmeh\t\tz\n")
    source = read_source(path, text_col="review", label_col="stars")
    assert [(i.id, i.text, i.label) for i in source.items] == [
        ("1", "good", "1"),
        ("2", "bad", "0"),
    ]
    assert [(s.id, s.reason) for s in source.skipped] == [("3", "missing label")]
    assert source.class_names == ["0", "1"]
    with pytest.raises(HeadstartError, match="Did you mean 'review'"):
        read_source(path, text_col="reviews")


def test_text_table_without_labels(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('sentence\n"hello, world"\nNA\n')
    source = read_source(path)
    assert [i.text for i in source.items] == ["hello, world", "NA"]
    assert source.labels is None


def test_row_with_extra_fields_is_skipped(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,label\nfine,a\nhello, world,b\nalso fine,b\n")
    source = read_source(path)
    assert [i.id for i in source.items] == ["1", "3"]
    assert [(s.id, s.reason) for s in source.skipped] == [
        ("2", "cannot parse row (expected 2 fields, saw 3)")
    ]


def test_json_formats(tmp_path):
    records = [{"text": "a", "label": 0}, {"text": "b", "label": 1}, "oops"]
    (tmp_path / "list.json").write_text(json.dumps(records))
    source = read_source(tmp_path / "list.json")
    assert [(i.id, i.label) for i in source.items] == [("1", "0"), ("2", "1")]
    assert source.skipped[0].id == "3"
    (tmp_path / "cols.json").write_text(json.dumps({"text": ["x", "y"], "label": [1.0, 2.0]}))
    assert read_source(tmp_path / "cols.json").labels == ["1", "2"]
    (tmp_path / "lines.json").write_text('{"text": "x"}\n{"text": "y"}\n')
    assert [i.text for i in read_source(tmp_path / "lines.json").items] == ["x", "y"]


def test_image_list_csv(tmp_path):
    _save(tmp_path / "img" / "a.png")
    absolute = _save(tmp_path / "elsewhere" / "b.png")
    (tmp_path / "lists").mkdir()
    path = tmp_path / "lists" / "images.csv"
    rows = [
        "filepath,label",
        "../img/a.png,cat",
        f"{absolute},dog",
        "../img/missing.png,cat",
        ",dog",
    ]
    path.write_text("\n".join(rows) + "\n")
    source = read_source(path)
    assert source.modality == "image"
    assert [i.path.resolve() for i in source.items] == [
        (tmp_path / "img" / "a.png").resolve(),
        absolute,
    ]
    assert source.labels == ["cat", "dog"]
    reasons = [(Path(s.id).name, s.reason) for s in source.skipped]
    assert reasons == [("missing.png", "file not found"), ("4", "empty path")]


# ---- Python API -------------------------------------------------------------------------------


def test_source_from_texts():
    source = source_from_texts(["a", " ", "c"], labels=[1, 0, None])
    assert [(i.id, i.label) for i in source.items] == [("1", "1")]
    assert [(s.id, s.reason) for s in source.skipped] == [
        ("2", "empty text"),
        ("3", "missing label"),
    ]
    assert source_from_texts(["a", "b"]).labels is None
    with pytest.raises(HeadstartError, match="2 texts but 1 labels"):
        source_from_texts(["a", "b"], labels=["x"])


def test_source_from_paths(tmp_path):
    good = _save(tmp_path / "a.png")
    source = source_from_paths([good, tmp_path / "gone.png"], labels=["x", "y"])
    assert source.items == [Item(str(good), path=good, label="x")]
    assert source.skipped[0].reason == "file not found"
    assert isinstance(source, Source)
