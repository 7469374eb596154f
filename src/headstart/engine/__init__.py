"""The training engine: backbone and head trained together under a strategy, on Lightning."""

from .train import TrainConfig, TrainData, train, warmup_cosine

__all__ = ["TrainConfig", "TrainData", "train", "warmup_cosine"]
