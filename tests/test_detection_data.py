"""Reading object-detection sets (Pascal VOC, COCO, YOLO) into a Source of images with Boxes.

Every data set is written into tmp_path by the test: tiny images made with PIL, annotation files
as text. The real raccoon set is read when the shared copy is present."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from headstart.data.boxes import Boxes, detection_layout, read_detection
from headstart.errors import HeadstartError

RACCOON = Path(__file__).resolve().parents[2] / "shared/data/raccoon"
W, H = 64, 48  # size of every written image unless a test says otherwise


# ---- writing tiny data sets ----------------------------------------------------------------


def write_image(path: Path, size=(W, H), **save) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 150)).save(path, **save)
    return path


def voc_xml(filename: str | None, objects=(), size=(W, H)) -> str:
    """objects: (name, xmin, ymin, xmax, ymax) or with a sixth item, difficult (0 or 1)."""
    parts = ["<annotation>", "<folder>images</folder>"]
    if filename is not None:
        parts.append(f"<filename>{filename}</filename>")
    if size is not None:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height></size>")
    for name, *corners in objects:
        difficult = corners[4] if len(corners) > 4 else 0
        box = "".join(
            f"<{k}>{v}</{k}>"
            for k, v in zip(("xmin", "ymin", "xmax", "ymax"), corners[:4], strict=True)
        )
        parts.append(
            f"<object><name>{name}</name><difficult>{difficult}</difficult>"
            f"<bndbox>{box}</bndbox></object>"
        )
    return "\n".join(parts + ["</annotation>"])


def voc_set(root: Path, annotations: dict, images=None, xml_dir="annotations", image_dir="images"):
    """annotations: {stem: objects}; images: stems to write (default: the annotated ones)."""
    for stem in annotations if images is None else images:
        write_image(root / image_dir / f"{stem}.jpg")
    (root / xml_dir).mkdir(parents=True, exist_ok=True)
    for stem, objects in annotations.items():
        (root / xml_dir / f"{stem}.xml").write_text(voc_xml(f"{stem}.jpg", objects))
    return root


def coco_set(root: Path, annotations, categories=None, images=("a.jpg", "b.jpg"), **extra):
    """annotations: (image id, category id, [x, y, w, h]) or full dicts; image ids from 1."""
    for name in images:
        write_image(root / "images" / name)
    entries = [
        {"id": i, "file_name": name, "width": W, "height": H}
        for i, name in enumerate(images, start=1)
    ]
    anns = [
        a if isinstance(a, dict) else {"id": n, "image_id": a[0], "category_id": a[1], "bbox": a[2]}
        for n, a in enumerate(annotations, start=1)
    ]
    data = {
        "images": entries,
        "annotations": anns,
        "categories": categories or [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        **extra,
    }
    path = root / "annotations.json"
    path.write_text(json.dumps(data))
    return path


def yolo_set(root: Path, labels: dict, names=("cat", "dog"), names_file="classes.txt"):
    """labels: {stem: label file text}; one image per stem."""
    for stem, text in labels.items():
        write_image(root / "images" / f"{stem}.jpg")
        (root / "labels").mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"{stem}.txt").write_text(text)
    if names_file:
        (root / names_file).write_text("\n".join(names) + "\n")
    return root


def huge_png(path: Path, side: int) -> Path:
    """A 1-bit PNG of side x side zeros: a few KB on disk, `side`^2 pixels in its header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte, then the packed bits
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row * 1000) for _ in range(side // 1000))
    data += packer.compress(row * (side % 1000)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png + chunk(b"IEND", b""))
    return path


def by_name(source) -> dict:
    return {item.path.name: item.target for item in source.items}


# ---- the three layouts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "xml_dir, image_dir",
    [("annotations", "images"), ("Annotations", "JPEGImages"), (".", ".")],
)
def test_voc_layouts(tmp_path, xml_dir, image_dir):
    annotations = {
        "a": [("dog", 1, 2, 30, 40), ("cat", 5.5, 6, 20, 21.25)],
        "b": [("cat", 0, 0, 9, 9)],
    }
    voc_set(tmp_path, annotations, xml_dir=xml_dir, image_dir=image_dir)
    assert detection_layout(tmp_path) == "voc"
    source = read_detection(tmp_path)
    assert source.modality == "image"
    assert source.classes == ["cat", "dog"]  # sorted names found
    assert source.notes == [] and source.skipped == []
    item = source.items[0]
    assert item.id == str(item.path) and item.path.name == "a.jpg" and item.label is None
    assert item.target == Boxes(((1.0, 2.0, 30.0, 40.0), (5.5, 6.0, 20.0, 21.25)), ("dog", "cat"))


