"""Audio clips: files decoded to mono at each backbone's rate, embedded window by window.

Extraction sorts clips by length and batches them with little padding; a clip shorter than the
backbone's shortest input is padded with silence on both sides; a file longer than the
preprocess's chunk_seconds is streamed chunk by chunk and only its window embeddings are kept,
so memory stays bounded whatever its length.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..data.suffixes import AUDIO_SUFFIXES
from ..errors import UnreadableItem
from .base import register_modality
from .files import FileModality

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..data.sources import Item
    from ..zoo.audio import AudioBackbone
    from ..zoo.config import AudioPreprocess

BATCH_SECONDS = 120.0  # audio per extraction batch, padding included


@register_modality
class AudioModality(FileModality):
    name = "audio"
    estimator = "AudioClassifier"
    default_model = "speech_embedding"
    control_strategy = "mfcc"
    batch_size = 64
    min_train_rows = 2  # BatchNorm cannot normalise a single example
    suffixes = AUDIO_SUFFIXES
    folder_forms = (
        "a folder of audio clips (.wav, .flac, .ogg, .mp3)",
        "a folder with one subfolder of audio clips per class",
    )
    # a "path" or "file" column is the image modality's; audio suffixes in it make it audio
    table_columns = ("audio", "audio_path")

    @property
    def preprocess_type(self) -> type:
        from ..zoo.config import AudioPreprocess

        return AudioPreprocess

    @property
    def plural(self) -> str:
        return "audio clips"

    def decode(self, item: Item, preprocess: AudioPreprocess) -> np.ndarray:
        """Mono float32 samples at the preprocess's rate (at most train_seconds of them)."""
        return read_clip(item.path, preprocess, preprocess.train_seconds)

    def dummy_batch(self, backbone, size: int = 2) -> dict:
        import torch

        length = min_length(backbone)
        generator = torch.Generator().manual_seed(0)
        audio = 0.1 * torch.randn(size, length, generator=generator)
        return {"audio": audio, "lengths": torch.full((size,), length)}

    # -- extraction

    def embed(self, extractor, todo, keys, progress):
        from ..data.audio import audio_info
        from ..data.sources import Skip
        from ..zoo.audio import AudioBackbone
        from ..zoo.entry import materialize

        backbone = materialize(extractor.backbone)
        model = backbone.to(extractor.device).eval()
        new, failed, infos = {}, [], {}  # infos: item id -> its header
        for item in todo:
            try:
                infos[item.id] = audio_info(item.path)
            except UnreadableItem as err:
                failed.append(Skip(item.id, str(err)))
        chunk = backbone.preprocess.chunk_seconds
        readable = sorted((i for i in todo if i.id in infos), key=lambda i: infos[i.id].seconds)
        short = [i for i in readable if infos[i.id].seconds <= chunk]
        done = len(failed)
        for batch in _batches(short, infos, extractor.batch_size):
            vecs, bad = _embed_clips(extractor, model, batch, infos=infos)
            failed += bad
            _keep(extractor, new, {keys[id_]: vec for id_, vec in vecs.items()})
            done += len(batch)
            if progress:
                progress(done, len(todo))
        for item in readable[len(short) :]:
            try:
                if isinstance(model, AudioBackbone):
                    vecs = {item.id: _embed_long(extractor, model, item)}
                else:  # a layer tap pools each cut itself: it reads the first chunk
                    vecs, bad = _embed_clips(extractor, model, [item], chunk)
                    failed += bad
                _keep(extractor, new, {keys[id_]: vec for id_, vec in vecs.items()})
            except UnreadableItem as err:
                failed.append(Skip(item.id, str(err)))
            done += 1
            if progress:
                progress(done, len(todo))
        return new, failed, 0

    # -- training

    def train_dataset(self, items, targets, preprocess, augment: bool):
        from ..engine.data import AudioItems

        return AudioItems(items, targets, preprocess, augment)

    def stack(self, inputs: list) -> dict:
        """Clips of samples -> {"audio": (B, S) zero-padded at the end, "lengths": (B,)}."""
        return pad_batch(inputs)


