"""Audio files the tests write: clean tones per class, and every kind of bad file a user has."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tone(freq: float, seconds: float = 0.6, rate: int = 8000, seed: int = 0) -> np.ndarray:
    """A sine at `freq` Hz with a little noise and a fade in and out."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    wave = 0.4 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.05)
    return (wave * fade).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int = 8000, subtype: str = "PCM_16") -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, rate, subtype=subtype)
    return path


def tone_folder(root: Path, per_class: int = 4, classes=(("low", 300.0), ("high", 1500.0))) -> Path:
    """root/<class>/<class>_<i>.wav: tones of a class frequency, a little detuned per clip."""
    for label, freq in classes:
        for i in range(per_class):
            clip = tone(freq * (1 + 0.03 * i), seconds=0.4 + 0.1 * (i % 3), seed=i)
            write_wav(root / label / f"{label}_{i}.wav", clip)
    return root


def bad_audio(folder: Path) -> dict[str, str]:
    """Write every kind of bad audio file into `folder`; returns {file name: words its skip
    reason must contain}. Stereo 96 kHz 24-bit is not bad: it is absent from the result."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    (folder / "empty.wav").write_bytes(b"")
    expected["empty.wav"] = "empty file"
    write_wav(folder / "header_only.wav", np.zeros(0, np.float32))
    expected["header_only.wav"] = "no audio samples"
    flac = folder / "cut.flac"
    sf.write(str(flac), tone(440, seconds=3.0, rate=16000), 16000, format="FLAC")
    data = flac.read_bytes()
    flac.write_bytes(data[: len(data) // 3])
    expected["cut.flac"] = "truncated"
    (folder / "notes.wav").write_text("this is a text file, not a recording\n")
    expected["notes.wav"] = "not a readable audio file"
    nan = tone(440, seconds=0.5, rate=16000)
    nan[100:200] = np.nan
    write_wav(folder / "nan.wav", nan, 16000, subtype="FLOAT")
    expected["nan.wav"] = "NaN"
    write_wav(folder / "tiny.wav", tone(440, seconds=0.005, rate=16000), 16000)
    expected["tiny.wav"] = "too short"
    (folder / "x.wav").mkdir()
    expected["x.wav"] = "is a directory"
    stereo = np.stack([tone(440, 0.5, 96000), tone(660, 0.5, 96000, seed=1)], axis=1)
    write_wav(folder / "stereo96k.wav", stereo, 96000, subtype="PCM_24")
    return expected
