"""Segmenter: a class per pixel from a few labelled images or slices, with the classifiers'
contract.

    seg = Segmenter(model="efficientnet_lite0", strategy="fine-tune").fit("em/", val="em_val/")
    seg.predict(["slice.png"])            # [uint8 (H, W) class indices]
    seg.evaluate("em_test/")              # {"dice": ..., "iou": ..., "pixel_accuracy": ..., ...}
    seg.write_predictions(["ct/"], "out") # masks as PNG / NIfTI beside an overlay PNG each

Data is images with masks of the same stems, or NIfTI volumes / DICOM series with label volumes
(data/masks.py). The model is a U-Net decoder on a bundled ImageNet encoder (zoo/segmenters.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..data.sources import Item, Source
from ..errors import HeadstartError, UnreadableItem
from ..strategies.whole import get_whole_model_strategy
from .base import fingerprint
from .whole import WholeModelEstimator

DEFAULT_ENCODER = "efficientnet_lite0"


class Segmenter(WholeModelEstimator):
    """Train a U-Net decoder (and, by strategy, the encoder) on images with masks.

    model: an image backbone for the encoder (default efficientnet_lite0, bundled).
    strategy: head-only (decoder only), freeze-unfreeze, fine-tune, from-scratch, or auto.
    crop: the side of training crops; tile: the side of prediction tiles (larger images are
    predicted tile by tile with overlap). budget: seconds (or "15m") of training at most.
    classes: class names in index order (else classes.txt, else from the masks' values).
    tta: predict on the image and its three flips and average (4x the time, finer edges).
    precision: of training; auto trains in bf16 (mixed) where the CPU or GPU has it (1.5x
    faster on a CPU with AVX512-BF16), fp32 elsewhere. Prediction runs in fp32.
    """

    model_attr = "segmenter_"

    def __init__(
        self,
        model: str = "",
        strategy: str = "auto",
        *,
        epochs: int = 50,
        crop: int = 256,
        tile: int = 512,
        batch_size: int = 8,
        lr: float | None = None,
        seed: int = 0,
        patience: int = 0,
        budget: str | float | None = None,
        weights: str | None = None,
        device: str = "auto",
        precision: str = "auto",
        augment: bool = True,
        val_fraction: float = 0.2,
        classes: list[str] | None = None,
        tta: bool = False,
        verbose: bool = True,
    ):
        self.model, self.strategy, self.epochs, self.crop, self.tile = (
            model,
            strategy,
            epochs,
            crop,
            tile,
        )
        self.batch_size, self.lr, self.seed, self.patience = batch_size, lr, seed, patience
        self.budget, self.weights, self.device, self.augment = budget, weights, device, augment
        self.precision = precision
        self.val_fraction, self.classes, self.tta, self.verbose = (
            val_fraction,
            classes,
            tta,
            verbose,
        )

    # -- fit ---------------------------------------------------------------------------------

    def fit(self, data, val=None, run_dir=None) -> Segmenter:
        from ..auto.budget import parse_budget
        from ..engine.segmentation import train_segmenter
        from ..tasks.segmentation import Segmentation
        from ..zoo.segmenters import build_segmenter

        started = time.perf_counter()
        if self.epochs < 1:
            raise HeadstartError(f"epochs must be at least 1; got {self.epochs}.")
        _check_side("crop", self.crop)
        _check_side("tile", self.tile)
        strategy, reason = get_whole_model_strategy(self.strategy, "unet", "segmentation")
        source = self._read(data, self.classes)
        self.task_ = Segmentation.from_source(source)
        train, val_items, where = self._split(source, val)
        self.skipped_ = list(source.skipped)
        self.segmenter_spec_ = {
            "model": self.model or DEFAULT_ENCODER,
            "route": "unet",
            "channels": _channels(train),
            "crop": self.crop,
            "tile": self.tile,
        }
        self.segmenter_ = build_segmenter(
            self.segmenter_spec_, len(self.task_.classes), strategy.pretrained, self.weights
        )
        self.segmenter_spec_.update(self.segmenter_.spec())
        self.strategy_, self.strategy_name_, self.strategy_reason_ = strategy, strategy.name, reason
        cfg = self._config(
            lr=self.lr or self.segmenter_.default_lr(strategy.pretrained),
            budget_seconds=parse_budget(self.budget) if self.budget else None,
        )
        facts = train_segmenter(self.segmenter_, strategy, self.task_, train, val_items, cfg)
        self.history_ = facts.pop("history")
        self.val_items_ = val_items
        self._score_validation(val_items)
        self.fit_info_ = {
            **facts,
            "n_train": len(train),
            "n_val": len(val_items),
            "validation": where,
            "train_fingerprint": fingerprint(train),
            "notes": list(source.notes),
            "total_seconds": round(time.perf_counter() - started, 1),
        }
        if run_dir:
            self.save(run_dir)
        return self

    def _config(self, **extra):
        from ..engine.segmentation import SegmentationConfig

        return SegmentationConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            seed=self.seed,
            augment=self.augment,
            device=self.device,
            precision=self.precision,
            patience=self.patience,
            verbose=self.verbose,
            crop=self.segmenter_spec_["crop"],
            tile=self.segmenter_spec_["tile"],
            channels=self.segmenter_spec_["channels"],
            tta=self.tta,
            **extra,
        )

    def _score_validation(self, val_items: list[Item]) -> None:
        from ..engine.segmentation import predict_items

        self.val_predictions_, self.val_truth_, self.metrics_ = [], [], {}
        if val_items:
            predicted, truth = predict_items(self.segmenter_, val_items, self._config())
            self.val_predictions_, self.val_truth_ = predicted, truth
            self.metrics_ = self.task_.score_masks(predicted, truth)

    def _read_source(self, data, classes) -> Source:
        from ..data.masks import read_segmentation

        return read_segmentation(data, classes=classes)

    # -- use ---------------------------------------------------------------------------------

    def predict_volume(self, volume) -> np.ndarray:
        """uint8 (slices, H, W) class indices for an opened input (data/masks.open_inputs)."""
        from ..engine.segmentation import match_channels, segment_image

        self._check_fitted()
        cfg, channels = self._config(), self.segmenter_spec_["channels"]
        masks = [
            segment_image(self.segmenter_, match_channels(volume.slice(k), channels), cfg)
            .argmax(0)
            .numpy()
            .astype(np.uint8)
            for k in range(volume.slices)
        ]
        return np.stack(masks)

    def predict(self, images) -> list[np.ndarray]:
        """Per input, its class-index mask: uint8 (H, W) for an image, (slices, H, W) for a
        volume (a .nii/.nii.gz file or a DICOM series folder). An unusable input raises."""
        from ..data.masks import open_inputs

        self._check_fitted()
        volumes, skipped = open_inputs(_paths(images))
        if skipped:
            raise HeadstartError(f"Cannot segment '{skipped[0].id}': {skipped[0].reason}")
        out = []
        for volume in volumes:
            masks = self.predict_volume(volume)
            out.append(masks[0] if volume.flat else masks)
        return out

    def write_predictions(self, inputs, out_dir, order: list[str] | None = None) -> list[dict]:
        """Segment each input and write its mask (PNG for images, NIfTI for volumes, with the
        input's spacing and orientation) and an overlay PNG to out_dir; one row per input:
        {"input", "mask", "overlay", "pixels": {class: share}} or {"input", "error"}."""
        from ..data.masks import open_inputs
        from ..report.segmentation import overlay_png

        self._check_fitted()
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        volumes, skipped = open_inputs(_paths(inputs))
        rows = {s.id: {"input": s.id, "error": s.reason} for s in skipped}
        for volume in volumes:
            try:
                masks = self.predict_volume(volume)
            except UnreadableItem as err:  # headers read; the pixels can still fail
                rows[volume.id] = {"input": volume.id, "error": str(err)}
                continue
            written = volume.write_mask(masks, out_dir)
            overlay = out_dir / f"{_stem(written).removesuffix('_mask')}_overlay.png"
            middle = volume.slices // 2
            overlay_png(volume.slice(middle), masks[middle], self.task_.classes, overlay)
            counts = np.bincount(masks.reshape(-1), minlength=len(self.task_.classes))
            rows[volume.id] = {
                "input": volume.id,
                "mask": str(written),
                "overlay": str(overlay),
                "slices": volume.slices,
                "pixels": {
                    name: round(float(c) / max(int(counts.sum()), 1), 4)
                    for name, c in zip(self.task_.classes, counts, strict=False)
                },
            }
        ordered = [rows.pop(key) for key in order or [] if key in rows]
        return ordered + list(rows.values())

    def evaluate(self, data, **columns) -> dict:
        """Dice, IoU (foreground means and per class), pixel accuracy and n on labelled data.
        `columns` (the classifiers' table columns) do not apply to segmentation sets."""
        from ..engine.segmentation import predict_items

        self._check_fitted()
        source = self._read(data, classes=self.task_.classes, where="evaluate")
        predicted, truth = predict_items(self.segmenter_, source.items, self._config())
        return self.task_.score_masks(predicted, truth)

    def score(self, data, y=None) -> float:
        return self.evaluate(data)["dice"]

    # -- runs --------------------------------------------------------------------------------

    def to_spec(self):
        from ..runs.segmentation import segmentation_spec

        return segmentation_spec(self)

    def write_artifacts(self, run_dir: Path) -> None:
        from ..runs.segmentation import write_segmentation_artifacts

        write_segmentation_artifacts(self, run_dir)

    def _rebuild(self, spec) -> torch.nn.Module:
        from ..tasks.segmentation import Segmentation
        from ..zoo.segmenters import build_segmenter

        self.task_ = Segmentation(spec.task["classes"])
        self.segmenter_spec_ = dict(spec.head)
        self.val_truth_ = []
        return build_segmenter(self.segmenter_spec_, len(self.task_.classes), False)


def _check_side(name: str, side: int) -> None:
    if side < 32 or side % 32:
        raise HeadstartError(
            f"{name} must be a multiple of 32 and at least 32 (the encoder downsamples by 32); "
            f"got {side}. Try 256."
        )


def _channels(items: list[Item]) -> int:
    """1 when the first images are grey, else 3 (an RGB image among grey ones makes it 3)."""
    from ..data.masks import load_image

    return max(load_image(item).shape[-1] for item in items[:8])


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".png"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _paths(inputs) -> list[Path]:
    if isinstance(inputs, str | Path):
        inputs = [inputs]
    return [Path(p) for p in inputs]
