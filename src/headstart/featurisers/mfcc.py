"""MFCC statistics: the no-transfer featuriser for audio.

Every clip is decoded to 16 kHz mono; 25 ms frames every 10 ms (Hann window, 512-point FFT)
become 40 log-mel bands and `coefficients` MFCCs (DCT-II of the log-mel); a clip's row is the
mean and standard deviation over its frames of the MFCCs and of their deltas. fit learns a
per-column shift and scale (standardise=True, the `mfcc` strategy); the ranking's no-transfer
row takes the raw statistics. Nothing here is pre-trained: it is what speech recognition used
before learned features, and what a pre-trained encoder has to beat.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import HeadstartError, UnreadableItem
from .standardised import StandardisedFeaturiser

RATE, FRAME, HOP, N_FFT, N_MELS = 16000, 400, 160, 512, 40
DEFAULT_COEFFICIENTS = 20


def mel_filters(rate: int = RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) triangular filters, evenly spaced on the HTK mel scale."""
    top = 2595.0 * np.log10(1.0 + (rate / 2) / 700.0)
    hz = 700.0 * (10 ** (np.linspace(0.0, top, n_mels + 2) / 2595.0) - 1.0)
    bins = np.linspace(0, rate / 2, n_fft // 2 + 1)
    low, centre, high = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    rising = (bins[None, :] - low) / (centre - low)
    falling = (high - bins[None, :]) / (high - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).T


def mfcc(samples: np.ndarray, coefficients: int = DEFAULT_COEFFICIENTS) -> np.ndarray:
    """(frames, coefficients) MFCCs of 16 kHz samples (padded to one frame when shorter)."""
    from scipy.fft import dct

    samples = np.pad(samples, (0, max(0, FRAME - len(samples))))
    count = 1 + (len(samples) - FRAME) // HOP
    index = np.arange(FRAME)[None, :] + HOP * np.arange(count)[:, None]
    frames = samples[index] * np.hanning(FRAME)[None, :]
    power = np.abs(np.fft.rfft(frames, N_FFT)) ** 2
    log_mel = np.log(power @ _FILTERS + 1e-10)
    return dct(log_mel, type=2, norm="ortho", axis=1)[:, :coefficients]


def mfcc_statistics(samples: np.ndarray, coefficients: int = DEFAULT_COEFFICIENTS) -> np.ndarray:
    """Mean and standard deviation of the MFCCs and of their deltas: (4 * coefficients,)."""
    c = mfcc(samples, coefficients)
    delta = np.diff(c, axis=0) if len(c) > 1 else np.zeros_like(c)
    return np.concatenate([c.mean(0), c.std(0), delta.mean(0), delta.std(0)])


_FILTERS = mel_filters()


class MFCCFeaturiser(StandardisedFeaturiser):
    name: ClassVar[str] = "mfcc"
    modality: ClassVar[str] = "audio"
    noun: ClassVar[str] = "clips"
    min_scale: ClassVar[float] = 1e-9

    def __init__(
        self,
        coefficients: int = DEFAULT_COEFFICIENTS,
        standardise: bool = True,
        shift=None,
        scale=None,
    ):
        if not 4 <= int(coefficients) <= N_MELS:
            raise HeadstartError(
                f"mfcc: coefficients must be between 4 and {N_MELS}; got {coefficients}."
            )
        self.coefficients = int(coefficients)
        super().__init__(standardise, shift, scale)

    @property
    def about(self) -> str:
        return f"MFCC statistics ({self.coefficients} coefficients, mean/std, deltas)"

    @property
    def dim(self) -> int:
        return 4 * self.coefficients

    def raw(self, items) -> np.ndarray:
        from ..data.audio import load_audio

        rows = []
        for item in items:
            path = getattr(item, "path", item)
            try:
                samples = load_audio(path, RATE)
            except UnreadableItem as err:
                raise HeadstartError(
                    f"'{path}' cannot be used by the mfcc featuriser: {err}. Remove or fix it."
                ) from None
            rows.append(mfcc_statistics(samples, self.coefficients))
        return np.stack(rows) if rows else np.zeros((0, self.dim))

    def settings(self) -> dict[str, Any]:
        return {"coefficients": self.coefficients}

    @classmethod
    def from_settings(cls, config: dict, standardise: bool, shift, scale) -> MFCCFeaturiser:
        return cls(int(config["coefficients"]), standardise, shift, scale)
