"""Segmentation data: images with class-index masks, as 2-D image folders or as 3-D volumes
(NIfTI files, DICOM series) with label volumes; and the inputs `headstart predict` segments.

Reading decodes every mask once (masks are small) to check its size and values, so a bad mask is
a skip at read time, not a crash in training. Image pixels are not decoded: their sizes come from
file headers. Every file left out is a Skip naming it; every repair is a note naming it.
"""

from __future__ import annotations

import functools
import os
import re
import uuid
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from headstart.data.boxes import _Notes
from headstart.data.images import (
    _bomb_reason,
    _check_file,
    _check_size,
    _short,
    opened_image,
    to_rgb,
)
from headstart.data.sources import Item, Skip, Source
from headstart.data.suffixes import IMAGE_SUFFIXES
from headstart.errors import HeadstartError, UnreadableItem

_IMAGE_DIRS = ("images", "image", "imgs")
_MASK_DIRS = ("masks", "mask", "labels", "label", "annotations")
_VOLUME_DIRS = ("images", "image", "imagesTr", "volumes")
_LABEL_DIRS = ("labels", "label", "labelsTr", "masks")
_MASK_ENDINGS = ("_mask", "_masks", "-mask")  # 'a_mask.png' is the mask of 'a.jpg'
_CHANNEL = "_0000"  # nnU-Net names image volumes 'case_0000.nii.gz' beside labels 'case.nii.gz'
_DICOM_SUFFIXES = (".dcm", ".dicom")
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_DEEP_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}
_INDEX_MODES = {"1", "L", "P", "I;16", "I;16B", "I;16L", "I;16N", "I"}
_CACHED_VOLUMES = 4  # decoded volumes kept: reading slice after slice decodes each file once
_PERCENTILE_SAMPLE = 2_000_000  # voxels the intensity percentiles are computed on
_BINARY_NAMES = ["background", "foreground"]
_GIVEN = "the classes given"
_EXPECTED = (
    "a folder with images/ (or image/, imgs/) and masks/ (or mask/, labels/, label/, "
    "annotations/) holding image files with the same names (pixel value = class index, or "
    "0/255), or a folder with images/ (or image/, imagesTr/, volumes/) of .nii/.nii.gz volumes "
    "or DICOM series folders and labels/ (or label/, labelsTr/, masks/) of .nii/.nii.gz label "
    "volumes with the same names"
)


@dataclass(frozen=True)
class Mask:
    """Where the class-index mask of one image or slice comes from (a segmentation target)."""

    path: Path  # the mask file (2-D image) or the label volume (NIfTI)
    slice: int | None = None  # the slice index in a label volume; None: a 2-D mask file
    binary255: bool = False  # a 0/255 mask: 255 reads as class 1


# ---- layouts -------------------------------------------------------------------------------


def segmentation_layout(path) -> str | None:
    """'folders' (2-D images + masks), 'volumes' (NIfTI files or DICOM series + label volumes),
    or None. Cheap: looks at folder and file names only."""
    path = Path(path)
    if not path.is_dir():
        return None
    if _volume_dirs(path):
        return "volumes"
    if _folder_dirs(path):
        return "folders"
    return None


def _volume_dirs(root: Path) -> tuple[Path, Path] | None:
    images = _child_dir(root, _VOLUME_DIRS, _holds_volumes)
    labels = _child_dir(root, _LABEL_DIRS, lambda d: _any_entry(d, _is_nifti))
    return (images, labels) if images and labels else None


def _folder_dirs(root: Path) -> tuple[Path, Path] | None:
    """A labels/ folder of .txt files is YOLO detection: it holds no image, so it is no mask
    folder."""
    images = _child_dir(root, _IMAGE_DIRS, lambda d: _any_entry(d, _is_image))
    masks = _child_dir(root, _MASK_DIRS, lambda d: _any_entry(d, _is_image))
    return (images, masks) if images and masks else None


def _child_dir(root: Path, names, holds) -> Path | None:
    """The first of `names` (any case) that is a folder under `root` and `holds` what it must."""
    folders = {p.name.lower(): p for p in _visible(root) if p.is_dir()}
    for name in names:
        folder = folders.get(name.lower())
        if folder is not None and holds(folder):
            return folder
    return None


def _holds_volumes(folder: Path) -> bool:
    return _any_entry(folder, lambda p: _is_nifti(p) or p.is_dir())