@pytest.mark.parametrize("form", ["file", "folder", "annotations folder", "COCO's own layout"])
def test_coco_layouts(tmp_path, form):
    json_path = coco_set(tmp_path, [(1, 2, [10, 5, 20, 15]), (2, 1, [0, 0, 8, 8])])
    if form == "annotations folder":  # annotations/instances_val.json, images in images/
        (tmp_path / "annotations").mkdir()
        json_path = json_path.rename(tmp_path / "annotations" / "instances_val.json")
    if form == "COCO's own layout":  # annotations/instances_val.json, images in val/
        (tmp_path / "annotations").mkdir()
        json_path = json_path.rename(tmp_path / "annotations" / "instances_val.json")
        (tmp_path / "images").rename(tmp_path / "val")
    data = json_path if form == "file" else tmp_path
    assert detection_layout(data) == "coco"
    source = read_detection(data)
    assert source.classes == ["cat", "dog"]
    assert source.notes == [] and source.skipped == []
    boxes = by_name(source)
    assert boxes["a.jpg"] == Boxes(((10.0, 5.0, 30.0, 20.0),), ("dog",))  # [x, y, w, h] -> corners
    assert boxes["b.jpg"] == Boxes(((0.0, 0.0, 8.0, 8.0),), ("cat",))


def test_coco_category_ids_that_skip_numbers(tmp_path):
    categories = [{"id": 7, "name": "z"}, {"id": 1, "name": "x"}, {"id": 3, "name": "y"}]
    anns = [(1, 7, [1, 1, 5, 5]), (1, 3, [2, 2, 5, 5]), (2, 1, [3, 3, 5, 5])]
    source = read_detection(coco_set(tmp_path, anns, categories))
    assert source.classes == ["x", "y", "z"]  # id order, no holes
    assert by_name(source)["a.jpg"].labels == ("z", "y")
    assert by_name(source)["b.jpg"].labels == ("x",)


YAML_FORMS = {
    "flow": "path: .\nnames: ['cat', \"traffic light\"]  # two\n",
    "multi-line flow": "names: [cat,\n  traffic light]\nnc: 2\n",
    "index map": "train: images\nnames:\n  0: cat\n  1: traffic light  # a comment\nnc: 2\n",
    "block list": "names:\n  - cat\n  - 'traffic light'\n",
}


@pytest.mark.parametrize("names_file", ["classes.txt", "obj.names", "names.txt", "data.yaml"])
def test_yolo_layout(tmp_path, names_file):
    yolo_set(tmp_path, {"a": "1 0.5 0.5 0.25 0.5\n0 0.25 0.25 0.5 0.5\n", "b": ""}, names_file="")
    names = YAML_FORMS["index map"] if names_file == "data.yaml" else "cat\ntraffic light\n\n"
    (tmp_path / names_file).write_text(names)
    assert detection_layout(tmp_path) == "yolo"
    source = read_detection(tmp_path)
    assert source.classes == ["cat", "traffic light"]
    target = by_name(source)["a.jpg"]
    assert target.labels == ("traffic light", "cat")
    assert target.boxes == ((24.0, 12.0, 40.0, 36.0), (0.0, 0.0, 32.0, 24.0))  # pixels of 64x48
    assert by_name(source)["b.jpg"] == Boxes()  # an empty label file: a negative
    assert source.notes == ["1 image has no boxes: kept as negatives"]


@pytest.mark.parametrize("pyyaml", [True, False], ids=["pyyaml", "tiny parser"])
@pytest.mark.parametrize("form", list(YAML_FORMS))
def test_yolo_data_yaml_forms(tmp_path, monkeypatch, form, pyyaml):
    if not pyyaml:
        monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml raises ImportError
    yolo_set(tmp_path, {"a": "1 0.5 0.5 0.5 0.5\n"}, names_file="")
    (tmp_path / "data.yaml").write_text(YAML_FORMS[form])
    source = read_detection(tmp_path)
    assert source.classes == ["cat", "traffic light"]
    assert by_name(source)["a.jpg"].labels == ("traffic light",)


