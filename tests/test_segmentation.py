"""Segmenter end to end: every strategy fits, predicts, saves and reloads; what the strategies
freeze; tiled prediction; the metrics; the command line on images, NIfTI volumes and DICOM
series (masks written back with the input's shape, spacing and orientation)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from test_embed_cli import cli, ok, one_error_line

from headstart.errors import HeadstartError
from headstart.estimators import Segmenter
from headstart.tasks import Segmentation

pytestmark = pytest.mark.usefixtures("one_thread")

SIDE = 64  # tiny images: the tests check plumbing, bench/segment.py the accuracy
STRATEGIES = ["head-only", "freeze-unfreeze", "fine-tune", "from-scratch"]


def disc_image(rng, side: int = SIDE, rgb: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A noisy grey (or colour) image with one or two bright discs; the mask marks them 1."""
    yy, xx = np.mgrid[:side, :side]
    mask = np.zeros((side, side), dtype=np.uint8)
    for _ in range(int(rng.integers(1, 3))):
        cy, cx, r = rng.integers(12, side - 12, 2).tolist() + [int(rng.integers(6, 12))]
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    image = rng.integers(0, 90, (side, side)).astype(np.uint8)
    image[mask == 1] += 140
    if rgb:
        image = np.stack([image, image // 2, 255 - image], axis=-1)
    return image, mask


def write_set(folder: Path, count: int, seed: int, rgb: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for n in range(count):
        image, mask = disc_image(rng, rgb=rgb)
        Image.fromarray(image).save(folder / "images" / f"s{n}.png")
        Image.fromarray(mask * 255).save(folder / "masks" / f"s{n}.png")  # 0/255: two classes
    return folder


@pytest.fixture(scope="module")
def discs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("discs")
    return write_set(root / "train", 6, seed=0), write_set(root / "val", 3, seed=1)


def segmenter(strategy: str = "fine-tune", **extra) -> Segmenter:
    options = dict(epochs=2, crop=SIDE, tile=SIDE, batch_size=4, verbose=False, seed=0)
    options.update(extra)
    return Segmenter(strategy=strategy, **options)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_fits_predicts_saves_and_reloads(discs, strategy, tmp_path):
    train, val = discs
    run = tmp_path / "run"
    est = segmenter(strategy).fit(train, val=val, run_dir=run)
    assert est.task_.classes == ["background", "foreground"]
    assert {"dice", "iou", "pixel_accuracy", "n", "per_class"} <= set(est.metrics_)
    assert est.metrics_["n"] == 3 and 0.0 <= est.metrics_["dice"] <= 1.0
    image = sorted((val / "images").iterdir())[0]
    (mask,) = est.predict([image])
    assert mask.shape == (SIDE, SIDE) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    files = {p.name for p in run.iterdir()}
    assert {"model.safetensors", "config.json", "metrics.json", "report.md"} <= files
    assert {"predictions.png", "curves.png"} <= files
    again = Segmenter.load(run)
    assert np.array_equal(again.predict([image])[0], mask)
    assert again.evaluate(val)["dice"] == pytest.approx(est.metrics_["dice"], abs=1e-6)


def test_fine_tune_learns_the_discs(discs):
    train, val = discs
    est = segmenter("fine-tune", epochs=8).fit(train, val=val)
    assert est.metrics_["dice"] > 0.6, est.metrics_  # an all-background guess scores 0


def encoder_weights(est) -> dict[str, torch.Tensor]:
    state = est.segmenter_.backbone.state_dict()
    return {k: v.clone() for k, v in state.items() if v.dtype.is_floating_point}


@pytest.mark.parametrize(("strategy", "encoder_moves"), [("head-only", False), ("fine-tune", True)])
def test_head_only_keeps_the_encoder_as_pretrained(discs, strategy, encoder_moves):
    from headstart.zoo import build

    train, _ = discs
    est = segmenter(strategy, epochs=1, val_fraction=0).fit(train)
    pretrained = build("efficientnet_lite0", pretrained=True).state_dict()
    after = encoder_weights(est)
    moved = any(not torch.equal(after[k], pretrained[k]) for k in after if "running" not in k)
    assert moved == encoder_moves


def test_tiles_cover_large_images_without_seams(discs):
    from headstart.engine.segmentation import SegmentationConfig, segment_image

    train, _ = discs
    est = segmenter("fine-tune", epochs=3, val_fraction=0).fit(train)
    rng = np.random.default_rng(5)
    big = np.concatenate([disc_image(rng, 96)[0] for _ in range(2)], axis=1)[:90, :180]
    image = (big.astype(np.float32) / 255)[..., None]
    whole = segment_image(est.segmenter_, image, SegmentationConfig(tile=256))
    tiled = segment_image(est.segmenter_, image, SegmentationConfig(tile=64, overlap=0.5))
    assert tiled.shape == whole.shape == (2, 90, 180)
    assert torch.allclose(tiled.sum(0), torch.ones(90, 180), atol=1e-5)
    agree = (tiled.argmax(0) == whole.argmax(0)).float().mean()
    assert agree > 0.9, agree


def test_rgb_images_train_with_three_channels(tmp_path):
    data = write_set(tmp_path / "rgb", 4, seed=2, rgb=True)
    est = segmenter("fine-tune", epochs=1, val_fraction=0.25).fit(data)
    assert est.segmenter_spec_["channels"] == 3
    assert est.predict([next((data / "images").iterdir())])[0].shape == (SIDE, SIDE)


def test_dice_iou_and_pixel_accuracy_of_known_masks():
    task = Segmentation(["background", "cell", "nucleus"])
    truth = np.zeros((4, 4), dtype=np.int64)
    truth[:2, :2] = 1  # 4 cell pixels
    truth[3, 3] = 2  # 1 nucleus pixel
    guess = truth.copy()
    guess[0, 0] = 0  # one cell pixel missed
    guess[2, 2] = 1  # one background pixel called cell
    metrics = task.score_masks([guess], [truth])
    cell = metrics["per_class"]["cell"]
    assert cell["dice"] == pytest.approx(2 * 3 / (4 + 4))  # 3 right of 4 true and 4 predicted
    assert cell["iou"] == pytest.approx(3 / 5)
    assert metrics["per_class"]["nucleus"]["dice"] == pytest.approx(1.0)
    assert metrics["dice"] == pytest.approx((0.75 + 1.0) / 2)  # foreground classes only
    assert metrics["pixel_accuracy"] == pytest.approx(14 / 16)
    assert metrics["pixel_error"] == pytest.approx(2 / 16)


def test_the_loss_ignores_padding():
    from headstart.engine.segmentation import IGNORE, dice_ce_loss

    logits = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    mask = torch.randint(0, 3, (2, 4, 4), generator=torch.Generator().manual_seed(1))
    padded = mask.clone()
    padded[:, :, 2:] = IGNORE  # the right half is padding: whatever the model says there
    inside = dice_ce_loss(logits[..., :2], mask[..., :2])
    assert float(dice_ce_loss(logits, padded)) == pytest.approx(float(inside), rel=1e-5)


def test_bad_parameters_are_one_line_errors(discs):
    train, val = discs
    with pytest.raises(HeadstartError, match="multiple of 32"):
        segmenter(crop=100).fit(train, val=val)
    with pytest.raises(HeadstartError, match="does not apply to segmentation"):
        segmenter("lora").fit(train, val=val)
    with pytest.raises(HeadstartError, match="not fitted"):
        Segmenter().predict([train])
    with pytest.raises(HeadstartError, match="segmenter needs an image backbone"):
        segmenter(model="minilm_l6").fit(train, val=val)


# ---- the command line ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted_run(discs, tmp_path_factory) -> Path:
    train, val = discs
    run = tmp_path_factory.mktemp("segrun") / "run"
    fitted = ok(
        cli(
            "fit", str(train), "--val", str(val), "--out", str(run), "--epochs", "2",
            "--size", str(SIDE), "--batch-size", "4", "--strategy", "fine-tune",
        )
    )  # fmt: skip
    assert "dice" in fitted.stdout and "strategy: fine-tune" in fitted.stderr
    return run


def test_cli_fit_evaluate_predict_images(fitted_run, discs, tmp_path):
    _, val = discs
    scored = json.loads(ok(cli("evaluate", str(fitted_run), str(val), "--json")).stdout)
    assert {"dice", "iou", "pixel_accuracy", "per_class", "n"} <= set(scored)
    assert set(scored["per_class"]) == {"background", "foreground"} and scored["n"] == 3
    image = sorted((val / "images").iterdir())[0]
    (tmp_path / "notes.png").write_text("not an image")
    cut = tmp_path / "cut.png"  # a whole header, pixels cut short: fails at decoding
    cut.write_bytes(image.read_bytes()[:200])
    out = tmp_path / "masks"
    rows = json.loads(
        ok(
            cli(
                "predict", str(fitted_run), str(image), str(tmp_path / "notes.png"), str(cut),
                "--out", str(out), "--json",
            )
        ).stdout
    )  # fmt: skip
    assert rows[0]["input"] == str(image) and "error" in rows[1] and "error" in rows[2]
    mask = np.asarray(Image.open(rows[0]["mask"]))
    assert mask.shape == (SIDE, SIDE) and set(np.unique(mask)) <= {0, 1}
    assert Path(rows[0]["overlay"]).is_file()
    assert set(rows[0]["pixels"]) == {"background", "foreground"}


def predict_json(run: Path, target: Path, out: Path) -> list[dict]:
    return json.loads(ok(cli("predict", str(run), str(target), "--out", str(out), "--json")).stdout)


def test_cli_predict_writes_a_nifti_volume_back_with_its_geometry(fitted_run, tmp_path):
    rng = np.random.default_rng(3)
    volume = np.stack([disc_image(rng)[0] for _ in range(3)], axis=-1).astype(np.int16) * 4
    affine = np.array(
        [[0.0, -0.8, 0.0, 10.0], [0.8, 0.0, 0.0, -5.0], [0.0, 0.0, 2.5, 30.0], [0, 0, 0, 1]]
    )
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(volume, affine), path)
    rows = predict_json(fitted_run, path, tmp_path / "o")
    written = nib.load(rows[0]["mask"])
    assert written.shape == volume.shape and rows[0]["slices"] == 3
    assert np.allclose(written.affine, affine)
    assert np.allclose(written.header.get_zooms(), (0.8, 0.8, 2.5))


def test_cli_predict_writes_a_dicom_series_back_as_nifti(fitted_run, tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    series = tmp_path / "series"
    series.mkdir()
    for k in (2, 0, 1):  # written out of order: slices are sorted by position
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.ImagePositionPatient = [-158.0, -179.0, -75.0 + 5.0 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.InstanceNumber, ds.SOPInstanceUID = k + 1, generate_uid()
        ds.save_as(series / f"{k}.dcm")
    rows = predict_json(fitted_run, series, tmp_path / "o")
    written = nib.load(rows[0]["mask"])
    assert written.shape == (128, 128, 3)
    assert np.allclose(written.header.get_zooms()[2], 5.0)


def test_cli_recognises_a_mask_folder_and_refuses_classifier_options(discs, tmp_path):
    train, _ = discs
    line = one_error_line(cli("fit", str(train), "--out", str(tmp_path / "r"), "--l2sp", "0.1"))
    assert "--l2sp does not apply to segmentation" in line


def test_rank_on_a_segmentation_set_scores_backbones_on_patches(discs):
    train, _ = discs
    run = ok(cli("rank", str(train), "--models", "efficientnet_lite0,random:efficientnet_lite0"))
    assert "segmentation set: ranking on 48 patches" in run.stderr
    assert "efficientnet_lite0" in run.stdout


def test_compare_on_a_segmentation_set_fits_each_strategy(discs, tmp_path):
    train, val = discs
    out = tmp_path / "cmp"
    run = ok(
        cli(
            "compare", str(train), "--val", str(val), "--out", str(out), "--strategies",
            "head-only,from-scratch", "--epochs", "1",
        )
    )  # fmt: skip
    assert "head-only: dice" in run.stdout and "from-scratch: dice" in run.stdout
    assert {"results.csv", "compare.png", "report.md"} <= {p.name for p in out.iterdir()}


def test_images_and_labels_folders_go_to_the_task_their_files_name(tmp_path):
    """images/ + labels/ is YOLO with .txt labels, segmentation with mask images or volumes."""
    from headstart.tasks import own_estimator_task

    for name, label_file in (("yolo", "a.txt"), ("masks", "a.png"), ("volumes", "a.nii.gz")):
        (tmp_path / name / "images").mkdir(parents=True)
        (tmp_path / name / "labels").mkdir()
        (tmp_path / name / "labels" / label_file).write_bytes(b"")
        source = "a.nii.gz" if name == "volumes" else "a.png"
        (tmp_path / name / "images" / source).write_bytes(b"")
    assert own_estimator_task("auto", tmp_path / "yolo").name == "detection"
    assert own_estimator_task("auto", tmp_path / "masks").name == "segmentation"
    assert own_estimator_task("auto", tmp_path / "volumes").name == "segmentation"