def _any_entry(folder: Path, test) -> bool:
    with os.scandir(folder) as entries:
        return any(not e.name.startswith(".") and test(Path(e.path)) for e in entries)


# ---- reading a training set ----------------------------------------------------------------


@dataclass
class _Group:
    """Items whose masks share one set of values: one 2-D image, or every slice of a volume."""

    id: str  # what a skip names
    mask: Path
    items: list[Item]
    values: np.ndarray  # the distinct mask values


@dataclass
class _Found:
    groups: list[_Group] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    notes: _Notes = field(default_factory=_Notes)

    def skip(self, path, reason: str) -> None:
        self.skipped.append(Skip(str(path), reason))


def read_segmentation(path, classes: list[str] | None = None) -> Source:
    """Items (one per 2-D image, or one per slice of a volume) with target=Mask; Source.classes
    set (names); Source.skipped and Source.notes filled; modality "image".

    `classes` (a trained run's classes) fixes the class names; masks with other values are
    skipped. Raises HeadstartError when the set cannot be used at all."""
    path = Path(path)
    if not path.exists():
        raise HeadstartError(f"DATA '{path}' does not exist. Pass {_EXPECTED}.")
    layout = segmentation_layout(path)
    if layout is None:
        raise HeadstartError(
            f"DATA '{path}' is not a segmentation data set: {_describe(path)}. "
            f"Expected {_EXPECTED}."
        )
    found = _Found()
    if layout == "folders":
        _read_folders(path, *_folder_dirs(path), found)
    else:
        _read_volumes(path, *_volume_dirs(path), found)
    return _finish(path, layout, found, classes)


def _read_folders(root: Path, image_dir: Path, mask_dir: Path, found: _Found) -> None:
    masks = _mask_index(mask_dir, found)
    used = set()
    for image in _visible(image_dir):
        if image.is_dir():
            found.skip(image, f"folder inside {image_dir.name}/: not read; put its images directly")
            continue
        if not _is_image(image):
            found.skip(image, f"not an image file (suffix {image.suffix.lower() or 'none'})")
            continue
        mask = _find_mask(image.stem, masks)
        if mask is None:
            found.skip(
                image,
                f"no mask named {image.stem}.* in {mask_dir}; add one (an all-zero mask marks a "
                "negative: an image with nothing to segment)",
            )
            continue
        used.add(mask)
        _add_image(root, image, mask, found)
    for mask in sorted(set(masks.values()) - used):
        found.notes.add(
            f"{mask}: mask without an image named {_stem_of_mask(mask.stem)}.* in {image_dir}: "
            "ignored",
            kind="masks without an image",
        )


def _mask_index(mask_dir: Path, found: _Found) -> dict[str, Path]:
    """{stem: mask file}; other files in the mask folder are skipped."""
    by_stem: dict[str, Path] = {}
    for path in _visible(mask_dir):
        if path.is_dir() or not _is_image(path):
            what = "a folder" if path.is_dir() else f"suffix {path.suffix.lower() or 'none'}"
            found.skip(path, f"not a mask image file ({what}) in {mask_dir.name}/")
        elif path.stem in by_stem:
            found.notes.add(
                f"{path}: a second mask named {path.stem}.* ({by_stem[path.stem].name} is used): "
                "ignored"
            )
        else:
            by_stem[path.stem] = path
    return by_stem


def _find_mask(stem: str, masks: dict[str, Path]) -> Path | None:
    for name in (stem, *(stem + ending for ending in _MASK_ENDINGS)):
        if name in masks:
            return masks[name]
    return None


def _stem_of_mask(stem: str) -> str:
    for ending in _MASK_ENDINGS:
        if stem.endswith(ending):
            return stem[: -len(ending)]
    return stem


def _add_image(root: Path, image: Path, mask: Path, found: _Found) -> None:
    header = _image_header(image)
    if isinstance(header, str):
        found.skip(image, header)
        return
    (width, height), mode = header
    try:
        array = _decode_mask(mask)
    except UnreadableItem as err:
        found.skip(image, f"mask '{mask}': {err}")
        return
    if array.shape != (height, width):
        found.skip(
            image,
            f"mask '{mask}' is {array.shape[1]}x{array.shape[0]} but its image is "
            f"{width}x{height}; a mask must have its image's size",
        )
        return
    if mode in _DEEP_MODES:
        bits = "16-bit" if mode.startswith("I;16") else f"{mode}-mode"
        found.notes.add(
            f"{image}: {bits} image scaled by its range", kind="deep images scaled by their range"
        )
    item = Item(image.relative_to(root).as_posix(), path=image, target=Mask(mask))
    found.groups.append(_Group(str(image), mask, [item], _distinct(array)))


