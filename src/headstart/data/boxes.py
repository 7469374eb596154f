"""Object-detection data: images with labelled boxes, read from Pascal VOC, COCO or YOLO layouts.

Reading never decodes pixels (sizes come from file headers), so 10,000 images read in seconds.
Every box or image left out is counted in `Source.notes` or listed in `Source.skipped`.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from headstart.data.images import MAX_PIXELS, _declared_size, _short, _too_large
from headstart.data.sources import Item, Skip, Source
from headstart.data.suffixes import IMAGE_SUFFIXES
from headstart.errors import HeadstartError


@dataclass(frozen=True)
class Boxes:
    """The boxes of one image: corners (x1, y1, x2, y2) in pixels of the original image, one
    class name each. No boxes: the image is a negative."""

    boxes: tuple[tuple[float, float, float, float], ...] = ()
    labels: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.boxes)


# ---- what the readers share ----------------------------------------------------------------

_EXPECTED_LAYOUTS = (
    "a Pascal VOC folder (annotations/*.xml beside images/ or JPEGImages/, or .xml files next to "
    "their images), a COCO .json with 'images', 'annotations' and 'categories' (or a folder "
    "holding one), or a YOLO folder (images/, labels/*.txt, and classes.txt or data.yaml)"
)
_VOC_XML_DIRS = ("Annotations", "annotations")
_VOC_IMAGE_DIRS = ("JPEGImages", "images")
_NAMES_FILES = ("classes.txt", "obj.names", "names.txt", "data.yaml", "data.yml")
_YOLO_TOLERANCE = 0.01  # labelling tools round normalised values just past 0 or 1
_CLIP_TOLERANCE = 1e-3  # pixels: float noise, not a box outside the image
_NOTE_LINES = 20  # per-file notes of one kind listed before the rest is summed up
_CHUNK = 1 << 20
_ROTATING = {5, 6, 7, 8}  # EXIF orientations that swap width and height

_Box = tuple[str, float, float, float, float]  # class name and four numbers as read


class _Notes:
    """Notes in the order made. Per-file notes of one kind are capped and the rest summed up, so
    one systematic problem in a large set gives a few examples and a total, not 10,000 lines."""

    def __init__(self) -> None:
        self._kinds: dict[str, list[tuple[str, int]]] = {}

    def add(self, line: str, kind: str = "", count: int = 1) -> None:
        self._kinds.setdefault(kind or line, []).append((line, count))

    def lines(self) -> list[str]:
        out = []
        for kind, entries in self._kinds.items():
            out += [line for line, _ in entries[:_NOTE_LINES]]
            rest = entries[_NOTE_LINES:]
            if rest:
                out.append(f"... and {sum(n for _, n in rest)} more {kind} not listed")
        return out


@dataclass
class _Image:
    """One image as its annotation describes it, before the boxes meet the image's size."""

    path: Path
    where: str = ""  # the annotation it comes from, for notes; "" when it has none
    boxes: list[_Box] = field(default_factory=list)
    declared: tuple[int, int] | None = None  # (width, height) the annotation states
    normalised: bool = False  # YOLO: (cx, cy, w, h) as fractions of the image size


@dataclass
class _Found:
    """What a layout reader found."""

    images: list[_Image] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    notes: _Notes = field(default_factory=_Notes)
    classes: list[str] = field(default_factory=list)  # declared, in the set's order (not VOC)


@dataclass
class _Tally:
    """Set-wide counts that become one summary note each."""

    off_class: Counter = field(default_factory=Counter)
    unannotated: int = 0  # negatives without an annotation file
    emptied: int = 0  # negatives whose every box was dropped
    negatives: int = 0
    rotated: int = 0


# ---- public API ----------------------------------------------------------------------------


def detection_layout(path: str | os.PathLike) -> str | None:
    """'voc', 'coco' or 'yolo' when `path` looks like a detection data set, else None.

    Cheap: looks at file names and at most the bytes of one .xml or the .json files, never at
    pixels."""
    path = Path(path)
    if path.is_file():
        return "coco" if _is_coco_json(path) else None
    if not path.is_dir():
        return None
    labels = path / "labels"
    # labels/*.txt are YOLO boxes; labels/*.png or *.nii.gz are masks (a segmentation set)
    if (path / "images").is_dir() and labels.is_dir() and _holds_yolo_labels(labels):
        return "yolo"
    if _voc_xml_dir(path) is not None:
        return "voc"
    if _coco_jsons(path):
        return "coco"
    return None