def test_yolo_names_in_labels_folder_and_subfolders(tmp_path):
    """labelImg writes classes.txt into labels/; splits live in images/train, labels/train."""
    write_image(tmp_path / "images" / "train" / "a.png")
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (tmp_path / "labels" / "classes.txt").write_text("cat\n")
    source = read_detection(tmp_path)
    assert source.classes == ["cat"] and source.skipped == []
    assert by_name(source)["a.png"].boxes == ((16.0, 12.0, 48.0, 36.0),)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: write_image(p / "images" / "a.jpg").parent,  # a plain image folder
        lambda p: write_image(p / "cats" / "a.jpg").parents[1],  # a class-folder tree
        lambda p: (p / "t.csv").write_text("text,label\nhi,a\n") and p / "t.csv",
        lambda p: (p / "x.json").write_text('[{"text": "images annotations"}]') and p / "x.json",
    ],
    ids=["images", "class tree", "csv", "json list"],
)
def test_not_a_detection_layout(tmp_path, make):
    path = make(tmp_path)
    assert detection_layout(path) is None
    with pytest.raises(HeadstartError, match="is not a detection data set") as err:
        read_detection(path)
    assert "Pascal VOC" in str(err.value) and "\n" not in str(err.value)


# ---- bad input: VOC ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "box, kept, note",
    [
        (
            (-5, 10, 30, 60),
            (0.0, 10.0, 30.0, 48.0),
            "annotations/a.xml: 1 box outside the image clipped",
        ),
        (
            (10, 10, 10, 30),
            None,
            "annotations/a.xml: 1 box with no area (x2 <= x1 or y2 <= y1) dropped",
        ),
        (
            (30, 10, 20, 30),
            None,
            "annotations/a.xml: 1 box with no area (x2 <= x1 or y2 <= y1) dropped",
        ),
        ((70, 10, 90, 30), None, "annotations/a.xml: 1 box entirely outside the image dropped"),
        ((64, 10, 80, 30), None, "annotations/a.xml: 1 box entirely outside the image dropped"),
    ],
    ids=["partly outside", "zero width", "reversed", "outside", "x2 <= x1 after clipping"],
)
def test_voc_boxes_clipped_or_dropped(tmp_path, box, kept, note):
    voc_set(tmp_path, {"a": [("cat", *box), ("cat", 1, 1, 5, 5)], "b": [("cat", 1, 1, 9, 9)]})
    source = read_detection(tmp_path)
    expected = ((kept,) if kept else ()) + ((1.0, 1.0, 5.0, 5.0),)
    assert by_name(source)["a.jpg"].boxes == expected
    assert source.notes == [note]


def test_voc_negatives_counted_in_one_note(tmp_path):
    """An .xml with no objects and an image with no .xml are both negatives, kept."""
    voc_set(tmp_path, {"a": [("cat", 1, 1, 9, 9)], "b": []}, images=["a", "b", "c"])
    source = read_detection(tmp_path)
    assert [len(item.target) for item in source.items] == [1, 0, 0]
    assert source.notes == [
        "2 images have no boxes: kept as negatives (1 without an annotation file)"
    ]


def test_voc_image_missing_is_skipped(tmp_path):
    voc_set(tmp_path, {"a": [("cat", 1, 1, 9, 9)], "x": [("cat", 1, 1, 9, 9)]}, images=["a"])
    source = read_detection(tmp_path)
    assert len(source.items) == 1
    (skip,) = source.skipped
    assert skip.id == str(tmp_path / "annotations" / "x.xml")
    assert skip.reason == "image 'x.jpg' not found (looked in images/)"


def test_voc_image_matched_by_stem_and_stale_filename(tmp_path):
    """No <filename>: the .xml's stem with any image suffix; a stale <filename> naming another
    image loses to the .xml's own name."""
    write_image(tmp_path / "images" / "a.png")
    write_image(tmp_path / "images" / "b.jpg")
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "a.xml").write_text(voc_xml(None, [("cat", 1, 1, 5, 5)]))
    (tmp_path / "annotations" / "b.xml").write_text(voc_xml("a.png", [("dog", 2, 2, 6, 6)]))
    source = read_detection(tmp_path)
    assert by_name(source) == {
        "a.png": Boxes(((1.0, 1.0, 5.0, 5.0),), ("cat",)),
        "b.jpg": Boxes(((2.0, 2.0, 6.0, 6.0),), ("dog",)),
    }
    assert source.notes == [
        "annotations/b.xml: <filename> 'a.png' names another image than the file's own name; "
        "b.jpg is used"
    ]