def _read_volumes(root: Path, image_dir: Path, label_dir: Path, found: _Found) -> None:
    labels: dict[str, Path] = {}
    for path in _visible(label_dir):
        if _is_nifti(path) and path.is_file():
            labels.setdefault(_volume_stem(path), path)
        else:
            found.skip(path, f"not a NIfTI label volume (.nii or .nii.gz) in {label_dir.name}/")
    used = set()
    for entry in _visible(image_dir):
        shape = _training_volume_shape(entry, found)
        if shape is None:
            continue
        stem = _volume_stem(entry)
        label = labels.get(stem) or labels.get(stem.removesuffix(_CHANNEL))
        if label is None:
            found.skip(
                entry,
                f"no label volume named {stem}.nii.gz in {label_dir}; add one (an all-zero label "
                "volume marks a negative: a volume with nothing to segment)",
            )
            continue
        used.add(label)
        _add_volume(entry, shape, label, found)
    for label in sorted(set(labels.values()) - used):
        found.notes.add(
            f"{label}: label volume without an image volume named {_volume_stem(label)} in "
            f"{image_dir}: ignored",
            kind="label volumes without an image volume",
        )


def _training_volume_shape(entry: Path, found: _Found) -> tuple[int, ...] | None:
    """The array shape of an image volume (a NIfTI file or a DICOM series folder), or None with
    the reason among the skips."""
    if entry.is_dir():
        series = _scan(entry)
        found.skipped += series.skipped
        for path in _visible(entry):
            if path.is_dir() or not _is_dicom(path):
                found.skip(path, "not a DICOM file (.dcm, .dicom or no suffix) in a series folder")
        if not series.files:
            found.skip(entry, "series folder without a DICOM file holding an image")
            return None
        return series.shape
    if not _is_nifti(entry):
        found.skip(
            entry, f"not a NIfTI volume or DICOM series folder (suffix {entry.suffix or 'none'})"
        )
        return None
    shape = _nifti_shape(entry)
    if isinstance(shape, str):
        found.skip(entry, shape)
        return None
    return shape


def _add_volume(image: Path, shape: tuple[int, ...], label: Path, found: _Found) -> None:
    label_shape = _nifti_shape(label)
    if isinstance(label_shape, str):
        found.skip(image, f"label volume '{label}': {label_shape}")
        return
    if label_shape != shape:
        found.skip(
            image,
            f"label volume '{label}' has shape {label_shape} but its image volume has {shape}; "
            "a label volume must have its image's array shape",
        )
        return
    try:
        values = _distinct(_read_labels(label))
    except UnreadableItem as err:
        found.skip(image, f"label volume '{label}': {err}")
        return
    items = [
        Item(f"{image.name}[z={k}]", path=image, target=Mask(label, slice=k))
        for k in range(shape[2])
    ]
    found.groups.append(_Group(str(image), label, items, values))


# ---- classes and the finished source ---------------------------------------------------------


def _finish(path: Path, layout: str, found: _Found, classes) -> Source:
    seen = set()
    for group in found.groups:
        seen.update(group.values.tolist())
    declared, where = _declared_classes(path, classes, found.notes)
    binary = 255 in seen and seen <= {0, 255} and (declared is None or len(declared) == 2)
    if declared is not None:
        names = declared
    elif binary:
        names = list(_BINARY_NAMES)
    else:
        names = [f"class {k}" for k in range(max(max(seen, default=1), 1) + 1)]
    items = []
    for group in found.groups:
        values = group.values // 255 if binary else group.values
        outside = sorted(v for v in values.tolist() if not 0 <= v < len(names))
        if outside:
            found.skip(group.id, _outside_reason(group, outside, names, where))
            continue
        for item in group.items:
            item.target = replace(item.target, binary255=binary) if binary else item.target
            items.append(item)
    if binary:
        found.notes.add(f"masks hold 0 and 255: 255 read as class 1 ({names[1]!r})")
    _check_usable(path, layout, items, found.skipped)
    return Source(
        "image",
        items,
        found.skipped,
        origin=str(path),
        classes=list(names),
        notes=found.notes.lines(),
    )