def read_detection(path: str | os.PathLike, classes: list[str] | None = None) -> Source:
    """Read a VOC, COCO or YOLO data set into a Source of images with Boxes targets.

    `classes` (a trained run's classes) fixes the class list: boxes of other classes are
    dropped and counted in a note. Raises HeadstartError when the set cannot be used at all."""
    path = Path(path)
    if not path.exists():
        raise HeadstartError(f"DATA '{path}' does not exist. Pass {_EXPECTED_LAYOUTS}.")
    layout = detection_layout(path)
    if layout is None:
        raise HeadstartError(
            f"DATA '{path}' is not a detection data set: {_describe(path)}. "
            f"Expected {_EXPECTED_LAYOUTS}."
        )
    readers = {"voc": _read_voc, "coco": _read_coco, "yolo": _read_yolo}
    found = readers[layout](path)
    fixed = None if classes is None else [str(name) for name in classes]
    return _finish(path, layout, found, fixed)


# ---- from found annotations to a Source ----------------------------------------------------


def _finish(path: Path, layout: str, found: _Found, fixed: list[str] | None) -> Source:
    tally, items = _Tally(), []
    for record in found.images:
        header = _read_header(record.path)
        if isinstance(header, str):
            found.skipped.append(Skip(str(record.path), header))
            continue
        boxes = _fit_boxes(record, header, fixed, tally, found.notes)
        items.append(Item(str(record.path), path=record.path, target=boxes))
    items.sort(key=lambda item: item.id)
    _check_usable(path, layout, items, found.skipped, fixed, tally)
    used = {name for item in items for name in item.target.labels}
    classes = fixed if fixed is not None else found.classes or sorted(used)
    _summary_notes(found.notes, tally, fixed, [c for c in classes if c not in used])
    return Source(
        "image",
        items,
        found.skipped,
        origin=str(path),
        classes=list(classes),
        notes=found.notes.lines(),
    )


def _fit_boxes(record: _Image, header: _Header, fixed, tally: _Tally, notes: _Notes) -> Boxes:
    """The record's boxes in pixels of the upright image, clipped to it; unusable ones counted
    and dropped."""
    width, height = header.upright
    turn = _annotated_as_stored(record, header, notes)
    tally.rotated += header.orientation != 1 and not turn
    kept, fates = [], Counter()
    for label, *numbers in record.boxes:
        if fixed is not None and label not in fixed:
            tally.off_class[label] += 1
            continue
        if record.normalised:
            numbers = _corners(numbers, width, height)
        if turn:
            numbers = _turn_upright(numbers, header)
        box, fate = _clip(numbers, width, height)
        fates[fate] += 1
        if box is not None:
            kept.append((box, label))
    _note_fates(record.where, fates, notes)
    if not kept:
        tally.negatives += 1
        tally.unannotated += not record.where
        tally.emptied += bool(record.where and record.boxes)
    return Boxes(tuple(box for box, _ in kept), tuple(label for _, label in kept))


def _annotated_as_stored(record: _Image, header: _Header, notes: _Notes) -> bool:
    """Whether the boxes were drawn on the image as stored, before its EXIF rotation: the
    annotation states the stored size of an image that displays turned (labelImg does this)."""
    if record.declared is None or record.declared == header.upright:
        return False
    declared = "x".join(map(str, record.declared))
    if record.declared == (header.width, header.height):  # differs from upright: a quarter turn
        notes.add(
            f"{record.where}: size {declared} is the image as stored, before its EXIF rotation: "
            "boxes turned upright to match",
            kind="annotations made on images as stored, before their EXIF rotation",
        )
        return True
    width, height = header.upright
    notes.add(
        f"{record.where}: size {declared} differs from the image's {width}x{height}; "
        "the image's size is used",
        kind="annotations whose size differs from their image",
    )
    return False


def _turn_upright(box, header: _Header) -> list[float]:
    """A box on the stored pixels, moved to where PIL's exif_transpose puts those pixels."""
    x1, y1, x2, y2 = box
    w, h = header.width, header.height
    return {
        5: [y1, x1, y2, x2],  # transpose
        6: [h - y2, x1, h - y1, x2],  # a quarter turn clockwise
        7: [h - y2, w - x2, h - y1, w - x1],  # transverse
        8: [y1, w - x2, y2, w - x1],  # a quarter turn anticlockwise
    }[header.orientation]


def _corners(values, width: int, height: int) -> list[float]:
    cx, cy, w, h = values
    return [
        (cx - w / 2) * width,
        (cy - h / 2) * height,
        (cx + w / 2) * width,
        (cy + h / 2) * height,
    ]


