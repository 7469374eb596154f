"""A detection set as a classification one, for ranking backbones before any training: every
box cropped (with a margin) and labelled by its class, plus one background crop per image (same
size as a box of the image, overlapping none). How well a backbone's features tell these apart
is what a detection head built on them can start from."""

from __future__ import annotations

import random
from pathlib import Path

from ..data.images import load_rgb
from ..data.sources import Skip, Source, source_from_paths
from ..errors import UnreadableItem

BACKGROUND = "(background)"
MARGIN = 0.1  # of the box's side, on each side: a little context, as a detector sees it


def object_crops(source: Source, folder: Path, seed: int = 0, max_items: int = 2000) -> Source:
    """Crops of `source`'s boxes and backgrounds written as JPEGs under `folder`."""
    rng = random.Random(seed)
    items = list(source.items)
    rng.shuffle(items)
    paths, labels, skipped = [], [], []
    for item in items:
        if len(paths) >= max_items:
            break
        try:
            image = load_rgb(item.path)
        except UnreadableItem as err:
            skipped.append(Skip(item.id, str(err)))
            continue
        regions = list(zip(item.target.boxes, item.target.labels, strict=True))
        background = _background(item.target.boxes, image.size, rng)
        if background is not None:
            regions.append((background, BACKGROUND))
        for index, (box, label) in enumerate(regions):
            path = folder / f"{len(paths):06d}-{index}.jpg"
            image.crop(_with_margin(box, image.size)).save(path, quality=92)
            paths.append(path)
            labels.append(label)
    crops = source_from_paths(paths, labels)
    crops.skipped += skipped
    backgrounds = labels.count(BACKGROUND)
    crops.origin = (
        f"{len(paths) - backgrounds} box crops and {backgrounds} background crops from "
        f"{source.origin}"
    )
    return crops


def _with_margin(box, size) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * MARGIN, (y2 - y1) * MARGIN
    w, h = size
    return (
        int(max(0, x1 - dx)),
        int(max(0, y1 - dy)),
        int(min(w, x2 + dx + 1)),
        int(min(h, y2 + dy + 1)),
    )


def _background(boxes, size, rng: random.Random, tries: int = 30):
    """A box-sized region overlapping no box (IoU < 0.1), or None where none fits."""
    w, h = size
    if not boxes:
        side = min(w, h) // 2
        sizes = [(side, side)]
    else:
        sizes = [(int(b[2] - b[0]), int(b[3] - b[1])) for b in boxes]
    for _ in range(tries):
        bw, bh = rng.choice(sizes)
        bw, bh = max(8, min(bw, w // 2)), max(8, min(bh, h // 2))
        if bw >= w or bh >= h:
            return None
        x, y = rng.randrange(0, w - bw), rng.randrange(0, h - bh)
        region = (x, y, x + bw, y + bh)
        if all(_iou(region, b) < 0.1 for b in boxes):
            return region
    return None


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


PATCH = 64  # pixels: a patch around a sampled point, as the decoder's receptive field sees it
POINTS_PER_CLASS = 4  # per image, per class present


def mask_crops(source: Source, folder: Path, seed: int = 0, max_items: int = 2000) -> Source:
    """A segmentation set as patches (PNG under `folder`) centred on pixels sampled per class,
    each labelled by the class of its centre pixel."""
    import numpy as np
    from PIL import Image

    from ..data.masks import load_image, load_mask

    rng = np.random.default_rng(seed)
    items = list(source.items)
    random.Random(seed).shuffle(items)
    paths, labels, skipped = [], [], []
    for item in items:
        if len(paths) >= max_items:
            break
        try:
            image, mask = load_image(item), load_mask(item.target)
        except UnreadableItem as err:
            skipped.append(Skip(item.id, str(err)))
            continue
        pixels = (image * 255).round().astype(np.uint8)
        pixels = np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels
        for k in np.unique(mask):
            ys, xs = np.nonzero(mask == k)
            for pick in rng.choice(len(ys), min(POINTS_PER_CLASS, len(ys)), replace=False):
                path = folder / f"{len(paths):06d}.png"
                Image.fromarray(_patch(pixels, int(ys[pick]), int(xs[pick]))).save(path)
                paths.append(path)
                labels.append(source.classes[int(k)])
    crops = source_from_paths(paths, labels)
    crops.skipped += skipped
    crops.origin = (
        f"{len(paths)} patches of {PATCH} px around pixels of each class of {source.origin}"
    )
    return crops


def _patch(pixels, y: int, x: int):
    """The PATCH-sided square around (y, x), shifted inside the image where it would cross."""
    h, w = pixels.shape[:2]
    top = min(max(0, y - PATCH // 2), max(0, h - PATCH))
    left = min(max(0, x - PATCH // 2), max(0, w - PATCH))
    return pixels[top : top + PATCH, left : left + PATCH]