def read_clip(path, pre: AudioPreprocess, seconds=None, info=None) -> np.ndarray:
    """Samples at the preprocess's rate, pauses cut out where it asks (trim_silence)."""
    from ..data.audio import load_audio, trim_silence

    samples = load_audio(path, pre.sample_rate, seconds, info)
    return trim_silence(samples, pre.sample_rate) if pre.trim_silence else samples


def min_length(backbone) -> int:
    """The samples a clip is padded to: the backbone's shortest input, or min_seconds."""
    pre = backbone.preprocess
    return max(backbone.min_samples(), int(round(pre.min_seconds * pre.sample_rate)))


def pad_clip(samples: np.ndarray, length: int, offset: int | None = None) -> np.ndarray:
    """Silence around a clip shorter than `length`: centred, or starting at `offset`."""
    import numpy as np

    missing = length - len(samples)
    if missing <= 0:
        return samples
    before = missing // 2 if offset is None else min(max(offset, 0), missing)
    return np.pad(samples, (before, missing - before))


def pad_batch(clips: list) -> dict:
    import numpy as np
    import torch

    longest = max(len(c) for c in clips)
    audio = np.zeros((len(clips), longest), dtype=np.float32)
    for row, clip in enumerate(clips):
        audio[row, : len(clip)] = clip
    lengths = torch.tensor([len(c) for c in clips], dtype=torch.long)
    return {"audio": torch.from_numpy(audio), "lengths": lengths}


def _batches(items: list[Item], infos: dict, batch_size: int):
    """Runs of `items` (sorted by length) holding at most batch_size clips and BATCH_SECONDS of
    padded audio."""
    batch: list[Item] = []
    for item in items:
        padded = infos[item.id].seconds * (len(batch) + 1)
        if batch and (len(batch) == batch_size or padded > BATCH_SECONDS):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def _embed_clips(extractor, model: AudioBackbone, items: list[Item], seconds=None, infos=None):
    """({item id: pooled vector}, skips) for clips decoded whole (or their first `seconds`);
    `infos`: their headers, read already."""
    from ..data.sources import Skip

    pre, length = model.preprocess, min_length(model)
    clips, kept, failed = [], [], []
    for item in items:
        try:
            info = (infos or {}).get(item.id)
            clips.append(pad_clip(read_clip(item.path, pre, seconds, info), length))
            kept.append(item.id)
        except UnreadableItem as err:
            failed.append(Skip(item.id, str(err)))
    if not clips:
        return {}, failed
    batch = {k: v.to(extractor.device) for k, v in pad_batch(clips).items()}
    vecs = extractor._forward(model, batch)
    return dict(zip(kept, vecs, strict=True)), failed


def _embed_long(extractor, model: AudioBackbone, item: Item) -> np.ndarray:
    """A long file, streamed: each chunk's window embeddings, pooled over the whole file."""
    import torch

    from ..data.audio import stream_audio, trim_silence
    from ..zoo.audio import pool_windows

    pre, length = model.preprocess, min_length(model)
    windows: list[torch.Tensor] = []
    chunks = stream_audio(item.path, pre.sample_rate, pre.chunk_seconds)
    with torch.inference_mode():
        for chunk in chunks:
            if pre.trim_silence:
                chunk = trim_silence(chunk, pre.sample_rate)
            if len(chunk) == 0:
                continue
            batch = {
                k: v.to(extractor.device) for k, v in pad_batch([pad_clip(chunk, length)]).items()
            }
            features = model.forward_features(batch)
            count = int(model.window_counts(batch["lengths"]).clamp(min=1)[0])
            windows.append(features[0, :count].float().cpu())
        features = torch.cat(windows)[None]
        mask = torch.ones(features.shape[:2], dtype=torch.bool)
        return pool_windows(features, mask, pre)[0].numpy()


def _keep(extractor, new: dict, vecs: dict) -> None:
    """Store {cache key: vector} in the cache and in `new`."""
    import numpy as np

    if vecs:
        extractor._store(list(vecs), np.stack(list(vecs.values())))
        new.update(vecs)