def _clip(box, width: int, height: int):
    """(clipped box or None, what happened: 'kept', 'clipped', 'empty' or 'outside')."""
    x1, y1, x2, y2 = box
    if not (x2 > x1 and y2 > y1):
        return None, "empty"
    clipped = (
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
        min(max(x2, 0.0), width),
        min(max(y2, 0.0), height),
    )
    if not (clipped[2] > clipped[0] and clipped[3] > clipped[1]):
        return None, "outside"
    moved = max(abs(a - b) for a, b in zip(box, clipped, strict=True))
    return tuple(float(v) for v in clipped), "clipped" if moved > _CLIP_TOLERANCE else "kept"


_FATES = {
    "clipped": "outside the image clipped",
    "empty": "with no area (x2 <= x1 or y2 <= y1) dropped",
    "outside": "entirely outside the image dropped",
}


def _note_fates(where: str, fates: Counter, notes: _Notes) -> None:
    for fate, text in _FATES.items():
        if fates[fate]:
            line = f"{where}: {_count(fates[fate], 'box')} {text}"
            notes.add(line, kind=f"boxes {text}", count=fates[fate])


def _check_usable(path, layout, items, skipped, fixed, tally: _Tally) -> None:
    if not items:
        detail = (
            f"all {len(skipped)} were skipped (first: {skipped[0].id}: {skipped[0].reason})"
            if skipped
            else "it holds no images"
        )
        raise HeadstartError(
            f"DATA '{path}' ({layout}) has no usable images: {detail}. "
            f"Expected {_EXPECTED_LAYOUTS}."
        )
    if any(len(item.target) for item in items):
        return
    if tally.off_class:
        why = f"; all its boxes are of classes {sorted(tally.off_class)}, not the run's {fixed}"
        fix = "Evaluate on data labelled with the run's classes."
    else:
        why = ""
        fix = "Check that the annotation files are the ones for these images and hold boxes."
    raise HeadstartError(
        f"DATA '{path}' ({layout}) has {_count(len(items), 'image')} but no boxes{why}. {fix}"
    )


def _summary_notes(notes: _Notes, tally: _Tally, fixed, unused: list[str]) -> None:
    for label, n in sorted(tally.off_class.items()):
        notes.add(
            f"{_count(n, 'box')} of class {label!r} not among the run's classes {fixed} dropped"
        )
    if unused and fixed is None:
        verb = "has" if len(unused) == 1 else "have"
        names = ", ".join(map(repr, unused))
        notes.add(f"{_count(len(unused), 'class')} {verb} no boxes: {names}")
    if tally.negatives:
        kinds = [
            (tally.unannotated, "without an annotation file"),
            (tally.emptied, "whose every box was dropped"),
        ]
        why = [f"{n} {text}" for n, text in kinds if n]
        detail = f" ({', '.join(why)})" if why else ""
        verb = "has" if tally.negatives == 1 else "have"
        notes.add(f"{_count(tally.negatives, 'image')} {verb} no boxes: kept as negatives{detail}")
    if tally.rotated:
        notes.add(
            f"{_count(tally.rotated, 'image')} with an EXIF orientation: boxes are taken in the "
            "upright image (as it displays, and as headstart decodes it)"
        )


@dataclass(frozen=True)
class _Header:
    """An image file's stored size and EXIF orientation (1: stored upright)."""

    width: int
    height: int
    orientation: int = 1

    @property
    def upright(self) -> tuple[int, int]:
        """(width, height) once the orientation is applied, as headstart decodes the image."""
        if self.orientation in _ROTATING:
            return self.height, self.width
        return self.width, self.height


