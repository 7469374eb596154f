"""Audio backbones: the common contract, and Google's speech_embedding re-implemented in torch.

An audio batch is {"audio": (B, S) float32 mono samples in [-1, 1] at the preprocess's rate,
zero-padded at the end; "lengths": (B,) samples of each clip}. forward_features gives one
embedding per analysis window, (B, W, D); `window_counts(lengths)` says how many of the W are
inside each clip; pool() is the masked mean (and max) over those, as the preprocess says.

speech_embedding (openwakeword 0.4.0 carries it as two ONNX files) is a log-mel front end and a
fully convolutional net whose receptive field is 76 mel frames with a stride of 8: run over a
whole clip, it gives the embedding of every 76-frame window at once (the windows share their
convolutions), which is both exact and far cheaper than cutting the windows out first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import HeadstartError
from .backbone import Backbone, ParamGroup
from .config import AudioPreprocess, PretrainedCfg


class AudioBackbone(Backbone):
    """Window embeddings over a clip, pooled by a masked mean (and max)."""

    modality = "audio"

    @property
    def preprocess(self) -> AudioPreprocess:
        return self.cfg.preprocess

    def min_samples(self) -> int:
        """The shortest input that gives one window."""
        raise NotImplementedError

    def window_counts(self, lengths: torch.Tensor) -> torch.Tensor:
        """(B,) how many windows of forward_features lie inside clips of `lengths` samples."""
        raise NotImplementedError

    def window_mask(self, batch: dict, windows: int) -> torch.Tensor:
        counts = self.window_counts(batch["lengths"]).clamp(min=1, max=windows)
        return torch.arange(windows, device=counts.device)[None, :] < counts[:, None]

    def pool(self, features: torch.Tensor, batch: dict) -> torch.Tensor:
        return pool_windows(features, self.window_mask(batch, features.shape[1]), self.preprocess)


def pool_windows(features: torch.Tensor, mask: torch.Tensor, pre: AudioPreprocess) -> torch.Tensor:
    """(B, W, D) window embeddings -> (B, kD) pooled over the masked windows: their mean, and
    with pooling "mean+max" or "mean+max+std" their maximum and standard deviation too.

    With pre.normalize, every window and then every pooled part is L2-normalised. On FSDD
    (bench/audio.py) both lifted speech_embedding's linear probe: one clip per digit 0.865 ->
    0.887, leave one speaker out 0.972 -> 0.977 (the spread most of that)."""
    if pre.normalize:
        features = F.normalize(features, dim=-1)
    weights = mask.unsqueeze(-1).to(features.dtype)
    count = weights.sum(dim=1).clamp(min=1.0)
    mean = (features * weights).sum(dim=1) / count
    parts = [mean]
    if pre.pooling in ("mean+max", "mean+max+std"):
        floor = torch.finfo(features.dtype).min
        parts.append(features.masked_fill(~mask.unsqueeze(-1), floor).amax(dim=1))
    if pre.pooling == "mean+max+std":
        square = (features.square() * weights).sum(dim=1) / count
        parts.append((square - mean.square()).clamp(min=0.0).sqrt())
    if pre.normalize:
        parts = [F.normalize(part, dim=1) for part in parts]
    return torch.cat(parts, dim=1)


# ---- speech_embedding ---------------------------------------------------------------------------

N_FFT, HOP, N_MELS = 512, 160, 32  # melspectrogram.onnx: 16 kHz, 32 ms frames every 10 ms
WINDOW_FRAMES, WINDOW_STRIDE = 76, 8  # embedding_model.onnx's input, and its net's time stride
TOP_DB = 80.0
FLOOR = -0.4  # the net clips every activation from below here (TF's tf.math.maximum)
# the 18 convolutions after the stem, in pairs (1x3 over bands: cin -> cout, then 3x1 over
# time: cout -> cout) per stage, and the max-pool that ends each stage
STAGES = (
    (((24, 24),), (2, 2)),
    (((24, 48), (48, 48)), (1, 2)),
    (((48, 72), (72, 72)), (2, 2)),
    (((72, 96), (96, 96)), (1, 2)),
    (((96, 96), (96, 96)), (2, 2)),
)


class MelFrontend(nn.Module):
    """melspectrogram.onnx: |STFT|^2 (as two convolutions) -> 32 mel bands -> dB, the top 80 dB
    of each clip kept, then openwakeword's `x / 10 + 2`. No trainable parameters."""

    def __init__(self):
        super().__init__()
        self.register_buffer("stft_real", torch.zeros(N_FFT // 2 + 1, 1, N_FFT))
        self.register_buffer("stft_imag", torch.zeros(N_FFT // 2 + 1, 1, N_FFT))
        self.register_buffer("mel", torch.zeros(N_FFT // 2 + 1, N_MELS))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, S) samples in [-1, 1] -> (B, T, 32) features, T = (S - 512) // 160 + 1."""
        x = audio * 32768.0  # the model reads int16-range samples
        # The ONNX file's two convolutions hold a windowed DFT basis (row 0 of the real part is
        # the window itself): torch.stft computes the same power twice as fast.
        window = self.stft_real[0, 0]
        spectrum = torch.stft(x, N_FFT, HOP, window=window, center=False, return_complex=True)
        power = spectrum.abs().square().transpose(1, 2)  # (B, T, 257)
        db = 10.0 * torch.log10((power @ self.mel).clamp(min=1e-10))
        top = db.amax(dim=(1, 2), keepdim=True)
        return torch.maximum(db, top - TOP_DB) / 10.0 + 2.0


def _floor(x: torch.Tensor) -> torch.Tensor:
    """max(leaky_relu(x, 0.2), -0.4), in place where no gradient is kept (extraction)."""
    if torch.is_grad_enabled():
        return F.leaky_relu(x, 0.2).clamp(min=FLOOR)
    return F.leaky_relu_(x.clamp_(min=FLOOR / 0.2), 0.2)


class SpeechEmbeddingNet(nn.Module):
    """embedding_model.onnx as a torch module: (B, T, 32) mel frames -> (B, W, 96) windows."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 24, 3, bias=False)
        self.stem_bn = nn.BatchNorm2d(24, eps=1e-3)
        self.stages = nn.ModuleList()
        for pairs, _pool in STAGES:
            convs = nn.ModuleList()
            for cin, cout in pairs:
                convs.append(nn.Conv2d(cin, cout, (1, 3), padding=(0, 1)))
                convs.append(nn.Conv2d(cout, cout, (3, 1)))
            self.stages.append(convs)
        self.pools = [pool for _pairs, pool in STAGES]
        self.out = nn.Conv2d(96, 96, (3, 1), bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He initialisation for leaky ReLU: the pre-trained net folded its BatchNorms into the
        convolutions, so nothing renormalises, and torch's default init shrank the signal to
        nothing by the last layer (a from-scratch run then never left chance)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=0.2, nonlinearity="leaky_relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward_stages(self, mel: torch.Tensor) -> list[torch.Tensor]:
        x = F.pad(mel.unsqueeze(1), (1, 1))  # (B, 1, T, 34): one padded band on each side
        x = x.contiguous(memory_format=torch.channels_last)  # a third faster on CPU
        x = _floor(self.stem_bn(F.relu(self.stem(x))))
        found = [x]
        for convs, pool in zip(self.stages, self.pools, strict=True):
            for conv in convs:
                x = _floor(conv(x))
            x = F.max_pool2d(x, pool)
            found.append(x)
        found.append(self.out(x))
        return found

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(mel)[-1].squeeze(3).transpose(1, 2)  # (B, W, 96)


class SpeechEmbeddingBackbone(AudioBackbone):
    def __init__(self, name: str, cfg: PretrainedCfg, weight_id: str):
        super().__init__(name, cfg, weight_id)
        self.frontend = MelFrontend()
        self.net = SpeechEmbeddingNet()

    def min_samples(self) -> int:
        return N_FFT + (WINDOW_FRAMES - 1) * HOP

    def window_counts(self, lengths: torch.Tensor) -> torch.Tensor:
        frames = torch.div(lengths - N_FFT, HOP, rounding_mode="floor") + 1
        return torch.div(frames - WINDOW_FRAMES, WINDOW_STRIDE, rounding_mode="floor") + 1

    def forward_features(self, batch: dict) -> torch.Tensor:
        return self.net(self.frontend(batch["audio"]))

    def forward_intermediates(self, batch: dict) -> list[torch.Tensor]:
        """Each group's output as a (B, C, T, F) map; the last is forward_features(batch)."""
        found = self.net.forward_stages(self.frontend(batch["audio"]))
        return found[:-1] + [self.forward_features(batch)]

    def pool_intermediate(self, tensor: torch.Tensor, batch) -> torch.Tensor:
        if tensor.dim() == 3:
            return self.pool(tensor, batch)[:, : tensor.shape[-1]]  # the mean part
        return tensor.mean(dim=(2, 3))

    def reset_head(self) -> None:
        pass  # the ONNX files carry no source head (openwakeword's wake-word heads are apart)

    def groups(self) -> list[ParamGroup]:
        named = [("stem", ["stem", "stem_bn"])]
        named += [(f"stage.{i}", [f"stages.{i}"]) for i in range(len(STAGES))]
        named += [("out", ["out"])]
        params = dict(self.net.named_parameters())
        out = []
        for label, prefixes in named:
            names = sorted(n for n in params if n.split(".")[0] in prefixes or _under(n, prefixes))
            out.append(ParamGroup(label, [params[n] for n in names], [f"net.{n}" for n in names]))
        return out


def _under(name: str, prefixes: list[str]) -> bool:
    return any(name.startswith(p + ".") for p in prefixes)


# ---- weights from the ONNX files ------------------------------------------------------------


def onnx_tensors(path: Path) -> tuple[dict[str, np.ndarray], list]:
    """(initialisers by name, nodes in order) of an ONNX file; protobuf only, nothing is run."""
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path))
    except Exception as err:
        raise HeadstartError(f"Cannot read ONNX file '{path}' ({err}).") from None
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return inits, list(model.graph.node)


def speech_embedding_state(mel_path: Path, embedding_path: Path) -> dict[str, torch.Tensor]:
    """The re-implementation's state dict, read off the two ONNX files in node order."""
    inits, nodes = onnx_tensors(embedding_path)
    convs = [[inits[i] for i in n.input[1:]] for n in nodes if n.op_type == "Conv"]
    (bn,) = [[inits[i] for i in n.input[1:]] for n in nodes if n.op_type == "BatchNormalization"]
    net = SpeechEmbeddingNet()
    targets = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    names = {id(m): n for n, m in net.named_modules()}
    state = {}
    if len(convs) != len(targets):
        raise HeadstartError(
            f"'{embedding_path}' has {len(convs)} convolutions; {len(targets)} expected. "
            "It is not openwakeword 0.4.0's embedding_model.onnx."
        )
    for module, tensors in zip(targets, convs, strict=True):
        state[f"net.{names[id(module)]}.weight"] = tensors[0]
        if len(tensors) > 1:
            state[f"net.{names[id(module)]}.bias"] = tensors[1]
    for key, value in zip(("weight", "bias", "running_mean", "running_var"), bn, strict=True):
        state[f"net.stem_bn.{key}"] = value
    state = {k: torch.as_tensor(np.array(v, dtype=np.float32)) for k, v in state.items()}
    return {**{f"frontend.{k}": v for k, v in frontend_state(mel_path).items()}, **state}


def frontend_state(mel_path: Path) -> dict[str, torch.Tensor]:
    """The STFT kernels and mel matrix of melspectrogram.onnx."""
    inits, _ = onnx_tensors(mel_path)
    found = {
        "stft_real": inits["0.stft.conv_real.weight"],
        "stft_imag": inits["0.stft.conv_imag.weight"],
        "mel": inits["1.melW"],
    }
    return {k: torch.as_tensor(np.array(v, dtype=np.float32)) for k, v in found.items()}


# ---- building --------------------------------------------------------------------------------

MEL_FILE = "melspectrogram.onnx"


def build_speech_embedding(entry, weights_file: Path | None, pretrained: bool):
    """The bundled ONNX pair (or a user's state dict file, random init with pretrained=False)."""
    from .entry import locate_weights
    from .weights import load_state_dict, sha256_file

    backbone = SpeechEmbeddingBackbone(entry.name, entry.cfg, "random-init")
    embedding = locate_weights(entry.cfg.weights)
    if embedding is not None:  # the front end is signal processing, not learned: always kept
        mel = embedding.with_name(MEL_FILE)
        check_package_file(mel, entry.cfg.extra["mel_sha256"])
        backbone.frontend.load_state_dict(frontend_state(mel))
    if weights_file is not None:
        state, backbone.weight_id = load_state_dict(weights_file), sha256_file(weights_file)
    elif pretrained:
        if embedding is None:
            raise HeadstartError(
                f"The weights of {entry.name!r} come with the package openwakeword==0.4.0, which "
                "is not installed: pip install openwakeword==0.4.0 (a dependency of headstart)."
            )
        check_package_file(embedding, entry.cfg.weights.sha256)
        state, backbone.weight_id = speech_embedding_state(mel, embedding), entry.cfg.weights.sha256
    else:
        return backbone.to(memory_format=torch.channels_last).eval()
    _load_strict(backbone, state, weights_file)
    return backbone.to(memory_format=torch.channels_last).eval()


def check_package_file(path: Path, expected: str) -> None:
    from .weights import check_sha256

    fix = (
        "the installed openwakeword is not 0.4.0 (later versions carry other files). "
        "pip install openwakeword==0.4.0."
    )
    check_sha256(path, expected, f"'{path}'", fix)


def _load_strict(backbone: nn.Module, state: dict, path: Path | None) -> None:
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if missing or unexpected:
        where = f"Weights file '{path}'" if path else "The bundled weights"
        raise HeadstartError(
            f"{where} do not fit {backbone.name}: missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}. Save a state dict of this architecture (headstart's own runs "
            "write one)."
        )
