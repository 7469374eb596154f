"""ObjectDetector: boxes from a few hundred labelled images, with the classifiers' contract.

    det = ObjectDetector(model="yolox_nano", strategy="fine-tune").fit("raccoon/", val="val/")
    det.predict(["a.jpg"])  # [[{"box": [x1, y1, x2, y2], "label": "raccoon", "score": 0.93}]]
    det.evaluate("test/")   # {"map50": ..., "map": ..., "n": ..., "per_class": ...}

Data is a detection set in Pascal VOC, COCO or YOLO layout (data/boxes.py). Two routes
(zoo/detectors.py): a COCO-pretrained YOLOX-Nano with new class convolutions, or an FCOS head and
feature pyramid on a bundled ImageNet backbone (offline, no extra weights).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from ..data.boxes import read_detection
from ..data.sources import Item, Source
from ..errors import HeadstartError, UnreadableItem
from ..strategies.whole import get_whole_model_strategy
from ..tasks.detection import Detection
from .base import fingerprint
from .whole import WholeModelEstimator

DEFAULT_DETECTOR, OFFLINE_DETECTOR = "yolox_nano", "efficientnet_lite0"
PREDICT_THRESHOLD = 0.3  # boxes predict() reports; evaluation scores all boxes down to 0.01


class ObjectDetector(WholeModelEstimator):
    """Fine-tune a pre-trained detector (or a detection head on a pre-trained backbone).

    model: yolox_nano (COCO-pretrained, fetched) or an image backbone name (FCOS on it); ""
    picks yolox_nano when its weights are here, else efficientnet_lite0.
    strategy: head-only, freeze-unfreeze, fine-tune, from-scratch, or auto.
    size: the square side images are letterboxed to (default: the detector's, 416).
    budget: seconds (or "20m") of training at most; the best epoch so far is kept.
    """

    model_attr = "detector_"

    def __init__(
        self,
        model: str = "",
        strategy: str = "auto",
        *,
        epochs: int = 30,
        size: int | None = None,
        batch_size: int = 8,
        lr: float | None = None,
        seed: int = 0,
        patience: int = 0,
        budget: str | float | None = None,
        weights: str | None = None,
        device: str = "auto",
        augment: bool = True,
        val_fraction: float = 0.2,
        score_threshold: float = PREDICT_THRESHOLD,
        verbose: bool = True,
    ):
        self.model, self.strategy, self.epochs, self.size = model, strategy, epochs, size
        self.batch_size, self.lr, self.seed, self.patience = batch_size, lr, seed, patience
        self.budget, self.weights, self.device, self.augment = budget, weights, device, augment
        self.val_fraction, self.score_threshold, self.verbose = (
            val_fraction,
            score_threshold,
            verbose,
        )

    # -- fit ---------------------------------------------------------------------------------

    def fit(self, data, val=None, run_dir=None) -> ObjectDetector:
        from ..auto.budget import parse_budget
        from ..engine.detection import DetectionConfig, train_detector
        from ..zoo.detector_entries import detector_spec
        from ..zoo.detectors import build_detector

        started = time.perf_counter()
        if self.epochs < 1:
            raise HeadstartError(f"epochs must be at least 1; got {self.epochs}.")
        model = self.model or self._default_model()
        self.detector_spec_ = detector_spec(model)
        strategy, reason = get_whole_model_strategy(self.strategy, self.detector_spec_["route"])
        source = self._read(data)
        self.task_ = Detection.from_source(source)
        train, val_items, where = self._split(source, val)
        self.skipped_ = list(source.skipped)
        size = self.size or self.detector_spec_["size"]
        _check_size(size)
        self.detector_spec_["size"] = size
        self.detector_ = build_detector(
            self.detector_spec_, len(self.task_.classes), strategy.pretrained, self.weights
        )
        self.strategy_, self.strategy_name_, self.strategy_reason_ = strategy, strategy.name, reason
        cfg = DetectionConfig(
            size=size,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr or self.detector_.default_lr(strategy.pretrained),
            seed=self.seed,
            augment=self.augment,
            budget_seconds=parse_budget(self.budget) if self.budget else None,
            device=self.device,
            patience=self.patience,
            verbose=self.verbose,
        )
        facts = train_detector(self.detector_, strategy, self.task_, train, val_items, cfg)
        self.history_ = facts.pop("history")
        self.val_items_ = val_items
        self.val_predictions_ = self._detect(val_items) if val_items else []
        truth = [i.target for i in val_items]
        self.metrics_ = (
            self.task_.score_predictions(self.val_predictions_, truth) if val_items else {}
        )
        self.fit_info_ = {
            **facts,
            "n_train": len(train),
            "n_val": len(val_items),
            "validation": where,
            "train_boxes": sum(len(i.target) for i in train),
            "train_fingerprint": fingerprint(train),
            "notes": list(source.notes),
            "total_seconds": round(time.perf_counter() - started, 1),
        }
        if run_dir:
            self.save(run_dir)
        return self

    def _read_source(self, data, classes) -> Source:
        return read_detection(data, classes=classes)

    def _default_model(self) -> str:
        from ..zoo.detector_entries import detector_weights

        try:
            detector_weights(DEFAULT_DETECTOR, self.weights)
        except HeadstartError:
            if self.verbose:
                print(
                    f"model: {OFFLINE_DETECTOR} with an FCOS head ({DEFAULT_DETECTOR}'s COCO "
                    f"weights are not fetched: headstart fetch {DEFAULT_DETECTOR})",
                    file=sys.stderr,
                )
            return OFFLINE_DETECTOR
        return DEFAULT_DETECTOR

    # -- use ---------------------------------------------------------------------------------

    def _detect(self, items: list[Item], threshold: float = 0.01) -> list[dict]:
        from ..engine.detection import predict_items

        return predict_items(self.detector_, items, self.detector_spec_["size"], threshold)

    def predict(self, images) -> list[list[dict]]:
        """Per image, its boxes {"box": [x1, y1, x2, y2] in the image's pixels, "label",
        "score"}, best first, scores at least score_threshold. An unreadable image raises."""
        self._check_fitted()
        items = [Item(id=str(p), path=Path(p)) for p in _paths(images)]
        found = self._detect(items, self.score_threshold)
        return [self._records(f) for f in found]

    def prediction_records(self, source: Source, order: list[str] | None = None) -> list[dict]:
        """`headstart predict` rows: {"input", "boxes": [...]} per image, or {"input", "error"}
        for one that cannot be decoded (the others still run)."""
        from ..engine.detection import decode_image, detect_images

        self._check_fitted()
        by_id = {skip.id: {"input": skip.id, "error": skip.reason} for skip in source.skipped}
        for item in source.items:
            try:
                image = decode_image(item.path)
            except UnreadableItem as err:
                by_id[item.id] = {"input": item.id, "error": str(err)}
                continue
            size = self.detector_spec_["size"]
            (found,) = detect_images(self.detector_, [image], size, self.score_threshold)
            by_id[item.id] = {"input": item.id, "boxes": self._records(found)}
        rows = [by_id.pop(key) for key in order or [] if key in by_id]
        return rows + list(by_id.values())

    def _records(self, found: dict) -> list[dict]:
        order = found["scores"].argsort(descending=True)
        return [
            {
                "box": [round(float(v), 1) for v in found["boxes"][i]],
                "label": self.task_.classes[int(found["labels"][i])],
                "score": round(float(found["scores"][i]), 4),
            }
            for i in order
        ]

    def evaluate(self, data, **columns) -> dict:
        """mAP@0.5, mAP@[.5:.95] (COCO), per-class AP and n on labelled data. `columns`
        (text_col, label_col: the classifiers' table columns) do not apply to detection sets."""
        self._check_fitted()
        source = self._read(data, classes=self.task_.classes, where="evaluate")
        predicted = self._detect(source.items)
        return self.task_.score_predictions(predicted, [i.target for i in source.items])

    def score(self, data, y=None) -> float:
        return self.evaluate(data)["map50"]

    # -- runs --------------------------------------------------------------------------------

    def to_spec(self):
        from ..runs.detection import detection_spec

        return detection_spec(self)

    def write_artifacts(self, run_dir: Path) -> None:
        from ..runs.detection import write_detection_artifacts

        write_detection_artifacts(self, run_dir)

    def _rebuild(self, spec) -> torch.nn.Module:
        from ..zoo.detectors import build_detector

        self.task_ = Detection(spec.task["classes"])
        self.detector_spec_ = dict(spec.head)
        return build_detector(self.detector_spec_, len(self.task_.classes), False)


def _check_size(size: int) -> None:
    if size < 64 or size % 32:
        raise HeadstartError(
            f"size must be a multiple of 32 and at least 64 (the detectors downsample by 32); "
            f"got {size}. Try 416."
        )


def _paths(images) -> list[Path]:
    from ..data.suffixes import IMAGE_SUFFIXES

    if isinstance(images, str | Path):
        images = [images]
    out: list[Path] = []
    for value in images:
        path = Path(value)
        if path.is_dir():
            out += sorted(
                p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
        else:
            out.append(path)
    return out