def _read_header(path: Path) -> _Header | str:
    """The image's header, or why the image cannot be used. Pixels are never decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                size, orientation = img.size, _orientation(img)
    except Image.DecompressionBombError:
        size, orientation = _declared_size(path), 1
        if size is None:
            return "image too large (its header is refused by PIL)"
    except FileNotFoundError:
        return "file not found"
    except Image.UnidentifiedImageError:
        return "not an image (cannot identify image file)"
    except OSError as err:
        return f"cannot read ({err.strerror or _short(err)})"
    except Exception as err:  # plugins raise SyntaxError, ValueError, struct.error on bad headers
        return f"truncated or corrupt image ({_short(err)})"
    if size[0] * size[1] > MAX_PIXELS:
        return _too_large(*size)
    return _Header(*size, orientation)


def _orientation(img: Image.Image) -> int:
    if "exif" not in img.info:  # asking PIL for it anyway may decode the image (PNG)
        return 1
    try:
        orientation = img.getexif().get(0x0112)
    except Exception:  # a broken EXIF block says nothing about the pixels
        return 1
    return orientation if orientation in range(1, 9) else 1


# ---- Pascal VOC ----------------------------------------------------------------------------


def _holds_yolo_labels(folder: Path) -> bool:
    """A .txt label file, or nothing at all (every image a negative)."""
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if not e.name.startswith(".")]
    return not names or any(name.lower().endswith(".txt") for name in names)


def _voc_xml_dir(root: Path) -> Path | None:
    """The folder of VOC .xml files: annotations/ (any case) or `root` itself."""
    for folder in [root / name for name in _VOC_XML_DIRS] + [root]:
        if folder.is_dir():
            xmls = _files(folder, {".xml"})
            if xmls and _looks_like_voc(xmls[0]):
                return folder
    return None


def _looks_like_voc(xml: Path) -> bool:
    try:
        with xml.open("rb") as fp:
            return b"<annotation" in fp.read(4096)
    except OSError:
        return False


def _read_voc(root: Path) -> _Found:
    xml_dir = _voc_xml_dir(root)
    folders = [root / name for name in _VOC_IMAGE_DIRS if (root / name).is_dir()] or [xml_dir]
    found = _Found()
    images = [p for f in folders for p in _image_files(f, found.skipped, ignore={".xml"})]
    looked = ", ".join((_rel(f, root) or ".") + "/" for f in folders)
    voc = _Voc(root, _ImageIndex(images), looked, found)
    difficult = sum(voc.read(xml) for xml in _files(xml_dir, {".xml"}))
    found.images += [_Image(path) for path in images if path not in voc.taken]
    if difficult:
        found.notes.add(f"{_count(difficult, 'box')} marked difficult: kept as ordinary boxes")
    return found


@dataclass
class _Voc:
    """Reads .xml files one at a time, remembering which images they took."""

    root: Path
    index: _ImageIndex
    looked: str  # the image folders, for reasons
    found: _Found
    taken: dict[Path, str] = field(default_factory=dict)  # image -> the .xml naming it

    def read(self, xml: Path) -> int:
        """Add the image `xml` annotates, or skip it; returns its count of difficult boxes."""
        where = _rel(xml, self.root)
        try:
            tree = ET.parse(xml).getroot()
        except (ET.ParseError, OSError) as err:
            return self._skip_unreadable(xml, where, err)
        if tree.tag != "annotation":
            return self._skip(xml, f"not a VOC annotation (root element <{tree.tag}>)")
        filename = (tree.findtext("filename") or "").strip()
        image = _voc_image(self.index, filename, xml, where, self.found.notes)
        if image is None:
            missing = filename or xml.stem + ".*"
            return self._skip(xml, f"image '{missing}' not found (looked in {self.looked})")
        if image in self.taken:
            return self._skip(
                xml, f"image '{image.name}' is already annotated by {self.taken[image]}"
            )
        self.taken[image] = where
        boxes, difficult = _voc_boxes(tree, where, self.found.notes)
        self.found.images.append(_Image(image, where, boxes, _voc_size(tree)))
        return difficult

    def _skip(self, xml: Path, reason: str) -> int:
        self.found.skipped.append(Skip(str(xml), reason))
        return 0

    def _skip_unreadable(self, xml: Path, where: str, err: Exception) -> int:
        own = self.index.by_stem.get(xml.stem)
        if own is None:
            return self._skip(xml, f"malformed XML ({_short(err)})")
        self.taken.setdefault(own, where)  # not a negative: its boxes exist but cannot be read
        return self._skip(xml, f"malformed XML ({_short(err)}); image '{own.name}' left out")


def _voc_image(index: _ImageIndex, filename: str, xml: Path, where: str, notes: _Notes):
    """The image by <filename>, else by the .xml's own stem. When <filename> names another
    image than the stem does (renamed files, a copied annotation), the stem wins: labelling
    tools save each .xml under its image's name, and <filename> is the part that goes stale."""
    named = index.by_name.get(Path(filename.replace("\\", "/")).name) if filename else None
    own = index.by_stem.get(xml.stem)
    if named is None or named.stem == xml.stem or own is None:
        return named or own
    notes.add(
        f"{where}: <filename> '{filename}' names another image than the file's own name; "
        f"{own.name} is used",
        kind="annotations whose <filename> is not their own name",
    )
    return own


def _voc_boxes(tree: ET.Element, where: str, notes: _Notes) -> tuple[list[_Box], int]:
    boxes, difficult = [], 0
    for number, obj in enumerate(tree.findall("object"), start=1):
        box, problem = _voc_object(obj)
        if problem:
            notes.add(f"{where}: object {number} {problem}: dropped", kind="malformed objects")
            continue
        boxes.append(box)
        difficult += (obj.findtext("difficult") or "").strip() == "1"
    return boxes, difficult


