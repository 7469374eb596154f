"""Reading segmentation sets (2-D image and mask folders, NIfTI volumes, DICOM series) and the
inputs `headstart predict` segments, with their masks written back.

Every data set is written into tmp_path by the test: small images made with PIL and numpy,
volumes with nibabel, DICOM series from pydicom's own CT_small.dcm. The real ISBI electron
microscopy set is read when the shared copy is present."""

from __future__ import annotations

import random
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel.testing import data_path as nibabel_data
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from headstart.data import images as images_module
from headstart.data.masks import (
    Mask,
    load_image,
    load_mask,
    open_inputs,
    read_segmentation,
    segmentation_layout,
)
from headstart.errors import HeadstartError, UnreadableItem

ISBI = Path("/work/shared/data/isbi_em")
W, H = 32, 24  # size of every written 2-D image unless a test says otherwise


# ---- writing tiny data sets ----------------------------------------------------------------


def write_image(path: Path, size=(W, H), mode="L", value=128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)
    return path


def write_mask(path: Path, array, mode=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.asarray(array))
    if mode == "P":
        image = image.convert("P")  # keeps the values as palette indices
        image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    image.save(path)
    return path


def stripes(classes: int, size=(W, H)) -> np.ndarray:
    """A mask with every class 0..classes-1 as vertical stripes."""
    width, height = size
    return np.tile((np.arange(width) * classes // width).astype(np.uint8), (height, 1))


def folder_set(root: Path, stems=("a", "b"), classes=3, **dirs) -> Path:
    image_dir, mask_dir = dirs.get("image_dir", "images"), dirs.get("mask_dir", "masks")
    for stem in stems:
        write_image(root / image_dir / f"{stem}.png")
        write_mask(root / mask_dir / f"{stem}.png", stripes(classes))
    return root


def skip_for(source, name: str) -> str:
    """The reason of the one skip whose id ends with `name`."""
    found = [s.reason for s in source.skipped if s.id.endswith(name)]
    assert len(found) == 1, source.skipped
    return found[0]


def write_nifti(path: Path, data, affine=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), path)
    return path


def rotated_affine(spacing=(0.8, 0.8, 2.5), degrees=30.0, shift=(-40.0, 12.0, 7.5)):
    turn = np.radians(degrees)
    rotation = np.array(
        [[np.cos(turn), -np.sin(turn), 0], [np.sin(turn), np.cos(turn), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = shift
    return affine


TILT = np.radians(20.0)
ROW_DIR = np.array([1.0, 0.0, 0.0])  # ImageOrientationPatient: along a row, then down a column
COL_DIR = np.array([0.0, np.cos(TILT), np.sin(TILT)])
SPACING = (0.7, 0.6)  # PixelSpacing: between rows, between columns
GAP = 2.5


def dicom_series(folder: Path, count=4, order=(2, 0, 3, 1)) -> Path:
    """CT_small.dcm written `count` times at positions GAP apart along the slice normal, files
    named and written in shuffled order; slice k holds the original pixels + 500 k."""
    folder.mkdir(parents=True, exist_ok=True)
    normal = np.cross(ROW_DIR, COL_DIR)
    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    pixels = base.pixel_array
    for k in order[:count]:
        ds = base.copy()
        ds.ImageOrientationPatient = [*ROW_DIR, *COL_DIR]
        ds.ImagePositionPatient = list(np.array([-100.0, -80.0, 30.0]) + k * GAP * normal)
        ds.PixelSpacing = list(SPACING)
        ds.InstanceNumber = k + 1
        ds.SOPInstanceUID = generate_uid()
        ds.PixelData = (pixels + 500 * k).astype(pixels.dtype).tobytes()
        ds.save_as(folder / f"IM{order.index(k) * 7 % 10}.dcm")
    return folder


def no_pixel_dicom(path: Path) -> Path:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.PixelData
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(path)
    return path


# ---- layouts -------------------------------------------------------------------------------


def test_layouts(tmp_path):
    assert segmentation_layout(folder_set(tmp_path / "f")) == "folders"
    write_nifti(tmp_path / "v/images/c1.nii.gz", np.zeros((4, 4, 2), np.float32))
    write_nifti(tmp_path / "v/labels/c1.nii.gz", np.zeros((4, 4, 2), np.uint8))
    assert segmentation_layout(tmp_path / "v") == "volumes"
    dicom_series(tmp_path / "d/imagesTr/S1", count=1, order=(0,))
    write_nifti(tmp_path / "d/labelsTr/S1.nii.gz", np.zeros((128, 128, 1), np.uint8))
    assert segmentation_layout(tmp_path / "d") == "volumes"
    write_image(tmp_path / "yolo/images/a.jpg")
    (tmp_path / "yolo/labels").mkdir()
    (tmp_path / "yolo/labels/a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    assert segmentation_layout(tmp_path / "yolo") is None
    write_image(tmp_path / "random/cats/a.png")
    assert segmentation_layout(tmp_path / "random") is None
    assert segmentation_layout(tmp_path / "f/images/a.png") is None


def test_not_a_segmentation_set_names_the_layouts(tmp_path):
    write_image(tmp_path / "cats/a.png")
    with pytest.raises(HeadstartError, match=r"not a segmentation data set.*cats/.*masks/"):
        read_segmentation(tmp_path)
    with pytest.raises(HeadstartError, match="does not exist"):
        read_segmentation(tmp_path / "nowhere")


# ---- the real ISBI set -----------------------------------------------------------------------


@pytest.mark.skipif(not ISBI.is_dir(), reason=f"the ISBI EM set is not at {ISBI}")
def test_isbi():
    source = read_segmentation(ISBI)
    assert len(source.items) == 30 and not source.skipped
    assert source.classes == ["background", "foreground"]
    assert source.modality == "image"
    item = next(i for i in source.items if i.id == "image/7.png")
    assert item.target == Mask(ISBI / "label/7.png", binary255=True)
    image, mask = load_image(item), load_mask(item.target)
    assert image.dtype == np.float32 and image.shape == (512, 512, 1)
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert mask.dtype == np.int64 and mask.shape == (512, 512)
    assert set(np.unique(mask).tolist()) == {0, 1}
    named = read_segmentation(ISBI, classes=["membrane", "cell"])
    assert named.classes == ["membrane", "cell"] and len(named.items) == 30


# ---- 2-D folders -------------------------------------------------------------------------------


def test_folders_palette_masks_and_names(tmp_path):
    root = folder_set(tmp_path, stems=("a",))
    write_image(tmp_path / "images/b.jpg", mode="RGB", value=(10, 200, 30))
    write_mask(tmp_path / "masks/b_mask.png", stripes(3), mode="P")
    source = read_segmentation(root)
    assert [i.id for i in source.items] == ["images/a.png", "images/b.jpg"]
    assert source.classes == ["class 0", "class 1", "class 2"]
    b = source.items[1]
    assert b.target == Mask(tmp_path / "masks/b_mask.png")
    assert np.array_equal(load_mask(b.target), stripes(3).astype(np.int64))
    image = load_image(b)
    assert image.shape == (H, W, 3) and image.dtype == np.float32
    assert load_image(source.items[0]).shape == (H, W, 1)
    (tmp_path / "classes.txt").write_text("sky\nroad\ncar\n")
    assert read_segmentation(root).classes == ["sky", "road", "car"]
    assert read_segmentation(root, classes=["x", "y", "z", "w"]).classes == ["x", "y", "z", "w"]


def test_binary_255_masks(tmp_path):
    write_image(tmp_path / "image/1.png")
    write_mask(tmp_path / "label/1.png", stripes(2) * 255)
    source = read_segmentation(tmp_path)
    assert source.classes == ["background", "foreground"]
    assert source.items[0].target.binary255
    assert np.array_equal(load_mask(source.items[0].target), stripes(2).astype(np.int64))
    assert any("255 read as class 1" in note for note in source.notes)


def test_mask_of_another_size_is_skipped(tmp_path):
    root = folder_set(tmp_path)
    write_mask(tmp_path / "masks/b.png", np.zeros((10, 20), np.uint8))
    source = read_segmentation(root)
    reason = skip_for(source, "images/b.png")
    assert "masks/b.png' is 20x10" in reason and f"image is {W}x{H}" in reason
    assert [i.id for i in source.items] == ["images/a.png"]


def test_mask_values_outside_the_classes_are_skipped(tmp_path):
    root = folder_set(tmp_path, classes=2)
    write_mask(tmp_path / "masks/b.png", stripes(3))
    (tmp_path / "classes.txt").write_text("background\nroad\n")
    source = read_segmentation(root)
    reason = skip_for(source, "images/b.png")
    assert "holds values 2 outside the 2 classes" in reason and "classes.txt" in reason
    assert source.classes == ["background", "road"] and len(source.items) == 1
    with pytest.raises(HeadstartError, match=r"all 2 files were skipped \(2 x mask holds values"):
        read_segmentation(root, classes=["only"])


def test_image_without_mask_is_skipped_and_mask_without_image_noted(tmp_path):
    root = folder_set(tmp_path)
    write_image(tmp_path / "images/lonely.png")
    write_mask(tmp_path / "masks/orphan.png", stripes(3))
    (tmp_path / "masks/notes.txt").write_text("not a mask")
    source = read_segmentation(root)
    reason = skip_for(source, "lonely.png")
    assert reason.startswith("no mask named lonely.* in ") and "all-zero mask" in reason
    assert "not a mask image file (suffix .txt)" in skip_for(source, "notes.txt")
    assert any("orphan.png: mask without an image" in note for note in source.notes)
    assert len(source.items) == 2


def test_empty_mask_is_a_kept_negative(tmp_path):
    root = folder_set(tmp_path)
    write_mask(tmp_path / "masks/b.png", np.zeros((H, W), np.uint8))
    source = read_segmentation(root)
    b = next(item for item in source.items if item.id == "images/b.png")
    assert not load_mask(b.target).any()


def test_16_bit_image_is_scaled_by_its_range_with_a_note(tmp_path):
    root = folder_set(tmp_path)
    deep = (np.arange(W * H, dtype=np.uint16).reshape(H, W) * 7 + 1000).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "images/b.png")
    write_mask(tmp_path / "masks/b.png", (stripes(3) * 100).astype(np.uint16))  # 16-bit mask
    source = read_segmentation(root)
    assert any("images/b.png: 16-bit image scaled by its range" in n for n in source.notes)
    b = next(item for item in source.items if item.id == "images/b.png")
    image = load_image(b)
    assert image.shape == (H, W, 1) and image.min() == 0.0 and image.max() == 1.0
    assert set(np.unique(load_mask(b.target)).tolist()) == {0, 100, 200}
    assert source.classes[-1] == "class 200"


def test_truncated_and_corrupt_files_are_skipped(tmp_path):
    root = folder_set(tmp_path, stems=("a", "b", "c", "d"))
    noise = np.random.default_rng(0).integers(0, 255, (H, W), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "images/b.png")
    data = (tmp_path / "images/b.png").read_bytes()
    (tmp_path / "images/b.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "images/c.png").write_bytes(b"not a png at all")
    (tmp_path / "masks/d.png").write_bytes((tmp_path / "masks/d.png").read_bytes()[:60])
    source = read_segmentation(root)
    assert "truncated or corrupt image" in skip_for(source, "images/b.png")
    assert "not an image" in skip_for(source, "images/c.png")
    assert skip_for(source, "images/d.png").startswith("mask '")
    assert [i.id for i in source.items] == ["images/a.png"]


def test_truncated_image_fails_at_load(tmp_path):
    """A JPEG's chunks are not checked at read time: a cut one fails when decoded."""
    path = tmp_path / "cut.jpg"
    noise = np.random.default_rng(1).integers(0, 255, (H, W, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    path.write_bytes(path.read_bytes()[:200])
    from headstart.data.sources import Item

    with pytest.raises(UnreadableItem):
        load_image(Item("cut", path=path))


def test_colour_mask_is_skipped(tmp_path):
    root = folder_set(tmp_path)
    Image.new("RGB", (W, H), (255, 0, 0)).save(tmp_path / "masks/b.png")
    reason = skip_for(read_segmentation(root), "images/b.png")
    assert "RGB mask (colours" in reason and "palette (P) PNG" in reason


def test_image_over_max_pixels_is_skipped(tmp_path, monkeypatch):
    root = folder_set(tmp_path)
    write_image(tmp_path / "images/b.png", size=(W * 4, H * 4))
    write_mask(tmp_path / "masks/b.png", np.zeros((H * 4, W * 4), np.uint8))
    monkeypatch.setattr(images_module, "MAX_PIXELS", W * H * 2)
    source = read_segmentation(root)
    assert skip_for(source, "images/b.png").startswith("image too large")
    assert len(source.items) == 1


def test_nothing_usable_says_why(tmp_path):
    write_image(tmp_path / "images/a.png")
    write_image(tmp_path / "images/b.png")
    write_mask(tmp_path / "masks/c.png", stripes(2))
    with pytest.raises(HeadstartError, match=r"no usable images: all 2 files .*2 x no mask"):
        read_segmentation(tmp_path)


# ---- volumes ---------------------------------------------------------------------------------


def test_volume_training_set(tmp_path):
    rng = np.random.default_rng(2)
    write_nifti(tmp_path / "images/case1.nii.gz", rng.normal(size=(16, 12, 3)).astype(np.float32))
    labels = rng.integers(0, 3, (16, 12, 3)).astype(np.uint8)
    write_nifti(tmp_path / "labels/case1.nii.gz", labels)
    series = dicom_series(tmp_path / "images/S1")
    no_pixel_dicom(series / "IM_empty.dcm")
    write_nifti(tmp_path / "labels/S1.nii.gz", np.zeros((128, 128, 4), np.uint8))
    write_nifti(tmp_path / "images/wrong.nii.gz", np.zeros((8, 8, 2), np.float32))
    write_nifti(tmp_path / "labels/wrong.nii.gz", np.zeros((8, 8, 3), np.uint8))
    write_nifti(tmp_path / "labels/orphan.nii.gz", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "images/ex4d.nii.gz").write_bytes((nibabel_data / "example4d.nii.gz").read_bytes())
    source = read_segmentation(tmp_path)
    ids = [item.id for item in source.items]
    assert ids == [f"S1[z={k}]" for k in range(4)] + [f"case1.nii.gz[z={k}]" for k in range(3)]
    assert source.classes == ["class 0", "class 1", "class 2"]
    assert "without pixel data" in skip_for(source, "IM_empty.dcm")
    assert "4-D volume (shape (128, 96, 24, 2)); give one 3-D volume per file" in skip_for(
        source, "ex4d.nii.gz"
    )
    assert "(8, 8, 3) but its image volume has (8, 8, 2)" in skip_for(source, "wrong.nii.gz")
    assert any("orphan.nii.gz: label volume without an image" in n for n in source.notes)
    for item in source.items:
        image, mask = load_image(item), load_mask(item.target)
        assert image.dtype == np.float32 and image.shape[:2] == mask.shape and image.shape[2] == 1
        assert image.min() >= 0.0 and image.max() <= 1.0
    case = source.items[4 + 1]
    assert case.path == tmp_path / "images/case1.nii.gz"
    assert case.target == Mask(tmp_path / "labels/case1.nii.gz", slice=1)
    assert np.array_equal(load_mask(case.target), labels[:, :, 1])


def test_nnunet_names_and_binary_label_volume(tmp_path):
    write_nifti(tmp_path / "imagesTr/c_0000.nii.gz", np.ones((6, 5, 2), np.int16))
    write_nifti(tmp_path / "labelsTr/c.nii.gz", np.zeros((6, 5, 2), np.uint8))
    source = read_segmentation(tmp_path, classes=["background", "tumour"])
    assert [i.id for i in source.items] == ["c_0000.nii.gz[z=0]", "c_0000.nii.gz[z=1]"]
    assert not load_image(source.items[0]).any()  # a constant volume scales to zeros


# ---- inputs to segment and masks written back ------------------------------------------------


def test_nifti_round_trip(tmp_path):
    affine = rotated_affine()
    data = np.random.default_rng(3).normal(size=(20, 16, 5)).astype(np.float32)
    path = write_nifti(tmp_path / "in/scan.nii.gz", data, affine)
    volumes, skipped = open_inputs([path])
    assert not skipped and len(volumes) == 1
    volume = volumes[0]
    assert (volume.id, volume.kind, volume.slices) == (str(path), "nifti", 5)
    assert volume.slice(2).shape == (20, 16, 1)
    masks = np.random.default_rng(4).integers(0, 3, (5, 20, 16)).astype(np.uint8)
    out = volume.write_mask(masks, tmp_path / "out")
    assert out == tmp_path / "out/scan_mask.nii.gz"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scan_mask.nii.gz"]
    written = nib.load(out)
    assert written.shape == (20, 16, 5)
    assert np.allclose(written.affine, affine)
    assert np.allclose(written.header.get_zooms(), (0.8, 0.8, 2.5))
    assert np.array_equal(np.asanyarray(written.dataobj), np.moveaxis(masks, 0, -1))


def test_dicom_series_round_trip(tmp_path):
    folder = dicom_series(tmp_path / "S1")
    volumes, skipped = open_inputs([folder])
    assert not skipped and len(volumes) == 1
    volume = volumes[0]
    assert (volume.id, volume.kind, volume.slices) == (str(folder), "dicom", 4)
    means = [volume.slice(k).mean() for k in range(4)]
    assert means == sorted(means) and len(set(means)) == 4  # position order, not file order
    out = volume.write_mask(np.ones((4, 128, 128), np.uint8), tmp_path / "out")
    assert out.name == "S1_mask.nii.gz"
    written = nib.load(out)
    assert written.shape == (128, 128, 4)
    assert np.allclose(written.header.get_zooms(), (SPACING[0], SPACING[1], GAP))
    flip = np.array([-1.0, -1.0, 1.0])  # DICOM's LPS to NIfTI's RAS
    direction = written.affine[:3, :3] / np.array(written.header.get_zooms())
    assert np.allclose(direction[:, 0], flip * COL_DIR)
    assert np.allclose(direction[:, 1], flip * ROW_DIR)
    assert np.allclose(direction[:, 2], flip * np.cross(ROW_DIR, COL_DIR))
    first = pydicom.dcmread(folder / "IM7.dcm")  # slice 0 was written second, as IM7.dcm
    assert np.allclose(written.affine[:3, 3], flip * np.array(first.ImagePositionPatient))


def test_dicom_file_without_pixels_is_skipped_the_series_still_reads(tmp_path):
    folder = dicom_series(tmp_path / "S1", count=3, order=(1, 0, 2))
    no_pixel_dicom(folder / "IM_empty.dcm")
    volumes, skipped = open_inputs([folder])
    assert [v.slices for v in volumes] == [3]
    assert [(Path(s.id).name, s.reason) for s in skipped] == [
        ("IM_empty.dcm", "DICOM file without pixel data (no image in it)")
    ]


def test_png_round_trip_and_folder_expansion(tmp_path):
    write_image(tmp_path / "in/a.png", size=(40, 30), mode="RGB", value=(1, 2, 3))
    write_image(tmp_path / "in/sub/b.png")
    (tmp_path / "in/readme.txt").write_text("hello")
    volumes, skipped = open_inputs([tmp_path / "in", tmp_path / "missing.png"])
    assert [(Path(v.id).name, v.kind, v.slices) for v in volumes] == [
        ("a.png", "image", 1),
        ("b.png", "image", 1),
    ]
    assert {Path(s.id).name for s in skipped} == {"readme.txt", "missing.png"}
    assert volumes[0].slice(0).shape == (30, 40, 3)
    out = volumes[0].write_mask(np.full((1, 30, 40), 2, np.uint8), tmp_path / "out")
    assert out == tmp_path / "out/a_mask.png"
    with Image.open(out) as written:
        assert written.size == (40, 30) and written.mode == "L"
        assert set(np.unique(np.asarray(written)).tolist()) == {2}


def test_4d_nifti_input_is_skipped(tmp_path):
    path = nibabel_data / "example4d.nii.gz"
    volumes, skipped = open_inputs([path, nibabel_data / "anatomical.nii"])
    assert [Path(v.id).name for v in volumes] == ["anatomical.nii"]
    assert skipped[0].id == str(path)
    assert skipped[0].reason.startswith("4-D volume (shape (128, 96, 24, 2))")


def test_shuffled_order_is_deterministic(tmp_path):
    """Files named in an order unrelated to position: slices still come in position order."""
    order = list(range(4))
    random.Random(5).shuffle(order)
    folder = dicom_series(tmp_path / "S2", order=tuple(order))
    volume = open_inputs([folder])[0][0]
    means = [volume.slice(k).mean() for k in range(4)]
    assert means == sorted(means)


def test_corrupt_and_truncated_nifti(tmp_path):
    """A file nibabel cannot open is skipped; one whose header reads but whose data is cut
    fails when its slices are decoded."""
    noise = np.random.default_rng(6).normal(size=(32, 32, 16)).astype(np.float32)
    data = write_nifti(tmp_path / "whole.nii.gz", noise).read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.nii").write_bytes(b"garbage")
    volumes, skipped = open_inputs([tmp_path / "cut.nii.gz", tmp_path / "junk.nii"])
    assert [Path(s.id).name for s in skipped] == ["junk.nii"]
    assert skipped[0].reason.startswith("not a readable NIfTI file")
    with pytest.raises(UnreadableItem, match="truncated or corrupt NIfTI file"):
        volumes[0].slice(0)