def _declared_classes(root: Path, classes, notes: _Notes) -> tuple[list[str] | None, str]:
    """(class names, where they come from): `classes` given, else classes.txt, else None."""
    if classes is not None:
        return [str(name) for name in classes], _GIVEN
    path = root / "classes.txt"
    if not path.is_file():
        return None, ""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        notes.add(f"{path}: cannot be read ({_short(err)}): class names made from mask values")
        return None, ""
    names = [line.strip() for line in lines if line.strip()]
    if not names:
        notes.add(f"{path} is empty: class names made from mask values")
        return None, ""
    return names, str(path)


def _outside_reason(group: _Group, outside: list[int], names: list[str], where: str) -> str:
    shown = ", ".join(map(str, outside[:10])) + (" ..." if len(outside) > 10 else "")
    fix = "give every class" if where == _GIVEN else f"name every class in {where}"
    return (
        f"mask '{group.mask}' holds values {shown} outside the {len(names)} classes "
        f"(0..{len(names) - 1}) of {where}; fix the mask or {fix}"
    )


def _check_usable(path: Path, layout: str, items: list[Item], skipped: list[Skip]) -> None:
    if items:
        return
    if not skipped:
        raise HeadstartError(f"DATA '{path}' ({layout}) holds no images. Expected {_EXPECTED}.")
    kinds = Counter(_reason_kind(skip.reason) for skip in skipped)
    counts = "; ".join(f"{n} x {kind}" for kind, n in kinds.most_common())
    first = skipped[0]
    raise HeadstartError(
        f"DATA '{path}' ({layout}) has no usable images: all {len(skipped)} files were skipped "
        f"({counts}). First: {first.id}: {first.reason}"
    )


def _reason_kind(reason: str) -> str:
    """A reason without its file names and numbers, to count skips of one kind."""
    if reason.startswith(("mask '", "label volume '")):
        head, _, rest = reason.partition("' ")
        reason = head.split(" '")[0] + " " + rest
    reason = re.sub(r"\d+(?:[,x. ]+\d+)*", "N", reason)
    return reason.split(" (")[0].split(";")[0].split(" named ")[0]


def _describe(path: Path) -> str:
    if path.is_file():
        return f"a {path.suffix or 'suffix-less'} file, not a folder"
    folders = [p.name + "/" for p in _visible(path) if p.is_dir()]
    if not folders:
        return "found no subfolders"
    return f"found subfolders {', '.join(folders[:10])} (no image and mask folder pair)"


# ---- decoding 2-D images and masks -------------------------------------------------------------


def load_image(item: Item) -> np.ndarray:
    """float32 (H, W, C) in [0, 1], C = 1 (grey) or 3 (RGB), of a 2-D image file or of one slice
    of a volume (item.path a volume, item.target a Mask with its slice). Raises UnreadableItem
    on undecodable pixels."""
    path = Path(item.path)
    kind = _volume_kind(path)
    if kind is None:
        return _decode_2d(path, _image_array)
    k = item.target.slice if isinstance(item.target, Mask) else None
    if k is None:
        raise ValueError(f"item {item.id!r} is a volume but its target has no slice index")
    return _volume_slice(path, kind, k)


def load_mask(mask: Mask) -> np.ndarray:
    """int64 (H, W) class indices."""
    if mask.slice is None:
        array = _decode_mask(Path(mask.path))
        return (array == 255).astype(np.int64) if mask.binary255 else array.astype(np.int64)
    labels = _labels(str(mask.path), _stamp(Path(mask.path)))
    return labels[:, :, mask.slice].astype(np.int64)


def _image_header(path: Path) -> tuple[tuple[int, int], str] | str:
    """((width, height), mode), or why the image cannot be used. Pixels are not decoded; a PNG's
    chunks are checked (cheap), so a truncated PNG is found here."""
    try:
        _check_file(path)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                size, mode = img.size, img.mode
                _check_size(size)
                if img.format == "PNG":
                    img.verify()
    except UnreadableItem as err:
        return str(err)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return _bomb_reason(path, err)
    except Image.UnidentifiedImageError:
        return "not an image (cannot identify image file)"
    except Exception as err:  # plugins raise OSError, SyntaxError, ValueError, struct.error...
        return f"truncated or corrupt image ({_short(err)})"
    return size, mode


def _decode_2d(path: Path, convert):
    """Decode `path` and return convert(image); any failure is an UnreadableItem."""
    with opened_image(path) as img:
        img.load()  # decode inside the guard: truncated files fail here
        return convert(img)