def _voc_object(obj: ET.Element) -> tuple[_Box | None, str | None]:
    name = (obj.findtext("name") or "").strip()
    if not name:
        return None, "has no <name>"
    bndbox = obj.find("bndbox")
    if bndbox is None:
        return None, "has no <bndbox>"
    values = []
    for key in ("xmin", "ymin", "xmax", "ymax"):
        text = (bndbox.findtext(key) or "").strip()
        value = _number(text)
        if value is None:
            return None, f"has <{key}> {text!r}, not a number" if text else f"has no <{key}>"
        values.append(value)
    return (name, *values), None


def _voc_size(tree: ET.Element) -> tuple[int, int] | None:
    size = tree.find("size")
    if size is None:
        return None
    width, height = _number(size.findtext("width")), _number(size.findtext("height"))
    if not width or not height or width < 0 or height < 0:  # 0 or absent: nothing stated
        return None
    return int(width), int(height)


# ---- YOLO ----------------------------------------------------------------------------------


def _read_yolo(root: Path) -> _Found:
    found = _Found()
    names_file = _names_file(root)
    names = _read_names(names_file)
    found.classes = _unique([names[i] for i in sorted(names)], _rel(names_file, root), found.notes)
    images_dir, labels_dir = root / "images", root / "labels"
    labels = [p for p in _files(labels_dir, {".txt"}, recursive=True) if p != names_file]
    if not labels:
        raise HeadstartError(
            f"DATA '{root}' has images/ but no .txt label files in labels/. "
            f"Expected {_EXPECTED_LAYOUTS}."
        )
    reader = _Yolo(root, names, _rel(names_file, root), found)
    used = set()
    for image in _image_files(images_dir, found.skipped, recursive=True):
        label = labels_dir / image.relative_to(images_dir).with_suffix(".txt")
        used.add(label)
        reader.read(image, label)
    for label in labels:
        if label not in used:
            stem = _rel(label.with_suffix(".*"), labels_dir)
            found.skipped.append(Skip(str(label), f"image '{stem}' not found (looked in images/)"))
    return found


@dataclass
class _Yolo:
    """Reads one label file per image: `class cx cy w h` lines, normalised to [0, 1]."""

    root: Path
    names: dict[int, str]
    names_where: str
    found: _Found

    def read(self, image: Path, label: Path) -> None:
        if not label.is_file():
            self.found.images.append(_Image(image))  # no label file: a negative
            return
        where = _rel(label, self.root)
        try:
            text = label.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as err:
            reason = "not valid UTF-8" if isinstance(err, UnicodeDecodeError) else _short(err)
            self.found.skipped.append(Skip(str(label), f"cannot read ({reason}); image left out"))
            return
        boxes, problems = [], {}
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                box, problem = self._line(line)
                if problem:
                    problems.setdefault(problem, []).append(number)
                else:
                    boxes.append(box)
        for problem, numbers in problems.items():
            line = f"{where} {_listing('line', numbers)}: {problem}: dropped"
            self.found.notes.add(line, kind="malformed label lines", count=len(numbers))
        self.found.images.append(_Image(image, where, boxes, normalised=True))

    def _line(self, line: str) -> tuple[_Box | None, str | None]:
        fields = line.split()
        if len(fields) != 5:
            return None, f"expected 5 values 'class cx cy w h', found {len(fields)}"
        values = [_number(text) for text in fields]
        for text, value in zip(fields, values, strict=True):
            if value is None:
                return None, f"{text!r} is not a number"
        index, *box = values
        if not index.is_integer() or int(index) not in self.names:
            n = len(self.names)
            return None, f"class index {fields[0]} not in {self.names_where} ({n} classes)"
        if not all(-_YOLO_TOLERANCE <= v <= 1 + _YOLO_TOLERANCE for v in box):
            return None, "values outside [0, 1] (YOLO wants them divided by the image size)"
        return (self.names[int(index)], *box), None


def _names_file(root: Path) -> Path:
    for folder in (root, root / "labels"):
        for name in _NAMES_FILES:
            if (folder / name).is_file():
                return folder / name
    raise HeadstartError(
        f"DATA '{root}' has images/ and labels/ but no class names: add classes.txt (one name per "
        "line, in class-index order) or data.yaml with 'names: [a, b]'."
    )


