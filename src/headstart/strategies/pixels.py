"""`pixels`: raw pixels scaled small + a linear model, no backbone: the no-transfer image control.

It is to images what `tfidf` is to texts. Every image is decoded, its shorter side resized to
`side` and centre-cropped to side x side (bicubic, antialiased when shrinking), optionally turned
grey, scaled to [0, 1] and standardised per pixel; a logistic regression (C by cross-validation,
as the linear probe does) is fitted on that. Where this beats pre-trained features, the data is
far from what the backbones saw (strong domain shift): transfer does not pay there.

A fitted model is its options (in config.json) and standardisation plus weights (safetensors).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..data.images import load_rgb, to_model_tensor
from ..errors import HeadstartError, UnreadableItem
from ..heads import Task
from ..zoo.config import ImagePreprocess
from .base import Strategy

DEFAULT_SIDE = 16


def pixel_matrix(paths: Sequence, side: int = DEFAULT_SIDE, grey: bool = False) -> np.ndarray:
    """(N, side * side * channels) float64 pixels in [0, 1]; an unreadable file is an error."""
    pre = ImagePreprocess(input_size=side, crop_pct=1.0, interpolation="bicubic")
    rows = []
    for path in paths:
        try:
            img = load_rgb(path, draft_to=side)
        except UnreadableItem as err:
            raise HeadstartError(
                f"'{path}' cannot be used by the pixels strategy: {err}. Remove or fix the file."
            ) from None
        if grey:
            img = img.convert("L").convert("RGB")
        array = to_model_tensor(img, pre).numpy()
        rows.append((array[:1] if grey else array).reshape(-1))
    if not rows:
        return np.zeros((0, side * side * (1 if grey else 3)))
    return np.stack(rows).astype(np.float64) / 255.0


def _path(item) -> Path:
    path = getattr(item, "path", item)
    if path is None:
        raise HeadstartError("The pixels strategy reads image files; this item has no path.")
    return Path(path)


class PixelsLogistic(Strategy):
    name = "pixels"
    summary = (
        "raw pixels scaled to 16x16 + logistic regression, no backbone: the control that says "
        "whether transfer pays on these images"
    )
    frozen = True
    classic = True  # its own features and model; the backbone is never built
    modalities = ("image",)
    modality_hint = "For texts the no-backbone control is tfidf."
    options: ClassVar[dict[str, type]] = {"side": int, "grey": bool}
    aliases: ClassVar[dict[str, str]] = {"size": "side", "gray": "grey"}
    example = "pixels:side=32,grey=true"

    def __init__(self, lr=None, lr_decay=None, side: int = DEFAULT_SIDE, grey: bool = False):
        super().__init__(lr, lr_decay)
        if not 4 <= side <= 128:
            raise HeadstartError(f"pixels: side must be between 4 and 128; got {side}.")
        self.side, self.grey = side, grey

    def describe(self) -> dict:
        return {**super().describe(), "side": self.side, "grey": self.grey}

    def fit_model(
        self, paths: Sequence, targets: np.ndarray, task: Task, seed: int = 0
    ) -> tuple[PixelsModel, dict]:
        from .frozen import fit_linear

        x = pixel_matrix([_path(p) for p in paths], self.side, self.grey)
        shift = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale < 1e-6] = 1.0  # a constant pixel (a border) carries nothing; leave it at 0
        weight, bias, info = fit_linear((x - shift) / scale, targets, task, seed)
        model = PixelsModel(self.side, self.grey, shift, scale, weight, bias)
        self.info = {**info, "features": int(x.shape[1])}
        return model, self.info

    def fit_info(self) -> dict:
        return {"pixels": getattr(self, "info", {})}

    def load_model(self, spec: dict, state: dict, run_dir: Path) -> PixelsModel:
        return PixelsModel.load(spec, state)


class PixelsModel:
    """logits = standardised pixels @ weight.T + bias, in float64."""

    kind: ClassVar[str] = "pixels"

    def __init__(self, side: int, grey: bool, shift, scale, weight, bias):
        self.side, self.grey = int(side), bool(grey)
        self.shift, self.scale = np.asarray(shift, np.float64), np.asarray(scale, np.float64)
        self.weight = np.asarray(weight, np.float64)  # (out_dim, features)
        self.bias = np.asarray(bias, np.float64)

    def features(self, items) -> np.ndarray:
        x = pixel_matrix([_path(i) for i in items], self.side, self.grey)
        return (x - self.shift) / self.scale

    def logits(self, items) -> torch.Tensor:
        if not len(items):
            return torch.zeros((0, len(self.bias)), dtype=torch.float32)
        return torch.from_numpy(self.features(items) @ self.weight.T + self.bias).float()

    def spec(self) -> dict:
        return {
            "kind": self.kind,
            "side": self.side,
            "grey": self.grey,
            "features": int(len(self.shift)),
            "out_dim": int(len(self.bias)),
        }

    def state_dict(self) -> dict[str, torch.Tensor]:
        arrays = {
            "weight": self.weight,
            "bias": self.bias,
            "shift": self.shift,
            "scale": self.scale,
        }
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}

    def eval(self) -> PixelsModel:
        return self

    @classmethod
    def load(cls, spec: dict, state: dict) -> PixelsModel:
        try:
            arrays = {k: state[k].double().numpy() for k in ("weight", "bias", "shift", "scale")}
            side, grey = int(spec["side"]), bool(spec["grey"])
        except (KeyError, TypeError, ValueError) as err:
            raise HeadstartError(
                f"The saved pixels model is incomplete ({err}). Re-run fit."
            ) from None
        expected = side * side * (1 if grey else 3)
        if arrays["weight"].shape != (len(arrays["bias"]), expected):
            raise HeadstartError(
                f"The saved pixels weights {tuple(arrays['weight'].shape)} do not match "
                f"{side}x{side} {'grey' if grey else 'RGB'} inputs. Re-run fit."
            )
        return cls(side, grey, arrays["shift"], arrays["scale"], arrays["weight"], arrays["bias"])