def _image_array(img: Image.Image) -> np.ndarray:
    if img.mode in _DEEP_MODES:  # 16-bit or float: its own range, as a display would
        return _by_range(np.asarray(img, dtype=np.float32))[..., None]
    if img.mode in ("1", "L"):
        return (np.asarray(img.convert("L"), dtype=np.float32) / 255.0)[..., None]
    return np.asarray(to_rgb(img), dtype=np.float32) / 255.0


def _by_range(values: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(values.astype(np.float32, copy=False))
    if not values.size:
        return values
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def _decode_mask(path: Path) -> np.ndarray:
    """A mask file as a 2-D integer array of its stored values (a palette PNG's indices)."""
    return _decode_2d(path, _mask_array)


def _mask_array(img: Image.Image) -> np.ndarray:
    if img.mode in _INDEX_MODES:
        array = np.asarray(img)
        return array.astype(np.uint8) if array.dtype == bool else array
    if img.mode in ("RGB", "RGBA"):
        rgb = np.asarray(img.convert("RGB"))
        grey = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
        what = "grey values stored as RGB" if grey else "colours, not class indices"
        raise UnreadableItem(
            f"{img.mode} mask ({what}); save it as a greyscale (L) or palette (P) PNG whose "
            "pixel values are class indices (0 = background, 1, 2, ...)"
        )
    raise UnreadableItem(
        f"mask in image mode {img.mode}; save it as a greyscale (L) or palette (P) PNG whose "
        "pixel values are class indices"
    )


def _distinct(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:  # a histogram is much faster than sorting
        return np.flatnonzero(np.bincount(array.ravel(), minlength=256))
    return np.unique(array).astype(np.int64)


# ---- volumes: NIfTI files and DICOM series ---------------------------------------------------


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith((".nii", ".nii.gz"))


def _is_dicom(path: Path) -> bool:
    """A .dcm file, or a file without suffix that starts like one (the 'DICM' preamble)."""
    if path.suffix.lower() in _DICOM_SUFFIXES:
        return True
    if path.suffix or not path.is_file():
        return False
    try:
        with path.open("rb") as fp:
            return fp.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _volume_stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _volume_kind(path: Path) -> str | None:
    if _is_nifti(path):
        return "nifti"
    if path.is_dir() or path.suffix.lower() in _DICOM_SUFFIXES:
        return "dicom"
    return None


def _stamp(path: Path) -> int:
    """The file's modification time: a file rewritten in place is not read from the cache."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _shape_problem(shape: tuple[int, ...]) -> str | None:
    if len(shape) != 3:
        return f"{len(shape)}-D volume (shape {shape}); give one 3-D volume per file"
    if min(shape) < 1:
        return f"empty volume (shape {shape})"
    return None


def _nifti_shape(path: Path) -> tuple[int, ...] | str:
    """The stored array shape (header only), or why the file cannot be used."""
    try:
        shape = tuple(int(n) for n in _load_nifti(path).shape)
    except UnreadableItem as err:
        return str(err)
    return _shape_problem(shape) or shape


def _load_nifti(path: Path):
    import nibabel as nib

    try:
        return nib.load(str(path))
    except Exception as err:  # nibabel raises ImageFileError, OSError, EOFError, ValueError...
        raise UnreadableItem(f"not a readable NIfTI file ({_short(err)})") from err


def _nifti_data(img, path: Path) -> np.ndarray:
    problem = _shape_problem(tuple(img.shape))
    if problem:
        raise UnreadableItem(problem)
    try:
        return np.asanyarray(img.dataobj)
    except Exception as err:  # truncated .nii.gz: EOFError, zlib.error, OSError
        raise UnreadableItem(f"truncated or corrupt NIfTI file ({_short(err)})") from err


def _read_labels(path: Path) -> np.ndarray:
    """A label volume as integers in the smallest type that holds them."""
    data = _nifti_data(_load_nifti(path), path)
    if not np.issubdtype(data.dtype, np.integer):
        rounded = np.rint(data)
        if not np.allclose(rounded, data, atol=1e-3, equal_nan=False):
            raise UnreadableItem("holds non-integer values; save class indices (0, 1, 2, ...)")
        data = rounded
    low, high = (int(data.min()), int(data.max())) if data.size else (0, 0)
    dtype = np.uint8 if low >= 0 and high < 256 else np.int32
    return data.astype(dtype)


@functools.lru_cache(maxsize=_CACHED_VOLUMES)
def _labels(key: str, stamp: int) -> np.ndarray:
    return _read_labels(Path(key))


@dataclass
class _VolumeData:
    data: np.ndarray  # float32 (H, W, slices) in [0, 1]
    affine: np.ndarray  # voxel (i, j, k) -> RAS millimetres


def _volume_slice(path: Path, kind: str, k: int) -> np.ndarray:
    volume = _volume_data(str(path), kind, _stamp(path))
    if not 0 <= k < volume.data.shape[2]:
        raise UnreadableItem(f"slice {k} is outside the volume's {volume.data.shape[2]} slices")
    return volume.data[:, :, k, None].copy()  # a copy: the cached volume stays as read


@functools.lru_cache(maxsize=_CACHED_VOLUMES)
def _volume_data(key: str, kind: str, stamp: int) -> _VolumeData:
    path = Path(key)
    if kind == "nifti":
        img = _load_nifti(path)
        return _VolumeData(_scale(_nifti_data(img, path)), np.asarray(img.affine))
    series = _scan(path)
    if not series.files:
        reason = series.skipped[0].reason if series.skipped else "no DICOM files"
        raise UnreadableItem(f"no usable DICOM image in '{path}' ({reason})")
    return _VolumeData(_scale(_series_pixels(series)), series.affine)


def _scale(data: np.ndarray) -> np.ndarray:
    """Intensities to [0, 1] by the volume's 0.5th and 99.5th percentiles, clipped: a few very
    bright or dark voxels (metal, air) do not squeeze the tissue into a sliver of the range."""
    values = np.nan_to_num(np.asarray(data, dtype=np.float32))
    sample = values.ravel()[:: max(1, values.size // _PERCENTILE_SAMPLE)]
    low, high = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    if high <= low:
        low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values)
    values -= low
    values /= high - low
    return np.clip(values, 0.0, 1.0, out=values)


@dataclass
class _Series:
    files: list[Path]  # in slice order: files with one image each, of one series and size
    skipped: list[Skip]
    shape: tuple[int, int, int] = (0, 0, 0)  # (rows, columns, slices)
    affine: np.ndarray | None = None


def _scan(path: Path) -> _Series:
    return _scan_cached(str(path), _stamp(path))


@functools.lru_cache(maxsize=64)
def _scan_cached(key: str, stamp: int) -> _Series:
    """Headers of a DICOM series folder (or of one DICOM file): pixel data is not decoded."""
    path = Path(key)
    files = [p for p in _visible(path) if _is_dicom(p)] if path.is_dir() else [path]
    headers, skipped = [], []
    for file in files:
        header = _dicom_header(file)
        if isinstance(header, str):
            skipped.append(Skip(str(file), header))
        else:
            headers.append((file, header))
    headers = _one_series(headers, skipped)
    if not headers:
        return _Series([], skipped)
    headers = _in_slice_order(headers)
    first, last = headers[0][1], headers[-1][1]
    shape = (int(first.Rows), int(first.Columns), len(headers))
    affine = _dicom_affine(first, last, len(headers))
    return _Series([file for file, _ in headers], skipped, shape, affine)


def _dicom_header(path: Path):
    """The file's header (large values left on disk), or why it holds no usable image."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        ds = dcmread(path, defer_size=1024, force=False)
    except InvalidDicomError:
        return "not a DICOM file (no DICOM header)"
    except Exception as err:
        return f"truncated or corrupt DICOM file ({_short(err)})"
    if not any(tag in ds for tag in _PIXEL_TAGS):
        return "DICOM file without pixel data (no image in it)"
    if "Rows" not in ds or "Columns" not in ds:
        return "DICOM file without Rows and Columns"
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames > 1 or samples > 1:
        what = f"{frames} frames" if frames > 1 else f"{samples} samples per pixel (colour)"
        return f"DICOM file with {what}; only single-frame greyscale slices are read"
    return ds


def _one_series(headers: list, skipped: list[Skip]) -> list:
    """The largest group of files of one series and image size; the others are skipped."""
    groups: dict[tuple, list] = {}
    for file, ds in headers:
        key = (str(ds.get("SeriesInstanceUID", "")), int(ds.Rows), int(ds.Columns))
        groups.setdefault(key, []).append((file, ds))
    if len(groups) <= 1:
        return headers
    kept = max(groups.values(), key=len)
    _uid, rows, cols = next(key for key, group in groups.items() if group is kept)
    for group in groups.values():
        if group is not kept:
            for file, ds in group:
                skipped.append(
                    Skip(
                        str(file),
                        f"another series or image size ({ds.Rows}x{ds.Columns}) than the "
                        f"{len(kept)} files used ({rows}x{cols}); put each series in its own "
                        "folder",
                    )
                )
    return kept


def _in_slice_order(headers: list) -> list:
    """By position along the slice normal; by InstanceNumber where positions are missing."""
    first = headers[0][1]
    has_geometry = "ImageOrientationPatient" in first and all(
        "ImagePositionPatient" in ds for _, ds in headers
    )
    if has_geometry:
        normal = _normal(first)
        return sorted(
            headers,
            key=lambda h: (float(np.dot(_floats(h[1].ImagePositionPatient), normal)), h[0].name),
        )
    return sorted(headers, key=lambda h: (int(h[1].get("InstanceNumber", 0) or 0), h[0].name))


def _floats(values) -> np.ndarray:
    return np.array([float(v) for v in values], dtype=np.float64)


def _normal(ds) -> np.ndarray:
    orientation = _floats(ds.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0]))
    return np.cross(orientation[:3], orientation[3:])


