"""The one interface every backbone answers, whatever its modality.

- forward_features(batch) -> (B, feature_dim) pooled embedding
- forward_head(features) -> source-task logits, when the weights carry a source head
- groups() -> ordered parameter groups, input to output, without the source head
- reset_head() drops the source head
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .config import PretrainedCfg


@dataclass
class ParamGroup:
    name: str
    params: list[nn.Parameter] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)

    def numel(self) -> int:
        return sum(p.numel() for p in self.params)


class Backbone(nn.Module):
    """Base class: a pre-trained network with a uniform surface for strategies and extraction."""

    modality: str = ""

    def __init__(self, name: str, cfg: PretrainedCfg, weight_id: str):
        super().__init__()
        self.name = name
        self.cfg = cfg
        # identifies the exact weights: sha256 of the file, or 'random-<seed>' for random init
        self.weight_id = weight_id

    @property
    def feature_dim(self) -> int:
        return self.cfg.feature_dim

    @property
    def preprocess(self):
        return self.cfg.preprocess

    def forward(self, batch):
        return self.forward_features(batch)

    def forward_features(self, batch) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} has no source-task head.")

    def head_parameters(self) -> list[nn.Parameter]:
        return []

    def reset_head(self) -> None:
        raise NotImplementedError

    def groups(self) -> list[ParamGroup]:
        raise NotImplementedError

    def has_source_head(self) -> bool:
        return bool(self.head_parameters())
