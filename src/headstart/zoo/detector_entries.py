"""Whole pre-trained detectors: where their weights come from, without importing torch (so
`headstart models` and `fetch` stay light). The networks are in detectors.py and yolox.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import HeadstartError
from .config import WeightSource

YOLOX_URL = "https://github.com/Kazuhito00/YOLOX-ONNX-TFLite-Sample/raw/main/model/yolox_nano.onnx"
YOLOX_SHA256 = "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14"


@dataclass(frozen=True)
class DetectorEntry:
    """A whole pre-trained detector: where its weights come from and how it is fed."""

    name: str
    size: int  # the side it was trained at, and the default for fine-tuning
    weights: WeightSource
    file_name: str
    about: str
    parameters: int
    size_mb: int = 4

    @property
    def fetch(self):
        from .fetch import UrlFile

        sha = self.weights.sha256 or ""
        return UrlFile(self.weights.location, self.name, self.file_name, sha, self.size_mb)


DETECTORS: dict[str, DetectorEntry] = {}


def register_detector(entry: DetectorEntry) -> DetectorEntry:
    DETECTORS[entry.name] = entry
    return entry


register_detector(
    DetectorEntry(
        name="yolox_nano",
        size=416,
        weights=WeightSource("url", YOLOX_URL, YOLOX_SHA256, "Apache-2.0 (Megvii YOLOX)"),
        file_name="yolox_nano.onnx",
        about="YOLOX-Nano, COCO 80 classes (mAP@[.5:.95] 25.8), ONNX export of the original",
        parameters=910_000,
    )
)


def detector_weights(name: str, weights: str | Path | None) -> Path:
    """The ONNX file of a whole pre-trained detector: --weights, else the fetched copy."""
    from .weights import check_sha256

    entry = DETECTORS[name]
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise HeadstartError(f"Weights file '{path}' does not exist. Check --weights.")
        return path
    path = entry.fetch.weights
    if not path.is_file():
        raise HeadstartError(
            f"The COCO weights of {name!r} are not fetched yet (looked for '{path}'). Fetch them "
            f"once: headstart fetch {name} (about 4 MB from GitHub), or pass --weights FILE; or "
            "train the offline route: --model efficientnet_lite0."
        )
    fix = f"Fetch them again: headstart fetch {name} --force."
    check_sha256(path, entry.weights.sha256, f"Weights file '{path}' for {name!r}", fix)
    return path


def detector_spec(model: str) -> dict:
    """{"route", "model", "size"} for a model name: a whole detector, else FCOS on a backbone."""
    if model in DETECTORS:
        return {"route": "yolox", "model": model, "size": DETECTORS[model].size}
    return {"route": "fcos", "model": model, "size": 416}