def test_voc_class_names_with_spaces_kept(tmp_path):
    voc_set(tmp_path, {"a": [("  traffic light ", 1, 1, 9, 9), ("stop sign", 2, 2, 8, 8)]})
    source = read_detection(tmp_path)
    assert source.classes == ["stop sign", "traffic light"]
    assert by_name(source)["a.jpg"].labels == ("traffic light", "stop sign")


def test_voc_size_disagreeing_with_image_trusts_image(tmp_path):
    voc_set(tmp_path, {"a": [("cat", 1, 1, 60, 40)]})
    (tmp_path / "annotations" / "a.xml").write_text(
        voc_xml("a.jpg", [("cat", 1, 1, 60, 40)], size=(640, 480))
    )
    source = read_detection(tmp_path)
    assert by_name(source)["a.jpg"].boxes == ((1.0, 1.0, 60.0, 40.0),)
    assert source.notes == [
        "annotations/a.xml: size 640x480 differs from the image's 64x48; the image's size is used"
    ]


def test_voc_difficult_boxes_kept(tmp_path):
    voc_set(tmp_path, {"a": [("cat", 1, 1, 9, 9, 1), ("cat", 2, 2, 9, 9, 0)]})
    source = read_detection(tmp_path)
    assert len(by_name(source)["a.jpg"]) == 2
    assert source.notes == ["1 box marked difficult: kept as ordinary boxes"]


def test_voc_malformed_xml_skipped_and_its_image_left_out(tmp_path):
    voc_set(tmp_path, {"a": [("cat", 1, 1, 9, 9)], "b": [("cat", 1, 1, 9, 9)]})
    (tmp_path / "annotations" / "b.xml").write_text("<annotation>\n<object>\n</annotation>\n")
    source = read_detection(tmp_path)
    assert [item.path.name for item in source.items] == ["a.jpg"]  # b.jpg is not a negative
    (skip,) = source.skipped
    assert skip.id.endswith("b.xml")
    assert skip.reason == "malformed XML (mismatched tag: line 3, column 2); image 'b.jpg' left out"


def test_voc_malformed_objects_dropped(tmp_path):
    objects = [("cat", 1, 1, 9, 9), ("cat", "abc", 1, 9, 9), ("", 1, 1, 9, 9)]
    voc_set(tmp_path, {"a": objects})
    xml = tmp_path / "annotations" / "a.xml"
    xml.write_text(
        xml.read_text().replace("</annotation>", "<object><name>dog</name></object>\n</annotation>")
    )
    source = read_detection(tmp_path)
    assert by_name(source)["a.jpg"].boxes == ((1.0, 1.0, 9.0, 9.0),)
    assert source.notes == [
        "annotations/a.xml: object 2 has <xmin> 'abc', not a number: dropped",
        "annotations/a.xml: object 3 has no <name>: dropped",
        "annotations/a.xml: object 4 has no <bndbox>: dropped",
    ]


# ---- bad input: COCO -----------------------------------------------------------------------


def test_coco_crowd_orphan_and_bad_annotations(tmp_path):
    anns = [
        (1, 1, [1, 1, 10, 10]),
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [2, 2, 5, 5], "iscrowd": 1},
        (99, 1, [1, 1, 5, 5]),  # no image 99
        (1, 5, [1, 1, 5, 5]),  # no category 5
        (1, 2, [1, 1, 5]),
        (2, 2, [1, 1, "5", 5]),
        (2, 2, [50, 40, 30, 30]),  # partly outside a 64x48 image
    ]
    source = read_detection(coco_set(tmp_path, anns))
    assert by_name(source)["a.jpg"].boxes == ((1.0, 1.0, 11.0, 11.0),)
    assert by_name(source)["b.jpg"].boxes == ((50.0, 40.0, 64.0, 48.0),)
    assert source.notes == [
        "annotations.json: 1 crowd annotation (iscrowd 1) dropped",
        "annotations.json: 1 annotation with an image_id not in 'images' dropped",
        "annotations.json annotation 4: category_id 5 is not in 'categories': dropped",
        "annotations.json annotations 5, 6: 'bbox' is not [x, y, width, height] numbers: dropped",
        "annotations.json image 'b.jpg': 1 box outside the image clipped",
    ]


