"""The Featuriser interface, its registry, and saving one as JSON + safetensors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import HeadstartError, check_choice
from ..files import write_bytes_atomic

FEATURISERS: dict[str, type[Featuriser]] = {}


class Featuriser:
    """Items (or plain texts / image paths) -> a feature matrix, with state fitted on data.

    fit(items) -> self; transform(items) -> (N, dim) matrix (numpy, or scipy sparse rows for
    TF-IDF); state() -> (JSON-able config, {name: float64 array}) and from_state(config, arrays)
    its inverse, which save() / load_featuriser() write and read as <name>.json and
    <name>.safetensors. `about` says what the features are, in words."""

    name: ClassVar[str] = ""
    modality: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            FEATURISERS[cls.name] = cls

    @property
    def about(self) -> str:
        raise NotImplementedError

    @property
    def dim(self) -> int:
        """Columns of transform()'s matrix (0 before fit where it depends on the data)."""
        raise NotImplementedError

    def fit(self, items) -> Featuriser:
        raise NotImplementedError

    def transform(self, items):
        raise NotImplementedError

    def fit_transform(self, items):
        return self.fit(items).transform(items)

    @classmethod
    def control_rows(cls, items) -> tuple[Any, list]:
        """(rows, kept items): the no-transfer features `rank` scores, fitted on `items`."""
        return cls().fit_transform(items), list(items)

    @classmethod
    def for_modality(cls, modality: str) -> type[Featuriser]:
        """The featuriser that is the no-transfer control of `modality`."""
        from ..modalities import get_modality

        return FEATURISERS[get_modality(modality).control_strategy]

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        raise NotImplementedError

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray]) -> Featuriser:
        raise NotImplementedError

    def config_bytes(self) -> bytes:
        """state()'s config as the UTF-8 JSON that <name>.json holds."""
        config, _ = self.state()
        return (json.dumps(config, ensure_ascii=False) + "\n").encode("utf-8")

    def save(self, folder: str | Path) -> dict[str, str]:
        """<name>.json (config) and <name>.safetensors (arrays); returns {file name: sha256}."""
        from safetensors.numpy import save

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        _, arrays = self.state()
        arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        files = {f"{self.name}.json": self.config_bytes(), f"{self.name}.safetensors": save(arrays)}
        for file, data in files.items():
            write_bytes_atomic(folder / file, data)
        return {file: hashlib.sha256(data).hexdigest() for file, data in files.items()}


def get_featuriser(name: str, **options) -> Featuriser:
    check_choice("featuriser", name, list(FEATURISERS))
    return FEATURISERS[name](**options)


def read_config(path: Path) -> dict:
    """A featuriser's saved JSON config; a missing or garbled file is a one-line error."""
    if not path.is_file():
        raise HeadstartError(f"'{path}' is missing: the featuriser's state is incomplete. Re-fit.")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise HeadstartError(f"'{path}' is not a saved featuriser ({err}). Re-run fit.") from None
    if not isinstance(config, dict):
        raise HeadstartError(f"'{path}' is not a saved featuriser (not a JSON object). Re-run fit.")
    return config


def load_featuriser(folder: str | Path, name: str) -> Featuriser:
    """The featuriser save() wrote into `folder` (no code is unpickled)."""
    from safetensors.numpy import load_file

    check_choice("featuriser", name, list(FEATURISERS))
    folder = Path(folder)
    config = read_config(folder / f"{name}.json")
    arrays_path = folder / f"{name}.safetensors"
    if not arrays_path.is_file():
        raise HeadstartError(f"'{arrays_path}' is missing: the saved featuriser is incomplete.")
    return FEATURISERS[name].from_state(config, load_file(str(arrays_path)))
