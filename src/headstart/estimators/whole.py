"""What the whole-model estimators (ObjectDetector, Segmenter) share: reading a set with its
skips and notes shown, the validation split, and the run format (the model's whole state in
model.safetensors, rebuilt from config.json without unpickling anything)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import torch
from sklearn.base import BaseEstimator

from ..data.sources import Item, Source
from ..errors import HeadstartError
from .base import NotFittedError

SHOWN_LINES = 10  # skips and notes of one kind printed before the rest is counted


class WholeModelEstimator(BaseEstimator):
    """Subclasses set `model_attr` (the fitted module's attribute) and write `_read_source`,
    `_rebuild` and their task's fit and predict."""

    modality = "image"
    model_attr = ""

    def _read_source(self, data, classes) -> Source:
        raise NotImplementedError

    def _rebuild(self, spec) -> torch.nn.Module:
        """Set task_ and the model's spec from a RunSpec; return the module (random weights)."""
        raise NotImplementedError

    @property
    def fitted_model(self) -> torch.nn.Module:
        self._check_fitted()
        return getattr(self, self.model_attr)

    def _check_fitted(self) -> None:
        if not hasattr(self, self.model_attr):
            name = type(self).__name__
            raise NotFittedError(
                f"This {name} is not fitted yet: call fit(data) first, or load a run with "
                f"{name}.load(RUN_DIR)."
            )

    # -- data --------------------------------------------------------------------------------

    def _read(self, data, classes=None, where: str = "train") -> Source:
        source = data if isinstance(data, Source) else self._read_source(data, classes)
        if self.verbose:
            for kind, lines in (("skipped", source.skipped), ("note", source.notes)):
                for line in lines[:SHOWN_LINES]:
                    text = f"{line.id}: {line.reason}" if kind == "skipped" else line
                    print(f"{kind} ({where}): {text}", file=sys.stderr)
                if len(lines) > SHOWN_LINES:
                    print(f"... {len(lines) - SHOWN_LINES} more ({kind}, {where})", file=sys.stderr)
        return source

    def _split(self, source: Source, val) -> tuple[list[Item], list[Item], str]:
        if val is not None:
            held = self._read(val, classes=self.task_.classes, where="val").items
            return source.items, held, str(val)
        if self.val_fraction == 0:  # few images: every one trains, the last epoch is kept
            return list(source.items), [], "none (val_fraction 0: trained on every image)"
        if not 0 < self.val_fraction < 1:
            raise HeadstartError(
                f"val_fraction must be in [0, 1) when no validation data is given; got "
                f"{self.val_fraction}. Pass --val DATA, or a fraction such as 0.2."
            )
        items = list(source.items)
        random.Random(self.seed).shuffle(items)
        cut = max(1, round(len(items) * self.val_fraction))
        if len(items) - cut < 1:
            raise HeadstartError(
                f"{len(items)} image(s) cannot be split into training and validation; add images, "
                "pass --val DATA, or --val-fraction 0."
            )
        return items[cut:], items[:cut], f"{cut} images held out ({self.val_fraction:.0%})"

    @property
    def classes_(self):
        self._check_fitted()
        return list(self.task_.classes)

    # -- runs --------------------------------------------------------------------------------

    def save(self, run_dir) -> Path:
        from ..runs.store import save_run

        self._check_fitted()
        return save_run(self, Path(run_dir))

    def tensors(self) -> dict[str, torch.Tensor]:
        """What model.safetensors holds: the whole model's state."""
        state = self.fitted_model.state_dict()
        return {k: v.detach().cpu().contiguous() for k, v in state.items()}

    @classmethod
    def load(cls, run_dir):
        from ..runs.store import load_run

        return load_run(cls, Path(run_dir))

    @classmethod
    def from_spec(cls, spec, state: dict, run_dir: Path | None = None):
        """The fitted estimator a RunSpec and its tensors describe (no code is unpickled)."""
        from ..strategies.whole import WHOLE_MODEL_STRATEGIES

        names = cls._get_param_names()
        est = cls(**{k: v for k, v in spec.params.items() if k in names})
        model = est._rebuild(spec)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise HeadstartError(
                f"The weights in '{run_dir}' do not fit its model ({len(missing)} missing, "
                f"{len(unexpected)} unexpected tensors). Re-run fit."
            )
        model.eval()
        setattr(est, cls.model_attr, model)
        est.strategy_ = WHOLE_MODEL_STRATEGIES[spec.strategy["name"]]()
        est.strategy_name_ = spec.strategy["name"]
        est.strategy_reason_ = spec.strategy.get("reason", "")
        est.fit_info_, est.history_ = spec.fit, spec.history
        est.skipped_, est.val_items_, est.val_predictions_, est.metrics_ = [], [], [], {}
        return est