def _dicom_affine(first, last, slices: int) -> np.ndarray:
    """Array index (row, column, slice) -> RAS millimetres. DICOM positions are LPS: x and y
    change sign."""
    orientation = _floats(first.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0]))
    along_row, along_column = orientation[:3], orientation[3:]
    spacing = _floats(first.get("PixelSpacing", [1, 1]))  # (between rows, between columns)
    origin = _floats(first.get("ImagePositionPatient", [0, 0, 0]))
    if slices > 1 and "ImagePositionPatient" in last and "ImagePositionPatient" in first:
        step = (_floats(last.ImagePositionPatient) - origin) / (slices - 1)
    else:
        thickness = first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1
        step = _normal(first) * float(thickness)
    lps = np.eye(4)
    lps[:3, 0] = along_column * spacing[0]  # the row index moves down a column
    lps[:3, 1] = along_row * spacing[1]  # the column index moves along a row
    lps[:3, 2] = step
    lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _series_pixels(series: _Series) -> np.ndarray:
    """(rows, columns, slices) float32 in the scanner's units (RescaleSlope/Intercept applied)."""
    from pydicom import dcmread

    rows, cols, count = series.shape
    volume = np.empty((rows, cols, count), dtype=np.float32)
    for k, file in enumerate(series.files):
        try:
            ds = dcmread(file, force=False)
            pixels = ds.pixel_array
        except Exception as err:  # missing decoder for a compressed file, truncated data...
            raise UnreadableItem(f"cannot decode DICOM file '{file}' ({_short(err)})") from err
        if pixels.shape != (rows, cols):
            raise UnreadableItem(f"DICOM file '{file}' has pixel shape {pixels.shape}")
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        volume[:, :, k] = pixels.astype(np.float32) * slope + intercept
    return volume