def test_coco_missing_image_unlisted_files_and_spaces(tmp_path):
    categories = [{"id": 1, "name": " traffic light "}]
    path = coco_set(tmp_path, [(1, 1, [1, 1, 5, 5]), (2, 1, [1, 1, 5, 5])], categories)
    (tmp_path / "images" / "b.jpg").rename(tmp_path / "images" / "c.jpg")
    source = read_detection(path)
    assert source.classes == ["traffic light"]
    assert [item.path.name for item in source.items] == ["a.jpg"]
    (skip,) = source.skipped
    assert (skip.id, skip.reason) == (str(path), "image 'b.jpg' not found (looked in ./, images/)")
    assert source.notes == ["1 image file beside the listed ones not in annotations.json: ignored"]


def test_coco_malformed_json_is_an_error(tmp_path):
    path = coco_set(tmp_path, [(1, 1, [1, 1, 5, 5])])
    path.write_text(path.read_text()[:-10])
    assert detection_layout(path) == "coco"
    with pytest.raises(HeadstartError, match=r"is not valid JSON \(.* at line 1, column \d+\)"):
        read_detection(path)


def test_coco_folder_with_two_jsons_asks_for_one(tmp_path):
    path = coco_set(tmp_path, [(1, 1, [1, 1, 5, 5])])
    (tmp_path / "other.json").write_text(path.read_text())
    with pytest.raises(HeadstartError, match=r"holds 2 COCO .json files \(annotations.json, "):
        read_detection(tmp_path)


# ---- bad input: YOLO -----------------------------------------------------------------------


def test_yolo_bad_lines_dropped_with_file_and_line(tmp_path):
    text = "\n".join(
        [
            "0 0.5 0.5 0.5 0.5",
            "0 0.5 0.5 0.5",
            "0 0.5 abc 0.5 0.5",
            "7 0.5 0.5 0.5 0.5",
            "1 32 24 16 16",
            "0 0.5 0.5 0.5 0.5 0.9",
            "1 1.004 0.5 0.2 0.2",  # within the tolerance: kept, then clipped
        ]
    )
    yolo_set(tmp_path, {"a": text})
    source = read_detection(tmp_path)
    expected = [(16.0, 12.0, 48.0, 36.0), (57.856, 19.2, 64.0, 28.8)]
    assert by_name(source)["a.jpg"].boxes == tuple(map(pytest.approx, expected))
    assert source.notes == [
        "labels/a.txt line 2: expected 5 values 'class cx cy w h', found 4: dropped",
        "labels/a.txt line 3: 'abc' is not a number: dropped",
        "labels/a.txt line 4: class index 7 not in classes.txt (2 classes): dropped",
        "labels/a.txt line 5: values outside [0, 1] (YOLO wants them divided by the image size): "
        "dropped",
        "labels/a.txt line 6: expected 5 values 'class cx cy w h', found 6: dropped",
        "labels/a.txt: 1 box outside the image clipped",
    ]


