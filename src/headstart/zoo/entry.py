"""ZooEntry: a registered backbone's name, modality, typed pre-trained config and factory."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import HeadstartError
from .backbone import Backbone
from .config import Modality, PretrainedCfg, WeightSource
from .weights import hf_hub_cached, package_path, sha256_file

Factory = Callable[["ZooEntry", "Path | None", bool], Backbone]


@dataclass(frozen=True)
class ZooEntry:
    name: str
    modality: Modality
    architecture: str
    cfg: PretrainedCfg
    factory: Factory = field(repr=False, compare=False)
    description: str = ""
    num_params: int = 0

    def build(self, pretrained: bool = True, weights: str | os.PathLike | None = None) -> Backbone:
        """Pre-trained (or random-init) backbone; `weights` (a local file) replaces the default."""
        path = Path(weights).expanduser() if weights else None
        if path is not None and not path.is_file():
            raise HeadstartError(
                f"Weights file '{path}' does not exist (or is not a file). Check --weights."
            )
        return self.factory(self, path, pretrained)

    def available_offline(self) -> bool:
        return locate_weights(self.cfg.weights) is not None

    def describe(self) -> dict:
        w = self.cfg.weights
        return {
            "name": self.name,
            "modality": self.modality,
            "architecture": self.architecture,
            "parameters": self.num_params,
            "feature_dim": self.cfg.feature_dim,
            "weight_source": f"{w.kind}:{w.location}",
            "licence": w.licence,
            "available_offline": self.available_offline(),
            "description": self.description,
        }


def locate_weights(source: WeightSource) -> Path | None:
    """Local path of the weights when they can be had without a network, else None."""
    if source.kind == "package":
        package, _, rel = source.location.partition(":")
        return package_path(package, rel)
    if source.kind == "file":
        path = Path(source.location).expanduser()
        return path if path.exists() else None
    if source.kind == "hub":
        repo, _, filename = source.location.partition(":")
        found = hf_hub_cached(repo, filename or "model.safetensors")
        return Path(found) if found else None
    return None


def unreachable(entry: ZooEntry, why: str, bundled: list[str]) -> HeadstartError:
    """The one-line error for weights that cannot be had, naming bundled alternatives."""
    alternatives = ", ".join(bundled) or "none"
    return HeadstartError(
        f"Pre-trained weights for {entry.name!r} ({entry.cfg.weights.location}) cannot be reached "
        f"({why}). Bundled {entry.modality} backbones that work offline: {alternatives}. "
        f"Or use a local file: --model {entry.name} --weights FILE.safetensors (or .pt/.pth/.bin)."
    )


def file_source(path: Path, licence: str) -> WeightSource:
    return WeightSource("file", str(path), sha256_file(path), licence)


def with_source(entry: ZooEntry, source: WeightSource) -> ZooEntry:
    return replace(entry, cfg=replace(entry.cfg, weights=source))