# ---- inputs to segment, and writing their masks ----------------------------------------------


FLAT = "image"  # a Volume's kind for a 2-D image file


@dataclass
class Volume:
    """One input to segment: a 2-D image file (one slice), a NIfTI volume or a DICOM series."""

    id: str  # what the user passed (file or series folder), as a string
    kind: str  # FLAT (a 2-D image file), "nifti" or "dicom"
    slices: int  # number of 2-D slices
    path: Path
    shape: tuple[int, int, int]  # (H, W, slices)

    @property
    def flat(self) -> bool:
        """A 2-D image file: one slice, its mask written as PNG."""
        return self.kind == FLAT

    def slice(self, k: int) -> np.ndarray:
        """float32 (H, W, C) in [0, 1], as load_image."""
        if self.flat:
            if k != 0:
                raise IndexError(f"{self.id} is a 2-D image: its only slice is 0, not {k}")
            return _decode_2d(self.path, _image_array)
        return _volume_slice(self.path, self.kind, k)

    def write_mask(self, masks: np.ndarray, out_dir: Path) -> Path:
        """masks: uint8 (slices, H, W) class indices. Writes <stem>_mask.png (a 2-D input) or
        <stem>_mask.nii.gz (a volume, in the input's voxel grid and orientation), atomically.
        Returns the path written."""
        masks = np.asarray(masks)
        expected = (self.slices, self.shape[0], self.shape[1])
        if masks.shape != expected:
            raise ValueError(f"masks of shape {masks.shape} for {self.id}; expected {expected}")
        if masks.size and (masks.min() < 0 or masks.max() > 255):
            raise ValueError(f"mask values of {self.id} must be 0..255 to be saved as uint8")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        masks = masks.astype(np.uint8)
        if self.flat:
            target = out_dir / f"{self.path.stem}_mask.png"
            return _write_atomic(target, lambda tmp: Image.fromarray(masks[0]).save(tmp, "PNG"))
        import nibabel as nib

        image = self._mask_nifti(np.ascontiguousarray(np.moveaxis(masks, 0, -1)))
        target = out_dir / f"{_volume_stem(self.path)}_mask.nii.gz"
        return _write_atomic(target, lambda tmp: nib.save(image, str(tmp)))

    def _mask_nifti(self, data: np.ndarray):
        """(H, W, slices) uint8 as a NIfTI image in the input's voxel grid."""
        import nibabel as nib

        if self.kind == "nifti":
            source = _load_nifti(self.path)
            kind = nib.Nifti2Image if isinstance(source, nib.Nifti2Image) else nib.Nifti1Image
            header = kind.header_class.from_header(source.header)  # keeps qform, sform, units
            header.set_data_dtype(np.uint8)
            image = kind(data, source.affine, header)
            image.header.set_slope_inter(1.0, 0.0)
            return image
        affine = _scan(self.path).affine
        image = nib.Nifti1Image(data, affine)
        image.set_qform(affine, code=1)  # scanner coordinates
        image.set_sform(affine, code=1)
        image.header.set_xyzt_units("mm")
        return image