def test_yolo_label_without_image_is_skipped_and_image_without_label_is_negative(tmp_path):
    yolo_set(tmp_path, {"a": "0 0.5 0.5 0.5 0.5\n"}, names=("cat", "dog", "traffic light"))
    (tmp_path / "labels" / "ghost.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    write_image(tmp_path / "images" / "b.jpg")
    source = read_detection(tmp_path)
    assert by_name(source)["b.jpg"] == Boxes()
    assert [(s.id, s.reason) for s in source.skipped] == [
        (str(tmp_path / "labels" / "ghost.txt"), "image 'ghost.*' not found (looked in images/)")
    ]
    assert source.notes == [
        "2 classes have no boxes: 'dog', 'traffic light'",
        "1 image has no boxes: kept as negatives (1 without an annotation file)",
    ]


@pytest.mark.parametrize(
    "names_file, text, message",
    [
        (None, "", "no class names: add classes.txt"),
        ("classes.txt", "cat\n\ndog\n", "classes.txt' line 2 is blank"),
        ("data.yaml", "nc: 2\n", "data.yaml' holds no class names"),
    ],
)
def test_yolo_names_file_problems(tmp_path, names_file, text, message):
    yolo_set(tmp_path, {"a": "0 0.5 0.5 0.5 0.5\n"}, names_file="")
    if names_file:
        (tmp_path / names_file).write_text(text)
    assert detection_layout(tmp_path) == "yolo"
    with pytest.raises(HeadstartError, match=message):
        read_detection(tmp_path)


# ---- bad input: any layout -----------------------------------------------------------------


@pytest.mark.parametrize("side", [20000, 9000])
def test_too_large_image_skipped_with_its_size(tmp_path, side):
    voc_set(tmp_path, {"a": [("cat", 1, 1, 9, 9)]})
    huge = huge_png(tmp_path / "images" / "big.png", side)
    assert huge.stat().st_size < 100_000
    (tmp_path / "annotations" / "big.xml").write_text(voc_xml("big.png", [("cat", 1, 1, 9, 9)]))
    source = read_detection(tmp_path)
    assert [item.path.name for item in source.items] == ["a.jpg"]
    (skip,) = source.skipped
    assert skip.id == str(huge)
    assert skip.reason.startswith(f"image too large ({side}x{side} = ")


@pytest.mark.parametrize(
    "declared, box, note",
    [
        (
            (48, 64),  # the annotation tool showed the image upright
            (1, 1, 40, 60),
            "1 image with an EXIF orientation: boxes are taken in the upright image (as it "
            "displays, and as headstart decodes it)",
        ),
        (
            (64, 48),  # the tool showed the stored pixels (labelImg): the box is turned upright
            (1, 2, 40, 30),
            "annotations/a.xml: size 64x48 is the image as stored, before its EXIF rotation: "
            "boxes turned upright to match",
        ),
    ],
    ids=["annotated upright", "annotated as stored"],
)
def test_exif_rotated_image(tmp_path, declared, box, note):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 64x48, displayed (and decoded by headstart) 48x64
    write_image(tmp_path / "images" / "a.jpg", exif=exif)
    (tmp_path / "annotations").mkdir()
    xml = voc_xml("a.jpg", [("cat", *box)], size=declared)
    (tmp_path / "annotations" / "a.xml").write_text(xml)
    source = read_detection(tmp_path)
    upright = (1.0, 1.0, 40.0, 60.0) if declared == (48, 64) else (18.0, 1.0, 46.0, 40.0)
    assert by_name(source)["a.jpg"].boxes == (upright,)
    assert source.notes == [note]


@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_boxes_turn_with_the_pixels(orientation):
    """A white box drawn on the stored pixels lands where exif_transpose puts those pixels."""
    from PIL import ImageDraw, ImageOps

    from headstart.data.boxes import _Header, _turn_upright

    stored = Image.new("L", (64, 48))
    ImageDraw.Draw(stored).rectangle((5, 10, 19, 39), fill=255)  # inclusive: box (5, 10, 20, 40)
    stored.getexif()[0x0112] = orientation
    upright = ImageOps.exif_transpose(stored)
    assert upright.size == (48, 64)
    turned = _turn_upright([5, 10, 20, 40], _Header(64, 48, orientation))
    assert tuple(turned) == upright.getbbox()


def test_run_classes_drop_other_classes(tmp_path):
    voc_set(tmp_path, {"a": [("dog", 1, 1, 9, 9), ("dog", 2, 2, 9, 9), ("cat", 1, 1, 5, 5)]})
    source = read_detection(tmp_path, classes=["cat", "bird"])
    assert source.classes == ["cat", "bird"]
    assert by_name(source)["a.jpg"].labels == ("cat",)
    assert source.notes == [
        "2 boxes of class 'dog' not among the run's classes ['cat', 'bird'] dropped"
    ]


def test_notes_of_one_kind_are_capped(tmp_path):
    voc_set(tmp_path, {f"i{n:02d}": [("cat", -1, 1, 9, 9)] for n in range(25)})
    notes = read_detection(tmp_path).notes
    assert len(notes) == 21
    assert notes[0] == "annotations/i00.xml: 1 box outside the image clipped"
    assert notes[-1] == "... and 5 more boxes outside the image clipped not listed"


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda p: voc_set(p, {"a": [("cat", 1, 1, 9, 9)]}, images=[]),
            "has no usable images: all 1",
        ),
        (lambda p: voc_set(p, {"a": [], "b": []}), r"has 2 images but no boxes\. "),
        (lambda p: yolo_set(p, {"a": ""}) and (p / "labels" / "a.txt").unlink(), "no .txt label"),
        (lambda p: coco_set(p, [], images=()), "has no usable images: it holds no images"),
        (lambda p: None, "is not a detection data set: found 0 image files, no .xml"),
    ],
    ids=["no images", "no boxes", "no label files", "empty coco", "empty folder"],
)
def test_unusable_sets_are_one_line_errors(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(HeadstartError, match=message) as err:
        read_detection(tmp_path)
    assert "\n" not in str(err.value)


def test_run_classes_matching_no_box_is_an_error(tmp_path):
    voc_set(tmp_path, {"a": [("dog", 1, 1, 9, 9)]})
    with pytest.raises(HeadstartError, match=r"all its boxes are of classes \['dog'\]"):
        read_detection(tmp_path, classes=["cat"])


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(HeadstartError, match="does not exist"):
        read_detection(tmp_path / "nope")
    assert detection_layout(tmp_path / "nope") is None


def test_reading_boxes_imports_no_torch():
    code = "import sys, headstart.data.boxes; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- the real raccoon set ------------------------------------------------------------------


@pytest.mark.skipif(not RACCOON.is_dir(), reason=f"shared raccoon set not found at {RACCOON}")
def test_raccoon_set():
    assert detection_layout(RACCOON) == "voc"
    source = read_detection(RACCOON)
    assert len(source.items) == 200 and source.skipped == []
    assert source.classes == ["raccoon"]
    for item in source.items:
        width, height = Image.open(item.path).size
        assert len(item.target) >= 1
        for x1, y1, x2, y2 in item.target.boxes:
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height


def test_unreadable_files_are_skipped_with_a_reason(tmp_path):
    """Not-an-image files and broken images in the image folder, a label file that is not
    UTF-8 (its image is left out, not made a negative)."""
    yolo_set(tmp_path, {"a": "0 0.5 0.5 0.5 0.5\n", "b": "0 0.5 0.5 0.5 0.5\n"})
    (tmp_path / "labels" / "b.txt").write_bytes(b"0 0.5 0.5 0.5 \xff\n")
    (tmp_path / "images" / "notes.md").write_text("hello")
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png")
    source = read_detection(tmp_path)
    assert [item.path.name for item in source.items] == ["a.jpg"]
    assert sorted((Path(s.id).name, s.reason) for s in source.skipped) == [
        ("b.txt", "cannot read (not valid UTF-8); image left out"),
        ("broken.png", "not an image (cannot identify image file)"),
        ("notes.md", "not an image file (suffix .md)"),
    ]


def test_coco_bad_entries_noted(tmp_path):
    categories = [{"id": 1, "name": "cat"}, {"id": 2}, {"id": 3, "name": "cat"}]
    path = coco_set(tmp_path, [(1, 1, [1, 1, 5, 5]), (2, 3, [1, 1, 5, 5])], categories)
    data = json.loads(path.read_text())
    data["images"] += [{"id": 3, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}, {"x": 1}]
    data["annotations"].append({"id": 9, "image_id": 3, "category_id": 1, "bbox": [2, 2, 4, 4]})
    path.write_text(json.dumps(data))
    source = read_detection(path)
    assert source.classes == ["cat"]
    assert by_name(source)["a.jpg"].boxes == ((1.0, 1.0, 6.0, 6.0), (2.0, 2.0, 6.0, 6.0))
    assert by_name(source)["b.jpg"].labels == ("cat",)
    assert source.notes == [
        "annotations.json category 2: no integer 'id' and 'name', or a repeated id: ignored",
        "annotations.json declares 'cat' twice: their boxes are merged",
        "annotations.json: image 'a.jpg' is listed twice: its boxes are merged",
        "annotations.json image entries 4, 5: no 'id' and 'file_name', or a repeated id: ignored",
    ]


def test_coco_keys_found_across_read_chunks(tmp_path, monkeypatch):
    import headstart.data.boxes as boxes

    path = coco_set(tmp_path, [(1, 1, [1, 1, 5, 5])])
    path.write_bytes(b"\xef\xbb\xbf  " + path.read_bytes())  # a BOM and spaces first
    monkeypatch.setattr(boxes, "_CHUNK", 7)  # every key straddles a chunk boundary
    assert detection_layout(path) == "coco"
    assert len(read_detection(path).items) == 2


def test_data_yaml_form_unknown_without_pyyaml(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)
    yolo_set(tmp_path, {"a": "0 0.5 0.5 0.5 0.5\n"}, names_file="")
    (tmp_path / "data.yaml").write_text("names: {0: cat, 1: dog}\n")
    with pytest.raises(HeadstartError, match="read only with PyYAML; write 'names: \\[a, b\\]'"):
        read_detection(tmp_path)
