"""A head: a fixed input normaliser, then a linear layer or the classic Dense(1024)-ReLU-Dropout."""

from __future__ import annotations

import torch
from torch import nn


class Head(nn.Module):
    """logits = net((features - shift) / scale).

    The normaliser is fitted once on training features (centring and one global scale: per-feature
    standardisation from a handful of examples is too noisy for few-shot data) and then fixed.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 0, dropout: float = 0.0):
        super().__init__()
        self.in_dim, self.out_dim, self.hidden, self.dropout = in_dim, out_dim, hidden, dropout
        self.register_buffer("shift", torch.zeros(in_dim))
        self.register_buffer("scale", torch.ones(()))
        if hidden:
            self.net = nn.Sequential(
                nn.Linear(in_dim, hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, out_dim),
            )
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, out_dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.shift) / self.scale)

    @torch.no_grad()
    def fit_normaliser(self, features: torch.Tensor) -> None:
        shift = features.mean(dim=0)
        scale = (features - shift).pow(2).sum(dim=1).mean().sqrt() / (self.in_dim**0.5)
        self.shift.copy_(shift)
        self.scale.copy_(scale.clamp(min=1e-6))

    def spec(self) -> dict:
        return {
            "in_dim": self.in_dim,
            "out_dim": self.out_dim,
            "hidden": self.hidden,
            "dropout": self.dropout,
        }


def build_head(spec: dict) -> Head:
    return Head(spec["in_dim"], spec["out_dim"], spec.get("hidden", 0), spec.get("dropout", 0.0))
