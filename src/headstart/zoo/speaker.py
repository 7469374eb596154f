"""resemblyzer's GE2E speaker encoder (Resemblyzer 0.1.4, Apache-2.0), re-implemented in torch.

The network: a 3-layer LSTM over 40-band power mel frames, the last layer's final hidden state
through Linear(256, 256) and a ReLU, L2-normalised. The package itself cannot be a dependency
(webrtcvad's C build, old pins), so `headstart fetch ge2e_speaker` takes only its pretrained.pt
out of the wheel, and the front end below replaces librosa:

- each clip's volume is raised (never lowered) to -30 dBFS, measured over its own samples;
- librosa.feature.melspectrogram(sr=16000, n_fft=400, hop_length=160, n_mels=40): a periodic
  Hann window, centred frames, a power spectrum, Slaney's mel scale and area normalisation. The
  centring pads by reflection, as librosa did up to 0.8 when the weights were trained (0.9 and
  later pad with zeros: the two frames at each end differ, embeddings by up to ~0.03);
- embed_utterance's partials: 160-frame windows (1.6 s) every 77 frames (1.3 per second), the
  last kept when it covers at least 75 % of its window, and always at least one: a short clip is
  padded with zeros, after its volume was set, to fill its window.
pool()'s L2-normalised mean of the partial embeddings is then embed_utterance's vector.

Not re-implemented: preprocess_wav's silence trimming with webrtcvad (a C extension). Clips are
embedded with their pauses; trim long silences beforehand where they matter.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import HeadstartError
from .audio import AudioBackbone
from .backbone import ParamGroup
from .config import PretrainedCfg

SAMPLE_RATE = 16000
N_FFT, HOP, N_MELS = 400, 160, 40  # 25 ms windows every 10 ms
PARTIAL_FRAMES = 160  # 1.6 s of mel frames per partial utterance
PARTIAL_STEP = round(SAMPLE_RATE / 1.3 / HOP)  # 77 frames: embed_utterance's rate=1.3
MIN_COVERAGE = 0.75
PARTIAL_SAMPLES = PARTIAL_FRAMES * HOP
TARGET_RMS = 10 ** (-30 / 20)  # -30 dBFS
HIDDEN, LAYERS = 256, 3
UNUSED_KEYS = ("similarity_weight", "similarity_bias")  # GE2E's training loss, not the encoder


def slaney_mel_filters(
    sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS
) -> torch.Tensor:
    """librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels): (n_mels, n_fft // 2 + 1)
    triangles on Slaney's mel scale (linear below 1 kHz, logarithmic above), each scaled to
    unit area (norm='slaney'). Computed in float64 like librosa, returned as float32."""
    fft_freqs = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    mels = np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2)
    edges = mel_to_hz(mels)
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


# Slaney's scale (librosa's htk=False): 3 mels per 200 Hz up to 1 kHz, then 27 mels per
# factor 6.4 of frequency
F_SP, MIN_LOG_HZ, LOG_STEP = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
MIN_LOG_MEL = MIN_LOG_HZ / F_SP


def hz_to_mel(hz):
    hz = np.asarray(hz, dtype=np.float64)
    log_part = MIN_LOG_MEL + np.log(np.maximum(hz, MIN_LOG_HZ) / MIN_LOG_HZ) / LOG_STEP
    return np.where(hz >= MIN_LOG_HZ, log_part, hz / F_SP)


def mel_to_hz(mel):
    mel = np.asarray(mel, dtype=np.float64)
    log_part = MIN_LOG_HZ * np.exp(LOG_STEP * (np.maximum(mel, MIN_LOG_MEL) - MIN_LOG_MEL))
    return np.where(mel >= MIN_LOG_MEL, log_part, mel * F_SP)


# ---- partial utterances ----------------------------------------------------------------------


def partial_counts(lengths: torch.Tensor) -> torch.Tensor:
    """(B,) partials of clips of `lengths` samples: VoiceEncoder.compute_partial_slices."""
    frames = torch.div(lengths + HOP, HOP, rounding_mode="floor")  # ceil((n + 1) / HOP)
    steps = (frames - PARTIAL_FRAMES + PARTIAL_STEP + 1).clamp(min=1)
    counts = torch.div(steps + PARTIAL_STEP - 1, PARTIAL_STEP, rounding_mode="floor")
    last_start = (counts - 1) * PARTIAL_STEP * HOP
    # the last partial is dropped when the clip fills less than 75 % of it (never the only one)
    short = (lengths - last_start) < MIN_COVERAGE * PARTIAL_SAMPLES
    return counts - (short & (counts > 1)).long()


def padded_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """(B,) samples of each clip once zero-padded to the end of its last partial (resemblyzer
    pads the waveform before its mel, so the padding takes part in the last frames)."""
    stops = ((partial_counts(lengths) - 1) * PARTIAL_STEP + PARTIAL_FRAMES) * HOP
    return torch.maximum(lengths, stops)


def reflect_padded(audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, max(lengths) + N_FFT): each row's first `lengths` samples (zeros past the clip's own
    end) with N_FFT // 2 reflected samples on each side, as np.pad(mode="reflect") in librosa's
    centring; zeros after. Every length is at least one partial (25,600 samples)."""
    half = N_FFT // 2
    longest = int(lengths.max())
    audio = F.pad(audio, (0, max(0, longest - audio.shape[1])))[:, :longest]
    offsets = torch.arange(half, device=audio.device)[None, :]
    left = audio[:, 1 : half + 1].flip(1)
    right = audio.gather(1, lengths[:, None] - 2 - offsets)
    body = torch.cat([left, audio, audio.new_zeros(audio.shape[0], half)], dim=1)
    return body.scatter(1, lengths[:, None] + half + offsets, right)


# ---- the network -----------------------------------------------------------------------------


class GE2EBackbone(AudioBackbone):
    """(B, W, 256): the embedding of each of a clip's W partial utterances."""

    def __init__(self, name: str, cfg: PretrainedCfg, weight_id: str):
        super().__init__(name, cfg, weight_id)
        self.lstm = nn.LSTM(N_MELS, HIDDEN, LAYERS, batch_first=True)
        self.linear = nn.Linear(HIDDEN, cfg.feature_dim)
        # constants, not weights: left out of the state dict
        self.register_buffer("mel_filters", slaney_mel_filters(), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)

    def min_samples(self) -> int:
        return 1  # any clip gives one partial: a short one is padded like resemblyzer does

    def window_counts(self, lengths: torch.Tensor) -> torch.Tensor:
        return partial_counts(lengths)

    def mel(self, audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, F, 40) power mel frames of the volume-normalised clips, in float32 whatever the
        network's dtype (the STFT wants it)."""
        audio, lengths = audio.float(), lengths.to(audio.device)
        inside = torch.arange(audio.shape[1], device=audio.device)[None, :] < lengths[:, None]
        audio = audio * inside
        rms = (audio.square().sum(dim=1) / lengths.clamp(min=1)).sqrt()
        # raise to -30 dBFS, never lower; a silent clip stays silent (resemblyzer: NaN)
        gain = torch.where(rms > 0, TARGET_RMS / rms.clamp(min=1e-12), 1.0).clamp(min=1.0)
        padded = reflect_padded(audio * gain[:, None], padded_lengths(lengths))
        spec = torch.stft(
            padded,
            N_FFT,
            HOP,
            window=self.window.float(),
            center=False,
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # (B, 201, F)
        return power.transpose(1, 2) @ self.mel_filters.float().T

    def partials(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 160, 40) mel windows of every clip's partials, and the (B, W) mask placing them."""
        lengths = batch["lengths"].to(batch["audio"].device)
        mel = self.mel(batch["audio"], lengths)
        counts = self.window_counts(lengths)
        windows = int(counts.max())
        need = (windows - 1) * PARTIAL_STEP + PARTIAL_FRAMES
        mel = F.pad(mel, (0, 0, 0, max(0, need - mel.shape[1])))
        cut = mel.unfold(1, PARTIAL_FRAMES, PARTIAL_STEP)[:, :windows]  # (B, W, 40, 160)
        mask = torch.arange(windows, device=mel.device)[None, :] < counts[:, None]
        return cut[mask].transpose(1, 2), mask

    def embed_partials(self, mels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """((N, 256) partial embeddings, (3, N, 256) each LSTM layer's final hidden state)."""
        _, (hidden, _) = self.lstm(mels.to(self.linear.weight.dtype))
        return F.normalize(F.relu(self.linear(hidden[-1])), dim=1), hidden

    def forward_features(self, batch: dict) -> torch.Tensor:
        mels, mask = self.partials(batch)
        return _place(self.embed_partials(mels)[0], mask)

    def forward_intermediates(self, batch: dict) -> list[torch.Tensor]:
        """Each LSTM layer's final hidden state per partial (B, W, 256), then the embeddings."""
        mels, mask = self.partials(batch)
        embeds, hidden = self.embed_partials(mels)
        return [_place(h, mask) for h in hidden] + [_place(embeds, mask)]

    def pool_intermediate(self, tensor: torch.Tensor, batch) -> torch.Tensor:
        return self.pool(tensor, batch)

    def reset_head(self) -> None:
        pass  # the GE2E loss's similarity scale and bias are dropped when loading

    def groups(self) -> list[ParamGroup]:
        params = dict(self.named_parameters())
        out = []
        for layer in range(LAYERS):
            names = sorted(n for n in params if n.startswith("lstm.") and n.endswith(f"_l{layer}"))
            out.append(ParamGroup(f"lstm.{layer}", [params[n] for n in names], names))
        names = ["linear.weight", "linear.bias"]
        out.append(ParamGroup("projection", [params[n] for n in names], names))
        return out


def _place(rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, D) rows of the masked windows -> (B, W, D), zeros where the mask is off."""
    out = rows.new_zeros(*mask.shape, rows.shape[-1])
    out[mask] = rows
    return out


# ---- weights --------------------------------------------------------------------------------


def build_ge2e(entry, weights_file: Path | None, pretrained: bool) -> GE2EBackbone:
    """The fetched pretrained.pt, a user's own file (.pt or .safetensors), or random init."""
    from .entry import weight_file

    fix = f"Fetch it again: headstart fetch {entry.name} --force."
    path, weight_id = weight_file(entry, weights_file, pretrained, ge2e_weight_path, fix)
    backbone = GE2EBackbone(entry.name, entry.cfg, weight_id)
    if path is not None:
        load_ge2e(backbone, read_ge2e_state(path), path)
    return backbone.eval()


def ge2e_weight_path(entry) -> Path:
    from .entry import locate_weights, unreachable
    from .registry import bundled_names

    found = locate_weights(entry.cfg.weights)
    if found is None or not found.is_file():
        raise unreachable(entry, "no such file", bundled_names("audio"))
    return found


def read_ge2e_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors, or from a .pt checkpoint like resemblyzer's (its weights
    under "model_state", beside the step count and optimiser state), read with weights_only."""
    from .weights import load_state_dict

    if path.suffix.lower() == ".safetensors":
        return load_state_dict(path)
    try:
        found = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # any decoding failure is the file's fault
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HeadstartError(
            f"Cannot read weights file '{path}': {first[:300]}. Expected resemblyzer's "
            "pretrained.pt or a state dict saved with torch.save or safetensors."
        ) from None
    if isinstance(found, dict) and isinstance(found.get("model_state"), dict):
        return found["model_state"]
    if isinstance(found, dict) and all(isinstance(v, torch.Tensor) for v in found.values()):
        return found
    return load_state_dict(path)  # other nestings, or its error about what the file holds


def load_ge2e(backbone: GE2EBackbone, state: dict, path: Path) -> None:
    state = {k: v for k, v in state.items() if k not in UNUSED_KEYS}
    target = backbone.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    wrong = [k for k in target if k in state and state[k].shape != target[k].shape]
    if missing or unexpected or wrong:
        raise HeadstartError(
            f"Weights file '{path}' does not fit {backbone.name} (a 3-layer 256-unit LSTM over "
            f"40 mel bands, then Linear(256, 256)): missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}, wrong shape {wrong[:3]}. Use resemblyzer's pretrained.pt or a "
            "state dict saved from this backbone."
        )
    backbone.load_state_dict({k: v.float() for k, v in state.items()})