def open_inputs(paths: list[Path]) -> tuple[list[Volume], list[Skip]]:
    """What `headstart predict` segments: each 2-D image file, each .nii/.nii.gz file, each
    DICOM series (a folder of .dcm files, or of files without suffix that pydicom reads); a
    folder of 2-D images expands to its images (and its subfolders to theirs). Unusable inputs
    become Skips naming the file."""
    volumes: list[Volume] = []
    skipped: list[Skip] = []
    for path in map(Path, paths):
        if not path.exists():
            skipped.append(Skip(str(path), "file not found"))
        elif path.is_dir():
            _open_folder(path, volumes, skipped)
        else:
            _open_file(path, volumes, skipped)
    return volumes, skipped


def _open_folder(folder: Path, volumes: list[Volume], skipped: list[Skip]) -> None:
    dicom = [p for p in _visible(folder) if _is_dicom(p)]
    if dicom:
        _open_series(folder, volumes, skipped)
    for entry in _visible(folder):
        if entry.is_dir():
            _open_folder(entry, volumes, skipped)
        elif entry not in dicom:
            _open_file(entry, volumes, skipped)


def _open_file(path: Path, volumes: list[Volume], skipped: list[Skip]) -> None:
    if _is_nifti(path):
        shape = _nifti_shape(path)
        if isinstance(shape, str):
            skipped.append(Skip(str(path), shape))
        else:
            volumes.append(Volume(str(path), "nifti", shape[2], path, shape))
    elif _is_image(path):
        header = _image_header(path)
        if isinstance(header, str):
            skipped.append(Skip(str(path), header))
        else:
            (width, height), _mode = header
            volumes.append(Volume(str(path), FLAT, 1, path, (height, width, 1)))
    elif _is_dicom(path):
        _open_series(path, volumes, skipped)
    else:
        skipped.append(
            Skip(
                str(path),
                f"not an image, NIfTI (.nii, .nii.gz) or DICOM file (suffix "
                f"{path.suffix.lower() or 'none'})",
            )
        )


def _open_series(path: Path, volumes: list[Volume], skipped: list[Skip]) -> None:
    series = _scan(path)
    skipped += series.skipped
    if series.files:
        volumes.append(Volume(str(path), "dicom", series.shape[2], path, series.shape))
    elif path.is_dir():
        skipped.append(Skip(str(path), "series folder without a DICOM file holding an image"))


def _write_atomic(target: Path, write) -> Path:
    """Write to a temporary file beside `target`, then rename: a reader never sees half a file."""
    suffix = ".nii.gz" if target.name.endswith(".nii.gz") else target.suffix
    temporary = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp{suffix}"
    try:
        write(temporary)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


# ---- small helpers -------------------------------------------------------------------------


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


__all__ = [
    "Mask",
    "Volume",
    "load_image",
    "load_mask",
    "open_inputs",
    "read_segmentation",
    "segmentation_layout",
]
