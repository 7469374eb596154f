"""Robust audio decoding: any file a user may have becomes mono float32 samples at the rate a
backbone wants, or an UnreadableItem with a short reason.

soundfile (libsndfile) reads WAV, FLAC, OGG and MP3; soxr resamples. Long files are read in
blocks and resampled as a stream, so memory stays bounded whatever the file's length.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headstart.data.suffixes import AUDIO_SUFFIXES
from headstart.errors import UnreadableItem

MIN_SECONDS = 0.025  # one analysis frame: a shorter clip holds nothing to recognise


def is_audio_path(path: Path | str) -> bool:
    return Path(path).suffix.lower() in AUDIO_SUFFIXES


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    frames: int
    channels: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def audio_info(path: Path | str) -> AudioInfo:
    """The file's rate, length and channels from its header; UnreadableItem when it has none."""
    import soundfile as sf

    path = Path(path)
    _check_file(path)
    try:
        info = sf.info(str(path))
    except Exception as err:  # LibsndfileError, RuntimeError, TypeError on odd headers
        raise UnreadableItem(f"not a readable audio file ({_short(err)})") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise UnreadableItem("holds no audio samples (header only)")
    found = AudioInfo(int(info.samplerate), int(info.frames), int(info.channels))
    if found.seconds < MIN_SECONDS:
        raise UnreadableItem(
            f"too short: {found.seconds * 1000:.0f} ms (at least {MIN_SECONDS * 1000:.0f} ms)"
        )
    return found


def load_audio(
    path: Path | str, rate: int, max_seconds: float | None = None, info: AudioInfo | None = None
) -> np.ndarray:
    """Mono float32 samples at `rate`; at most `max_seconds` of them (from the start). `info`:
    the file's header, when the caller has read it already."""
    import soundfile as sf

    info = info or audio_info(path)
    frames = info.frames if max_seconds is None else min(info.frames, _frames(max_seconds, info))
    try:
        data = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)[0]
    except Exception as err:
        raise UnreadableItem(f"truncated or corrupt audio ({_short(err)})") from None
    return _prepared(data, info, rate, frames)


def stream_audio(path: Path | str, rate: int, chunk_seconds: float) -> Iterator[np.ndarray]:
    """Mono float32 samples at `rate`, in chunks of about `chunk_seconds` (bounded memory)."""
    import soundfile as sf
    import soxr

    info = audio_info(path)
    block = _frames(chunk_seconds, info)
    resampler = (
        None
        if info.sample_rate == rate
        else soxr.ResampleStream(info.sample_rate, rate, 1, dtype="float32")
    )
    read = 0
    try:
        for data in sf.blocks(str(path), blocksize=block, dtype="float32", always_2d=True):
            read += len(data)
            last = read >= info.frames
            mono = _mono(_checked(data))
            yield mono if resampler is None else resampler.resample_chunk(mono, last=last)
    except UnreadableItem:
        raise
    except Exception as err:
        raise UnreadableItem(f"truncated or corrupt audio ({_short(err)})") from None
    _check_complete(read, info.frames)


def _prepared(data: np.ndarray, info: AudioInfo, rate: int, frames: int) -> np.ndarray:
    _check_complete(len(data), frames)
    mono = _mono(_checked(data))
    if info.sample_rate == rate:
        return mono
    import soxr

    return soxr.resample(mono, info.sample_rate, rate).astype(np.float32, copy=False)


def _frames(seconds: float, info: AudioInfo) -> int:
    return max(1, int(round(seconds * info.sample_rate)))


def _check_complete(read: int, expected: int) -> None:
    # libsndfile reads what is there of a cut file; a large shortfall is a truncated file
    if read < expected * 0.99:
        raise UnreadableItem(f"truncated audio ({read} of {expected} samples readable)")


def _checked(data: np.ndarray) -> np.ndarray:
    if not np.isfinite(data).all():
        raise UnreadableItem("holds NaN or infinite samples")
    return data


def _mono(data: np.ndarray) -> np.ndarray:
    """(frames, channels) -> (frames,): the channels' mean."""
    return np.ascontiguousarray(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0])


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise UnreadableItem("is a directory")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise UnreadableItem("file not found") from None
    except OSError as err:
        raise UnreadableItem(f"cannot read ({err.strerror or err})") from None
    if size == 0:
        raise UnreadableItem("empty file (0 bytes)")


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    text = re.sub(r"^Error opening '[^']*': ", "", text).strip()
    return text if len(text) <= 120 else text[:117] + "..."


def trim_silence(samples: np.ndarray, rate: int) -> np.ndarray:
    """The speech in a clip, its pauses cut out by silero-vad (MIT; its package carries the
    model, run here with onnxruntime); the clip as it is when no speech is found, so that a
    clip of pure sound is never emptied."""
    import torch
    from silero_vad import get_speech_timestamps

    if rate not in (8000, 16000):  # the rates silero-vad was trained at
        raise UnreadableItem(f"silence trimming needs 8 or 16 kHz samples, not {rate} Hz")
    stamps = get_speech_timestamps(torch.from_numpy(samples), _vad(), sampling_rate=rate)
    if not stamps:
        return samples
    return np.concatenate([samples[s["start"] : s["end"]] for s in stamps])


@functools.cache
def _vad():
    import warnings

    from silero_vad import load_silero_vad

    with warnings.catch_warnings():  # its loader uses a deprecated importlib call: not ours
        warnings.simplefilter("ignore", DeprecationWarning)
        return load_silero_vad(onnx=True)
