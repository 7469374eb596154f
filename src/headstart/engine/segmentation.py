"""Training and inference for segmenters, on Lightning (the loop in engine/whole.py).

Training draws random crops (`crop` pixels square) and moves image and mask together with
torchvision.transforms.v2: the eight flips and quarter turns, an elastic deformation (the U-Net
paper's augmentation for few slices), and brightness and contrast changes on the image only.
Pixels outside an image (padding of small images) are ignored by the loss. The loss is
cross-entropy plus soft Dice, so small classes weigh as much as the background.

Prediction runs on tiles of `tile` pixels with overlap, blended by a window that fades towards
each tile's edges, so an image of any size is segmented in bounded memory without seams.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..data.sources import Item
from ..errors import HeadstartError, UnreadableItem
from .whole import WholeModelConfig, WholeModelModule, fit_whole_model, seed_everything

IGNORE = 255  # mask value the loss skips: padding outside the image
CACHE_PIXELS = 300_000_000  # decoded training images kept in memory up to this many pixels


@dataclass
class SegmentationConfig(WholeModelConfig):
    crop: int = 256  # training crops' side
    tile: int = 512  # prediction tiles' side (images up to this size are one tile)
    overlap: float = 0.25  # share of a tile that overlaps its neighbour
    crops_per_epoch: int = 64  # at least; at least one per training image
    channels: int = 1
    tta: bool = False  # predict also on the flipped image (4 passes) and average


# ---- data --------------------------------------------------------------------------------


def load_pair(item: Item, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(float32 (H, W, channels) in [0, 1], int64 (H, W)) for a training or validation item."""
    from ..data.masks import load_image, load_mask

    try:
        image = load_image(item)
        mask = load_mask(item.target)
    except UnreadableItem as err:  # the reader checked headers; the pixels can still fail
        raise HeadstartError(
            f"'{item.id}' cannot be decoded ({err}); remove or replace it."
        ) from err
    return match_channels(image, channels), mask


def match_channels(image: np.ndarray, channels: int) -> np.ndarray:
    if image.shape[-1] == channels:
        return image
    if channels == 3:
        return np.repeat(image, 3, axis=-1)
    return image.mean(axis=-1, keepdims=True)


class _Crops(Dataset):
    """Random crops of random training images; `length` crops make an epoch."""

    def __init__(self, items: list[Item], cfg: SegmentationConfig):
        self.items, self.cfg = items, cfg
        self.length = max(cfg.crops_per_epoch, len(items))
        self.transform = _augmentation(cfg.crop) if cfg.augment else _plain_crop(cfg.crop)
        self.cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.cached_pixels = 0

    def __len__(self) -> int:
        return self.length

    def pair(self, index: int):
        if index in self.cache:
            return self.cache[index]
        image, mask = load_pair(self.items[index], self.cfg.channels)
        if self.cached_pixels + mask.size <= CACHE_PIXELS:
            self.cache[index] = (image, mask)
            self.cached_pixels += mask.size
        return image, mask

    def __getitem__(self, index: int):
        from torchvision import tv_tensors

        image, mask = self.pair(random.randrange(len(self.items)))
        sample = {
            "image": tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1)),
            "mask": tv_tensors.Mask(torch.from_numpy(mask)),
        }
        out = self.transform(sample)
        return out["image"].as_subclass(torch.Tensor), out["mask"].as_subclass(torch.Tensor)


def _fill() -> dict:
    from torchvision import tv_tensors

    return {tv_tensors.Image: 0.0, tv_tensors.Mask: IGNORE}


def _plain_crop(crop: int):
    from torchvision.transforms import v2

    return v2.RandomCrop(crop, pad_if_needed=True, fill=_fill())


def _augmentation(crop: int):
    from torchvision.transforms import v2

    elastic = v2.ElasticTransform(alpha=40.0, sigma=6.0, fill=_fill())
    return v2.Compose(
        [_plain_crop(crop), _Dihedral(), v2.RandomApply([elastic], p=0.5), _Intensity()]
    )


class _Dihedral(torch.nn.Module):
    """One of the eight flips and quarter turns, the same for image and mask."""

    def forward(self, sample: dict) -> dict:
        turns, flip = random.randrange(4), random.random() < 0.5
        out = {}
        for key, value in sample.items():
            moved = torch.rot90(value, turns, dims=(-2, -1))
            moved = moved.flip(-1) if flip else moved
            out[key] = type(value)(moved) if hasattr(value, "as_subclass") else moved
        return out


class _Intensity(torch.nn.Module):
    """Brightness and contrast changes on the image (the mask is left alone)."""

    def forward(self, sample: dict) -> dict:
        from torchvision import tv_tensors

        image = sample["image"].as_subclass(torch.Tensor)
        contrast, shift = random.uniform(0.8, 1.25), random.uniform(-0.1, 0.1)
        mean = image.mean()
        changed = ((image - mean) * contrast + mean + shift).clamp_(0.0, 1.0)
        return {**sample, "image": tv_tensors.Image(changed)}


# ---- the loss ----------------------------------------------------------------------------