def _read_names(path: Path) -> dict[int, str]:
    """{class index: name} from a names file (one per line) or a data.yaml."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise HeadstartError(f"DATA '{path}' cannot be read ({_short(err)}).") from err
    if path.suffix.lower() in (".yaml", ".yml"):
        return _names_dict(_yaml_names(text, path), path)
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line.strip():  # every later class index would shift by one
            raise HeadstartError(
                f"DATA '{path}' line {number} is blank; write one class name per line, in "
                "class-index order."
            )
    return _names_dict(lines, path)


def _names_dict(raw, path: Path) -> dict[int, str]:
    if isinstance(raw, list):
        raw = dict(enumerate(raw))
    names = {}
    for key, value in raw.items() if isinstance(raw, dict) else ():
        index = key if isinstance(key, int) else int(key) if str(key).isdigit() else None
        if index is None or not str(value).strip():
            raise HeadstartError(
                f"DATA '{path}' has a class {key!r}: {value!r}; expected 'index: name'."
            )
        names[index] = str(value).strip()
    if not names:
        raise HeadstartError(
            f"DATA '{path}' holds no class names. Write 'names: [a, b]' (in class-index order) "
            "in data.yaml, or one name per line in classes.txt."
        )
    return names


def _yaml_names(text: str, path: Path):
    """The `names:` value of a data.yaml: PyYAML where installed, else the two common forms."""
    try:
        import yaml
    except ImportError:
        names = _tiny_yaml_names(text)
        if names is None and re.search(r"^names\s*:", text, re.MULTILINE):
            raise HeadstartError(
                f"DATA '{path}' writes 'names:' in a form read only with PyYAML; write "
                "'names: [a, b]' or install PyYAML."
            ) from None
        return names
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise HeadstartError(f"DATA '{path}' is not valid YAML ({_short(err)}).") from err
    return data.get("names") if isinstance(data, dict) else None


def _tiny_yaml_names(text: str):
    """`names: [a, b]` (one line or several) or `names:` then `  0: a` or `  - a` lines."""
    lines = text.splitlines()
    for at, line in enumerate(lines):
        found = re.match(r"names\s*:(.*)$", line)
        if found:
            return _tiny_yaml_value(found.group(1).strip(), lines[at + 1 :])
    return None


def _tiny_yaml_value(rest: str, following: list[str]):
    if rest.startswith("["):
        for line in following:
            if "]" in rest:
                break
            rest += " " + line.strip()
        inner = rest[1 : rest.find("]")] if "]" in rest else ""
        return [_unquote(v) for v in re.findall(r"'[^']*'|\"[^\"]*\"|[^,\s][^,]*", inner)]
    if rest and not rest.startswith("#"):
        return None
    entries: dict[int, str] = {}
    for line in following:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[:1].isspace():
            break
        entry = line.strip()
        pair = re.match(r"(\d+)\s*:\s*(.*)$", entry)
        if entry.startswith("- "):
            entries[len(entries)] = _unquote(entry[2:])
        elif pair:
            entries[int(pair.group(1))] = _unquote(pair.group(2))
        else:
            return None
    return entries or None


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value.split(" #")[0].strip()


# ---- COCO ----------------------------------------------------------------------------------


def _is_coco_json(path: Path) -> bool:
    """A .json object holding "images" and "annotations" keys, found by scanning its bytes: a
    COCO file can be hundreds of MB and the keys lie anywhere in it."""
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    keys = {b'"images"', b'"annotations"'}
    try:
        with path.open("rb") as fp:
            chunk = fp.read(_CHUNK)
            if not chunk.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
                return False
            tail = b""
            while chunk and keys:
                window = tail + chunk
                keys = {key for key in keys if key not in window}
                tail, chunk = window[-16:], fp.read(_CHUNK)
    except OSError:
        return False
    return not keys


def _coco_jsons(root: Path) -> list[Path]:
    folders = [root] + [root / name for name in _VOC_XML_DIRS if (root / name).is_dir()]
    return [p for folder in folders for p in _files(folder, {".json"}) if _is_coco_json(p)]


def _read_coco(path: Path) -> _Found:
    json_path = path if path.is_file() else _one_coco_json(path)
    root = path if path.is_dir() else path.parent
    where = _rel(json_path, root)
    data = _load_coco(json_path)
    found = _Found()
    categories = _coco_categories(data["categories"], json_path, found)
    by_id = _coco_images(data["images"], json_path, root, found)
    _coco_annotations(data["annotations"], by_id, categories, where, found.notes)
    _note_unlisted(found, where, root)
    return found


def _one_coco_json(root: Path) -> Path:
    jsons = _coco_jsons(root)
    if len(jsons) > 1:
        listed = ", ".join(_rel(p, root) for p in jsons)
        raise HeadstartError(
            f"DATA '{root}' holds {len(jsons)} COCO .json files ({listed}); pass the one to read "
            "as DATA."
        )
    return jsons[0]


def _load_coco(path: Path) -> dict:
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise HeadstartError(f"DATA '{path}' is not valid UTF-8; save it as UTF-8.") from err
    except json.JSONDecodeError as err:
        raise HeadstartError(
            f"DATA '{path}' is not valid JSON ({err.msg} at line {err.lineno}, column "
            f"{err.colno}); fix it or export the COCO file again."
        ) from err
    except OSError as err:
        raise HeadstartError(f"DATA '{path}' cannot be read ({_short(err)}).") from err
    missing = [k for k in ("images", "annotations", "categories") if not _is_list(data, k)]
    if missing:
        raise HeadstartError(
            f"DATA '{path}' is not a COCO detection file: {', '.join(map(repr, missing))} "
            "missing or not a list. Expected 'images', 'annotations' and 'categories' lists."
        )
    return data


def _is_list(data, key: str) -> bool:
    return isinstance(data, dict) and isinstance(data.get(key), list)


def _coco_categories(raw: list, json_path: Path, found: _Found) -> dict[int, str]:
    """{category id: name}; classes in id order, so ids that skip numbers leave no holes."""
    by_id: dict[int, str] = {}
    bad = []
    for number, category in enumerate(raw, start=1):
        cid = category.get("id") if isinstance(category, dict) else None
        name = str(category.get("name") or "").strip() if isinstance(category, dict) else ""
        if type(cid) is not int or not name or cid in by_id:
            bad.append(number)
        else:
            by_id[cid] = name
    where = json_path.name
    if bad:
        found.notes.add(
            f"{where} {_listing('category', bad)}: no integer 'id' and 'name', or a repeated "
            "id: ignored"
        )
    if not by_id:
        raise HeadstartError(
            f"DATA '{json_path}' has no usable 'categories'; each needs an integer 'id' and a "
            "'name'."
        )
    found.classes = _unique([by_id[i] for i in sorted(by_id)], where, found.notes)
    return by_id


def _coco_images(raw: list, json_path: Path, root: Path, found: _Found) -> dict:
    """{image id: its record, or None when the file is missing (the skip says so)}."""
    bases = _coco_bases(json_path, root)
    looked = ", ".join((_rel(b, root) or ".") + "/" for b in bases)
    where = _rel(json_path, root)
    by_id, by_path, bad = {}, {}, []
    for number, entry in enumerate(raw, start=1):
        image_id, file_name = _coco_image_keys(entry)
        if image_id is None or image_id in by_id:
            bad.append(number)
            continue
        path = _find_file(file_name, bases)
        if path is None:
            found.skipped.append(
                Skip(str(json_path), f"image '{file_name}' not found (looked in {looked})")
            )
            by_id[image_id] = None
            continue
        if path in by_path:
            found.notes.add(f"{where}: image '{file_name}' is listed twice: its boxes are merged")
        else:
            declared = _coco_size(entry)
            by_path[path] = _Image(path, f"{where} image '{file_name}'", declared=declared)
        by_id[image_id] = by_path[path]
    if bad:
        found.notes.add(
            f"{where} {_listing('image entry', bad)}: no 'id' and 'file_name', or a repeated "
            "id: ignored"
        )
    found.images = list(by_path.values())
    return by_id


def _coco_image_keys(entry) -> tuple[int | str | None, str]:
    if not isinstance(entry, dict):
        return None, ""
    image_id, file_name = entry.get("id"), entry.get("file_name")
    if not isinstance(image_id, int | str) or not isinstance(file_name, str) or not file_name:
        return None, ""
    return image_id, file_name


def _coco_bases(json_path: Path, root: Path) -> list[Path]:
    """Where `file_name`s may be relative to: the json's folder or an images/ folder beside it,
    the folder given, and COCO's own layout (annotations/instances_val2017.json, val2017/)."""
    split = re.sub(r"^instances_", "", json_path.stem)
    tops = [json_path.parent, root]
    if json_path.parent.name.lower() == "annotations":
        tops.append(json_path.parent.parent)
    bases = [p for top in tops for p in (top, top / "images", top / split, top / "images" / split)]
    return [p for p in dict.fromkeys(bases) if p.is_dir()]


