"""What training costs on this machine, measured, not guessed: one optimiser-free step of the
backbone and a linear head on a batch of the user's own items, forward and backward.

The estimates `plan` makes from it are per strategy: steps x seconds per step, plus the passes
over the data that a strategy needs after training (embedding with the tuned encoder).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ..data.sources import Item

MEASURED_STEPS = 2  # after one warm-up step (allocations, kernels chosen on first use)


@dataclass(frozen=True)
class Costs:
    """Seconds on this machine: one training step of `batch` items (forward, backward, the
    items' decoding and augmentation), and one item through the frozen backbone (no grad)."""

    step: float
    batch: int
    embed_item: float

    def epochs(self, n_train: int, n_val: int, epochs: int) -> float:
        """A strategy trained by epochs: every batch, and a validation pass per epoch."""
        steps = math.ceil(n_train / self.batch) * epochs
        return steps * self.step + epochs * n_val * self.embed_item

    def pairs(self, n_pairs: int, pair_batch: int, n_embed: int) -> float:
        """contrastive: a step per `pair_batch` pairs (each embeds up to 2 x pair_batch texts,
        which is what `step` measured when batch = 2 x pair_batch), then `n_embed` items
        embedded with the tuned encoder."""
        steps = math.ceil(n_pairs / pair_batch)
        per_step = self.step * (2 * pair_batch) / self.batch
        return steps * per_step + n_embed * self.embed_item


def measure(backbone, items: list[Item], targets: np.ndarray, batch: int, device: str) -> Costs:
    """Time a training step and an inference pass on the first `batch` items (weights unchanged:
    gradients are computed and dropped, no optimiser step)."""
    import torch

    from ..engine.data import Collate
    from ..features.speed import resolve_device
    from ..modalities import get_modality
    from ..zoo.entry import materialize

    backbone = materialize(backbone)
    modality = get_modality(backbone.modality)
    torch_device = resolve_device(device)
    rows = items[:batch]
    targets = np.asarray(targets)[: len(rows)]
    dataset = modality.train_dataset(rows, targets, backbone.preprocess, True)
    head = torch.nn.Linear(backbone.feature_dim, 2).to(torch_device)
    flags = [p.requires_grad for p in backbone.parameters()]
    # train mode updates BatchNorm's running statistics: put them back afterwards
    buffers = {k: v.detach().clone() for k, v in backbone.named_buffers()}
    backbone.to(torch_device)
    try:
        step_times, embed_times = [], []
        for _ in range(1 + MEASURED_STEPS):
            started = time.perf_counter()
            inputs, _ = Collate(modality, 1)([dataset[i] for i in range(len(dataset))])
            inputs = _to_device(modality, backbone, inputs, torch_device)
            backbone.train()
            for param in backbone.parameters():
                param.requires_grad_(True)
            head(backbone(inputs)).float().square().mean().backward()
            _sync(torch_device)
            step_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            backbone.eval()
            with torch.inference_mode():
                backbone(inputs)
            _sync(torch_device)
            embed_times.append((time.perf_counter() - started) / len(rows))
    finally:
        backbone.cpu().eval()
        with torch.no_grad():
            for name, value in backbone.named_buffers():
                value.copy_(buffers[name])
        for param, flag in zip(backbone.parameters(), flags, strict=True):
            param.grad = None
            param.requires_grad_(flag)
    # the median of the timed steps: one slow step (another process) should not decide
    return Costs(
        step=float(np.median(step_times[1:])) * batch / len(rows),
        batch=batch,
        embed_item=float(np.median(embed_times[1:])),
    )


def _to_device(modality, backbone, inputs, device):
    from lightning.fabric.utilities.apply_func import move_data_to_device

    inputs = modality.before_transfer(backbone, inputs)
    return modality.after_transfer(move_data_to_device(inputs, device))


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