def dice_ce_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy plus (1 - soft Dice averaged over classes), ignoring IGNORE pixels."""
    ce = F.cross_entropy(logits, mask, ignore_index=IGNORE)
    valid = (mask != IGNORE).unsqueeze(1)
    probs = logits.softmax(dim=1) * valid
    one_hot = F.one_hot(mask.clamp(max=logits.shape[1] - 1), logits.shape[1])
    one_hot = one_hot.permute(0, 3, 1, 2).to(probs.dtype) * valid
    dims = (0, 2, 3)
    overlap = (probs * one_hot).sum(dims)
    total = probs.sum(dims) + one_hot.sum(dims)
    dice = (2 * overlap + 1.0) / (total + 1.0)
    return ce + (1.0 - dice.mean())


# ---- the Lightning module ----------------------------------------------------------------


class _SegmentationModule(WholeModelModule):
    def __init__(self, segmenter, strategy, task, val_items, cfg: SegmentationConfig):
        super().__init__(segmenter, strategy, cfg)
        self.task, self.val_items = task, val_items

    def loss(self, batch) -> torch.Tensor:
        images, masks = batch
        logits = self.model(images.contiguous(memory_format=torch.channels_last))
        return dice_ce_loss(logits, masks.long())

    def validate(self) -> tuple[float, dict]:
        if not self.val_items:  # trained on everything: the last (annealed) epoch is kept
            return float("nan"), {"val_dice": float("nan"), "val_pixel_error": float("nan")}
        predicted, truth = predict_items(self.model, self.val_items, self.cfg)
        metrics = self.task.score_masks(predicted, truth)
        # the best epoch: the mean Dice over every class, so thin classes count as much as large
        mean_all = float(np.nanmean([v["dice"] for v in metrics["per_class"].values()]))
        values = {"val_dice": metrics["dice"], "val_pixel_error": metrics["pixel_error"]}
        return mean_all, values


def train_segmenter(segmenter, strategy, task, train_items, val_items, cfg) -> dict:
    """Train in place; restores the best epoch's weights. Returns fit facts and the history."""
    seed_everything(cfg.seed)
    random.seed(cfg.seed)
    data = _Crops(train_items, cfg)
    loader = DataLoader(
        data, batch_size=cfg.batch_size, shuffle=False, drop_last=True, num_workers=0
    )
    segmenter.to(memory_format=torch.channels_last)  # 1.6x faster convolutions on CPU
    module = _SegmentationModule(segmenter, strategy, task, val_items, cfg)
    facts = fit_whole_model(module, loader, cfg)
    facts["best_val_mean_dice"] = facts.pop("best_score")
    return facts


# ---- inference -----------------------------------------------------------------------------


def _window(side: int) -> torch.Tensor:
    """Blending weights of a tile: highest in the middle, small (not zero) at the edges."""
    ramp = torch.minimum(torch.arange(side) + 1.0, side - torch.arange(side).float())
    ramp = (ramp / ramp.max()).clamp(min=0.05)
    return ramp[:, None] * ramp[None, :]


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


def _pad_to(image: torch.Tensor, multiple: int, least: int = 0) -> torch.Tensor:
    """Reflect-pad (C, H, W) right and bottom to sides that are multiples of `multiple`."""
    h, w = image.shape[-2:]
    new_h = max(least, -(-h // multiple) * multiple)
    new_w = max(least, -(-w // multiple) * multiple)
    if (new_h, new_w) == (h, w):
        return image
    mode = "reflect" if new_h - h < h and new_w - w < w else "replicate"
    return F.pad(image[None], (0, new_w - w, 0, new_h - h), mode=mode)[0]


FLIPS = ((), (-1,), (-2,), (-2, -1))  # test-time augmentation: the image as is and flipped


def _forward(segmenter, batch: torch.Tensor, tta: bool) -> torch.Tensor:
    """Softmax probabilities; with tta, the mean over the flipped images (flipped back)."""
    batch = batch.contiguous(memory_format=torch.channels_last)
    if not tta:
        return segmenter(batch).softmax(1)
    total = 0
    for dims in FLIPS:
        flipped = batch.flip(dims) if dims else batch
        probs = segmenter(flipped).softmax(1)
        total = total + (probs.flip(dims) if dims else probs)
    return total / len(FLIPS)


@torch.no_grad()
def segment_image(segmenter, image: np.ndarray, cfg: SegmentationConfig) -> torch.Tensor:
    """Class probabilities (K, H, W) for one float (H, W, C) image, tile by tile."""
    from ..zoo.segmenters import MULTIPLE

    segmenter.eval()
    device = next(segmenter.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    h, w = x.shape[-2:]
    tile = max(MULTIPLE, cfg.tile // MULTIPLE * MULTIPLE)
    if max(h, w) <= tile:  # one pass over the whole (padded) image
        padded = _pad_to(x, MULTIPLE)[None].to(device)
        return _forward(segmenter, padded, cfg.tta)[0, :, :h, :w].cpu()
    padded = _pad_to(x, MULTIPLE, least=tile)
    ph, pw = padded.shape[-2:]
    step = max(MULTIPLE, int(tile * (1 - cfg.overlap)))
    window = _window(tile).to(device)
    total = torch.zeros(segmenter.num_classes, ph, pw, device=device)
    weight = torch.zeros(ph, pw, device=device)
    corners = [(y, x0) for y in _starts(ph, tile, step) for x0 in _starts(pw, tile, step)]
    for start in range(0, len(corners), 4):
        chunk = corners[start : start + 4]
        batch = torch.stack([padded[:, y : y + tile, x0 : x0 + tile] for y, x0 in chunk])
        probs = _forward(segmenter, batch.to(device), cfg.tta)
        for (y, x0), p in zip(chunk, probs, strict=True):
            total[:, y : y + tile, x0 : x0 + tile] += p * window
            weight[y : y + tile, x0 : x0 + tile] += window
    return (total / weight)[:, :h, :w].cpu()


def predict_items(segmenter, items: list[Item], cfg: SegmentationConfig):
    """(predicted class-index masks, uint8 (H, W); the true masks) of labelled items."""
    predicted, truth = [], []
    for item in items:
        image, mask = load_pair(item, cfg.channels)
        predicted.append(segment_image(segmenter, image, cfg).argmax(0).numpy().astype(np.uint8))
        truth.append(mask)
    return predicted, truth