def _find_file(file_name: str, bases: list[Path]) -> Path | None:
    for base in bases:
        path = base / file_name.replace("\\", "/")
        if path.is_file():
            return path
    return None


def _coco_size(entry: dict) -> tuple[int, int] | None:
    width, height = entry.get("width"), entry.get("height")
    if type(width) is int and type(height) is int and width > 0 and height > 0:
        return width, height
    return None


def _coco_annotations(raw: list, by_id: dict, categories: dict, where: str, notes: _Notes):
    crowd = orphan = 0
    problems: dict[str, list] = {}
    for number, ann in enumerate(raw, start=1):
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        if not isinstance(ann, dict):
            problems.setdefault("not a JSON object", []).append(f"#{number}")
        elif ann.get("iscrowd") in (1, True):
            crowd += 1
        elif not isinstance(image_id, int | str) or image_id not in by_id:
            orphan += 1
        elif by_id[image_id] is not None:  # None: its image is missing, and skipped
            box, problem = _coco_box(ann, categories)
            if problem:
                problems.setdefault(problem, []).append(ann.get("id", f"#{number}"))
            else:
                by_id[image_id].boxes.append(box)
    if crowd:
        notes.add(f"{where}: {_count(crowd, 'crowd annotation')} (iscrowd 1) dropped")
    if orphan:
        notes.add(
            f"{where}: {_count(orphan, 'annotation')} with an image_id not in 'images' dropped"
        )
    for problem, ids in problems.items():
        notes.add(f"{where} {_listing('annotation', ids)}: {problem}: dropped")


