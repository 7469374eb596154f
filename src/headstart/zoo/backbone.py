"""The one interface every backbone answers, whatever its modality (timm's contract).

- forward_features(batch) -> UNPOOLED features: images (B, C, H, W), the final feature map in
  timm's meaning (token models: (B, N, D)); texts (B, T, D), the last hidden states
- pool(features, batch) -> (B, feature_dim): the embedding the cache stores (images: timm's
  forward_head(..., pre_logits=True); texts: masked mean / cls / last token, then optional
  normalisation, as the preprocess config says)
- forward(batch) = pool(forward_features(batch), batch): the pooled embedding, so `backbone(batch)`
  is what extraction and training call
- forward_intermediates(batch) -> one unpooled tensor per group of groups(), input to output (the
  output of each group); the last one is forward_features(batch)
- pool_intermediate(tensor, batch) -> (B, channels): any intermediate pooled (spatial mean of a
  4-D map, masked token mean of 3-D token states)
- forward_head(pooled) -> source-task logits, when the weights carry a source head
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

    def forward(self, batch) -> torch.Tensor:
        return self.pool(self.forward_features(batch), batch)

    def forward_features(self, batch) -> torch.Tensor:
        raise NotImplementedError

    def pool(self, features: torch.Tensor, batch) -> torch.Tensor:
        raise NotImplementedError

    def forward_intermediates(self, batch) -> list[torch.Tensor]:
        raise NotImplementedError

    def pool_intermediate(self, tensor: torch.Tensor, batch) -> torch.Tensor:
        mask = batch.get("attention_mask") if isinstance(batch, dict) else None
        return pool_intermediate(tensor, mask)

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


def pool_intermediate(tensor: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B, channels) from a 4-D map (spatial mean) or 3-D token states (masked token mean)."""
    if tensor.dim() == 4:  # (B, C, H, W)
        return tensor.mean(dim=(2, 3))
    if tensor.dim() == 3:  # (B, T, D)
        if mask is None:
            return tensor.mean(dim=1)
        weights = mask.unsqueeze(-1).to(tensor.dtype)
        return (tensor * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    return tensor.flatten(1)
