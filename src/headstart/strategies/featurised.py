"""Strategies without a backbone: a no-transfer featuriser + the linear probe's linear model.

The strategy carries its featuriser (headstart.featurisers) where the others have a backbone:
build() makes a fresh one, fit() fits it on the training items and a regularised linear model
on its rows (C by cross-validation, as linear-probe does), features() gives its rows for new
items. A run saves the featuriser's config as <name>.json, its arrays as featuriser.* and the
linear model as head.* (float64) next to them in model.safetensors; nothing is pickled, and
predictions after loading run the very same code, so they are identical.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..errors import HeadstartError
from ..featurisers import Featuriser
from ..featurisers.base import read_config
from ..files import write_bytes_atomic
from .base import Strategy

FEATURISER_PREFIX = "featuriser."


class FeaturiserStrategy(Strategy):
    """A featuriser stands in for the backbone; nothing pre-trained is read or trained."""

    needs_backbone = False
    needs_probe = False
    frozen = True
    info_key: ClassVar[str] = "features"  # what fit_info calls the featuriser's width

    def __init__(self, lr=None, lr_decay=None):
        super().__init__(lr, lr_decay)
        self.featuriser = self.new_featuriser()
        self.info: dict = {}

    def new_featuriser(self) -> Featuriser:
        raise NotImplementedError

    def build(self, model: str, modality: str, weights=None, seed: int = 0, preprocess=None):
        """No backbone: a fresh featuriser, fitted by fit()."""
        self.featuriser = self.new_featuriser()
        return None

    def fit(self, backbone, head, task, train, val, cfg, *, progress=None):
        from .frozen import fit_linear

        x = self.featuriser.fit(train.items).transform(train.items)
        weight, bias, info = fit_linear(x, train.targets, task, cfg.seed)
        self.info = {**info, self.info_key: self.featuriser.dim}
        return None, LinearHead(weight, bias, self.head_spec()), []

    def features(self, backbone, source, extract):
        """The featuriser's rows for the source's items (no backbone, no cache)."""
        from ..features.extract import Embeddings, Stats

        rows = self.featuriser.transform(source.items)
        stats = Stats(items=len(source.items) + len(source.skipped), skipped=len(source.skipped))
        return Embeddings(rows, list(source.items), list(source.skipped), stats)

    def logits(self, head, features) -> torch.Tensor:
        return head.logits(features)

    def head_spec(self) -> dict:
        """config.json's "head": what the linear model reads, and where the featuriser is."""
        return {"kind": self.name, "file": f"{self.featuriser.name}.json"}

    # -- saving and restoring ----------------------------------------------------------------

    def saved_tensors(self, backbone) -> dict[str, torch.Tensor]:
        _, arrays = self.featuriser.state()
        return {
            FEATURISER_PREFIX + k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64))
            for k, v in arrays.items()
        }

    def saved_files(self, folder: Path) -> dict[str, str]:
        data = self.featuriser.config_bytes()
        name = f"{self.featuriser.name}.json"
        write_bytes_atomic(Path(folder) / name, data)
        return {name: hashlib.sha256(data).hexdigest()}

    def restore(self, spec, tensors, folder=None):
        head_state = {k[5:]: v for k, v in tensors.items() if k.startswith("head.")}
        arrays = {
            k.removeprefix(FEATURISER_PREFIX): v.double().numpy()
            for k, v in tensors.items()
            if k.startswith(FEATURISER_PREFIX)
        }
        if "file" in spec.head:
            if folder is None:
                raise HeadstartError(f"A {self.name} run needs its folder to load its featuriser.")
            config = read_config(Path(folder) / spec.head["file"])
        else:  # saved before the featurisers: their state sat in the head spec and tensors
            config, arrays = self.legacy_state(spec.head, head_state)
        self.featuriser = type(self.new_featuriser()).from_state(config, arrays)
        return None, LinearHead.load(spec.head, head_state, self.featuriser.dim)

    def legacy_state(self, head_spec: dict, head_state: dict) -> tuple[dict, dict]:
        raise HeadstartError(f"The saved {self.name} model names no featuriser file. Re-run fit.")

    def trained_parameters(self, backbone) -> int:
        return 0  # no backbone; the linear model is counted as the head

    def fit_info(self) -> dict:
        return {self.name: dict(self.info)}


class LinearHead:
    """logits = rows @ weight.T + bias, in float64 (rows dense or scipy sparse)."""

    def __init__(self, weight, bias, spec: dict):
        self.weight = np.asarray(weight, np.float64)  # (out_dim, features)
        self.bias = np.asarray(bias, np.float64)
        self._spec = dict(spec)

    def logits(self, features) -> torch.Tensor:
        if features.shape[0] == 0:
            return torch.zeros((0, len(self.bias)), dtype=torch.float32)
        raw = np.asarray(features @ self.weight.T) + self.bias
        return torch.from_numpy(raw).float()

    def spec(self) -> dict:
        out = {"features": int(self.weight.shape[1]), "out_dim": int(len(self.bias))}
        return {**self._spec, **out}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "weight": torch.from_numpy(np.ascontiguousarray(self.weight)),
            "bias": torch.from_numpy(np.ascontiguousarray(self.bias)),
        }

    def parameters(self) -> list[torch.Tensor]:
        return list(self.state_dict().values())

    def eval(self) -> LinearHead:
        return self

    @classmethod
    def load(cls, spec: dict, state: dict, features: int) -> LinearHead:
        try:
            weight, bias = state["weight"].double().numpy(), state["bias"].double().numpy()
        except KeyError as err:
            raise HeadstartError(f"The saved linear model lacks {err}. Re-run fit.") from None
        if weight.shape != (len(bias), features):
            raise HeadstartError(
                f"The saved weights {tuple(weight.shape)} do not match the featuriser's "
                f"{features} features: the run directory is inconsistent. Re-run fit."
            )
        keep = {k: v for k, v in spec.items() if k not in ("features", "out_dim")}
        return cls(weight, bias, keep)
