"""Images: files on disk, decoded in worker processes, normalised per batch, channels-last."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..data.suffixes import IMAGE_SUFFIXES
from ..errors import UnreadableItem
from .base import Modality, register_modality
from .files import FileModality

if TYPE_CHECKING:  # the zoo imports the modalities: they import it where it is used
    from ..data.sources import Item
    from ..zoo.config import ImagePreprocess


@register_modality
class ImageModality(FileModality):
    name = "image"
    estimator = "ImageClassifier"
    default_model = "efficientnet_lite0"
    control_strategy = "pixels"
    feature_maps = True
    # measured here: freeze-unfreeze over the probe, hymenoptera 0.948 -> 0.948, grey-scale
    # digits at 30 per class 0.812 -> 0.815: about nothing, so only where nothing else is offered
    auto_gains = {("freeze-unfreeze", "many"): (0.3, "head first, then the backbone")}
    batch_size = 32
    min_train_rows = 2  # BatchNorm cannot normalise a single example
    suffixes = IMAGE_SUFFIXES
    folder_default = True  # its readers then say which files are not images
    folder_forms = ("a folder of images", "a folder with one subfolder of images per class")
    table_columns = ("path", "filepath", "file", "image")

    @property
    def preprocess_type(self) -> type:
        from ..zoo.config import ImagePreprocess

        return ImagePreprocess

    def decode(self, item: Item, preprocess: ImagePreprocess):
        """uint8 (3, H, W), resized and centre-cropped; normalised per batch later."""
        from ..data.images import decode_for_model

        return decode_for_model(item.path, preprocess)

    def dummy_batch(self, backbone, size: int = 2):
        import torch

        side = backbone.preprocess.input_size
        generator = torch.Generator().manual_seed(0)
        return torch.randn(size, 3, side, side, generator=generator)

    # -- extraction

    def embed(self, extractor, todo, keys, progress):
        """Decode in DataLoader workers, normalise per batch, run the folded fast model."""
        import torch
        from torch.utils.data import DataLoader

        from ..data.sources import Skip

        model = extractor._fast_model()
        pre = extractor.backbone.preprocess
        mean = torch.tensor(pre.mean).view(1, 3, 1, 1) * 255
        std = torch.tensor(pre.std).view(1, 3, 1, 1) * 255
        loader = DataLoader(
            _Decoded(self, todo, pre),
            batch_size=extractor.batch_size,
            num_workers=extractor.workers,
            collate_fn=_collate_decoded,
            persistent_workers=False,
            prefetch_factor=4 if extractor.workers else None,
        )
        new, failed, done = {}, [], 0
        for indices, images, errors in loader:
            failed += [Skip(todo[i].id, reason) for i, reason in errors]
            if images is not None:
                batch = ((images.float() - mean) / std).contiguous(
                    memory_format=torch.channels_last
                )
                vecs = extractor._forward(model, batch.to(extractor.device, extractor.dtype))
                batch_keys = [keys[todo[i].id] for i in indices]
                extractor._store(batch_keys, vecs)
                new.update(zip(batch_keys, vecs, strict=True))
            done += len(indices) + len(errors)
            if progress:
                progress(done, len(todo))
        return new, failed, 0

    # -- training

    def train_dataset(self, items, targets, preprocess, augment: bool):
        from ..engine.data import ImageItems

        return ImageItems(items, targets, preprocess, augment)

    def augmentation(self, preprocess: ImagePreprocess):
        from ..engine.data import train_transform

        return train_transform(preprocess)

    def stack(self, inputs: list):
        import torch

        return torch.stack(inputs)

    def after_transfer(self, inputs):
        import torch

        return inputs.contiguous(memory_format=torch.channels_last)

    def memory_format(self):
        import torch

        return torch.channels_last  # a cheap speed-up for convolutions


class _Decoded:
    """A map-style dataset (all a DataLoader needs) of decoded images, errors kept per item."""

    def __init__(self, modality: Modality, items: list, pre: ImagePreprocess):
        self.modality, self.items, self.pre = modality, items, pre

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        try:
            return index, self.modality.decode(self.items[index], self.pre), None
        except UnreadableItem as err:
            return index, None, str(err)


def _collate_decoded(rows):
    import torch

    good = [(i, t) for i, t, _ in rows if t is not None]
    errors = [(i, reason) for i, t, reason in rows if t is None]
    images = torch.stack([t for _, t in good]) if good else None
    return [i for i, _ in good], images, errors