def _coco_box(ann: dict, categories: dict) -> tuple[_Box | None, str | None]:
    cid = ann.get("category_id")
    if type(cid) is not int or cid not in categories:
        return None, f"category_id {cid!r} is not in 'categories'"
    bbox = ann.get("bbox")
    values = [_json_number(v) for v in bbox] if isinstance(bbox, list) else []
    if len(values) != 4 or None in values:
        return None, "'bbox' is not [x, y, width, height] numbers"
    x, y, width, height = values
    return (categories[cid], x, y, x + width, y + height), None


def _note_unlisted(found: _Found, where: str, root: Path) -> None:
    """Image files beside the listed ones but not in the json: said, not read."""
    listed = {record.path for record in found.images}
    folders = {path.parent for path in listed}
    extra = sum(1 for folder in folders for p in _files(folder, IMAGE_SUFFIXES) if p not in listed)
    if extra:
        notes = found.notes
        notes.add(f"{_count(extra, 'image file')} beside the listed ones not in {where}: ignored")


# ---- small helpers -------------------------------------------------------------------------


class _ImageIndex:
    """Image files found by file name or by stem (the first in sorted order wins)."""

    def __init__(self, paths: list[Path]):
        self.by_name: dict[str, Path] = {}
        self.by_stem: dict[str, Path] = {}
        for path in paths:
            self.by_name.setdefault(path.name, path)
            self.by_stem.setdefault(path.stem, path)


def _files(folder: Path, suffixes=None, recursive: bool = False) -> list[Path]:
    """Visible files in `folder` (with one of `suffixes`, any case), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for name in filenames:
            suffix = os.path.splitext(name)[1].lower()
            if not name.startswith(".") and (suffixes is None or suffix in suffixes):
                found.append(Path(dirpath) / name)
    return sorted(found)


def _image_files(folder: Path, skipped: list[Skip], ignore=(), recursive=False) -> list[Path]:
    """Image files in `folder`; other files are skipped with their suffix, except `ignore`d."""
    images = []
    for path in _files(folder, recursive=recursive):
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            images.append(path)
        elif suffix not in ignore:
            skipped.append(Skip(str(path), f"not an image file (suffix {suffix or 'none'})"))
    return images


def _unique(names: list[str], where: str, notes: _Notes) -> list[str]:
    """Declared class names once each: a name declared twice merges its boxes."""
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        notes.add(f"{where} declares {', '.join(map(repr, twice))} twice: their boxes are merged")
    return list(dict.fromkeys(names))


def _describe(path: Path) -> str:
    """What a folder holds, for the error saying it is no detection set."""
    if path.is_file():
        if path.suffix.lower() == ".json":
            return "a .json file without 'images' and 'annotations' keys"
        return f"a {path.suffix or 'suffix-less'} file"
    suffixes = Counter(p.suffix.lower() for p in _files(path, recursive=True)[:100_000])
    images = sum(n for suffix, n in suffixes.items() if suffix in IMAGE_SUFFIXES)
    parts = [
        f"{_count(images, 'image file')}",
        f"{suffixes['.xml']} .xml (none a VOC annotation)" if suffixes[".xml"] else "no .xml",
        f"{suffixes['.json']} .json (none COCO)" if suffixes[".json"] else "no .json",
        "no images/ and labels/ folders",
    ]
    return "found " + ", ".join(parts)


def _number(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _json_number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _listing(noun: str, values: list) -> str:
    """'line 3' or 'lines 3, 7, 9 and 4 more'."""
    shown = ", ".join(str(v) for v in values[:5])
    more = f" and {len(values) - 5} more" if len(values) > 5 else ""
    return f"{_plural(noun, len(values))} {shown}{more}"


def _count(n: int, noun: str) -> str:
    return f"{n} {_plural(noun, n)}"


def _plural(noun: str, n: int) -> str:
    if n == 1:
        return noun
    if noun.endswith("y"):
        return noun[:-1] + "ies"
    return noun + ("es" if noun.endswith(("s", "x")) else "s")


def _rel(path: Path, root: Path) -> str:
    try:
        relative = path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
    return "" if relative == "." else relative
