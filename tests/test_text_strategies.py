"""The text-only strategies: lora (PEFT adapters, adapter-only runs) and contrastive (SetFit).

Most tests use a 2-layer, 32-wide random BERT saved as a Hugging Face folder (`hf:<folder>`),
so that a fit takes a second on the CPU; two use the bundled MiniLM on 24 short sentences.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import save_tiny_bert
from safetensors.torch import load_file

from headstart.errors import HeadstartError
from headstart.estimators import ImageClassifier
from headstart.estimators.base import TransferEstimator
from headstart.strategies import STRATEGIES, get_strategy
from headstart.strategies.contrastive import Contrastive, make_pairs
from headstart.strategies.lora import LoRA, target_modules

try:  # written alongside; the tests need only the text modality of the shared estimator
    from headstart.estimators.text import TextClassifier
except ImportError:

    class TextClassifier(TransferEstimator):
        modality = "text"


PETS = ["a", "the", "cat", "dog", "kitten", "sits", "lies", "runs", "on", "mat", "rug"]
MONEY = ["markets", "fell", "rose", "sharply", "today", "shares"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *PETS, *MONEY]
FAST = dict(batch_size=8, device="cpu", workers=0, verbose=False, seed=0)

SENTENCES = {
    "positive": [
        "a wonderful, moving film",
        "I loved every minute of it",
        "brilliant acting and a clever story",
        "the best movie I have seen this year",
        "funny, warm and beautifully made",
        "an absolute delight from start to finish",
        "great music and gorgeous pictures",
        "a charming and uplifting story",
        "superb performances all round",
        "smart, touching and very funny",
        "I would happily watch it again",
        "a joyful, generous piece of cinema",
    ],
    "negative": [
        "a dull and tedious film",
        "I hated every minute of it",
        "wooden acting and a silly story",
        "the worst movie I have seen this year",
        "boring, cold and badly made",
        "a complete waste of time",
        "awful music and ugly pictures",
        "a depressing and pointless story",
        "terrible performances all round",
        "clumsy, flat and never funny",
        "I walked out after twenty minutes",
        "a joyless, lazy piece of cinema",
    ],
}


def sentences() -> tuple[list[str], list[str]]:
    texts = [t for label in SENTENCES for t in SENTENCES[label]]
    labels = [label for label in SENTENCES for _ in SENTENCES[label]]
    return texts, labels


def toy_texts(count: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for index in range(count):
        money = index % 2 == 1
        words = rng.choice(MONEY if money else PETS, size=int(rng.integers(3, 8)))
        texts.append(" ".join(words))
        labels.append("money" if money else "pets")
    return texts, labels


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    """A 2-layer, 32-wide random BERT with its tokenizer, saved as a Hugging Face folder."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    return save_tiny_bert(folder, VOCAB, intermediate_size=64, max_positions=64)


def pretrained_state(name: str) -> dict[str, torch.Tensor]:
    from headstart.zoo import get_entry

    return {k: v.clone() for k, v in get_entry(name).build().model.state_dict().items()}


# ---- options and refusals -----------------------------------------------------------------------


def test_strategies_are_registered_with_options():
    assert {"lora", "contrastive"} <= set(STRATEGIES)
    lora = get_strategy("lora:rank=4,alpha=8,dropout=0,targets=query+value,merge=false")
    assert isinstance(lora, LoRA)
    assert (lora.r, lora.alpha, lora.dropout, lora.targets, lora.merge) == (
        4,
        8.0,
        0.0,
        ["query", "value"],
        False,
    )
    assert get_strategy("lora").describe()["r"] == 8
    tuned = get_strategy("contrastive:iterations=5,max_pairs=100", lr=1e-5)
    assert isinstance(tuned, Contrastive)
    assert (tuned.iterations, tuned.max_pairs, tuned.lr, tuned.batch) == (5, 100, 1e-5, 16)
    with pytest.raises(HeadstartError, match="Did you mean 'alpha'"):
        get_strategy("lora:alpah=3")
    with pytest.raises(HeadstartError, match="whole number"):
        get_strategy("lora:r=big")
    with pytest.raises(HeadstartError, match="takes no options"):
        get_strategy("fine-tune:r=4")


@pytest.mark.parametrize("strategy", ["lora", "contrastive", "lora:r=4"])
def test_text_strategies_refuse_images_before_any_work(strategy, tmp_path):
    with pytest.raises(HeadstartError, match="For images use one of:.*freeze-unfreeze") as caught:
        ImageClassifier(strategy=strategy, verbose=False).fit(tmp_path / "never-read")
    assert "\n" not in str(caught.value)


def test_lora_targets_query_value_or_every_layer_linear():
    import transformers
    from torch import nn

    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    assert target_modules(transformers.BertModel(config), "auto") == ["query", "value"]

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.mix, self.out = nn.Linear(4, 4), nn.Linear(4, 4)

    class Odd(nn.Module):  # no query/value names: every Linear inside the layer stack
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(4, 4)
            self.layers = nn.ModuleList([Block(), Block()])

    odd = Odd()
    assert target_modules(odd, "auto") == [
        "layers.0.mix",
        "layers.0.out",
        "layers.1.mix",
        "layers.1.out",
    ]
    with pytest.raises(HeadstartError, match="match no Linear layer"):
        target_modules(odd, ["query"])


# ---- lora ---------------------------------------------------------------------------------------


def test_lora_trains_only_adapters_and_head(tiny_bert, tmp_path, trained_weights_kept):
    texts, labels = toy_texts(40, 0)
    before = pretrained_state(tiny_bert)
    clf = TextClassifier(tiny_bert, "lora:r=4,alpha=8,merge=false", epochs=3, lr=5e-3, **FAST)
    clf.fit(texts, y=labels)
    assert clf.backbone_trained_ and clf.backbone_.weight_id.startswith("tuned-")
    assert [e["epoch"] for e in clf.history_] == [0, 1, 2, 3]  # 0: the probe head, scored
    state = clf.backbone_.model.state_dict()
    adapters = {k: v for k, v in state.items() if "lora_" in k}
    assert adapters and all(".query." in k or ".value." in k for k in adapters)
    assert any(v.abs().sum() > 0 for k, v in adapters.items() if "lora_B" in k)  # B starts at 0
    for key, value in before.items():  # every pre-trained weight is as it was
        base = key.replace(".query.", ".query.base_layer.").replace(".value.", ".value.base_layer.")
        assert torch.equal(state[base], value), key
    assert all(not p.requires_grad for p in clf.backbone_.parameters())
    info = clf.fit_info_
    assert info["adapter_params"] == sum(v.numel() for v in adapters.values())
    assert info["adapter_bytes"] == 4 * info["adapter_params"]
    loaded = TextClassifier.load(clf.save(tmp_path / "run"))  # unmerged adapters reload too
    assert any("lora_" in k for k in loaded.backbone_.model.state_dict())
    np.testing.assert_array_equal(loaded.predict_proba(texts[:8]), clf.predict_proba(texts[:8]))


def test_lora_run_holds_adapters_only_and_reloads_identically(
    tiny_bert, tmp_path, trained_weights_kept
):
    texts, labels = toy_texts(40, 0)
    before = pretrained_state(tiny_bert)
    clf = TextClassifier(tiny_bert, "lora:r=4,alpha=8", epochs=2, lr=5e-3, **FAST)
    clf.fit(texts, y=labels)
    merged = clf.backbone_.model.state_dict()
    assert set(merged) == set(before)  # merged: a plain encoder again
    changed = {k for k in before if not torch.equal(merged[k], before[k])}
    assert changed and all(".query.weight" in k or ".value.weight" in k for k in changed)

    probe_texts, _ = toy_texts(12, 5)
    proba = clf.predict_proba(probe_texts)
    run = clf.save(tmp_path / "run")
    saved = load_file(str(run / "model.safetensors"))
    assert {k.split(".")[0] for k in saved} == {"head", "adapter"}
    # 2 layers x (query, value) x (A, B)
    assert sum(1 for k in saved if k.startswith("adapter.")) == 2 * 2 * 2
    config = json.loads((run / "config.json").read_text())
    assert config["strategy"]["name"] == "lora"
    assert config["strategy"]["r"] == 4 and config["strategy"]["alpha"] == 8.0
    assert config["strategy"]["targets"] == ["query", "value"]
    assert config["backbone"]["trained"] is True

    loaded = TextClassifier.load(run)
    np.testing.assert_array_equal(loaded.predict_proba(probe_texts), proba)
    assert loaded.predict(probe_texts) == clf.predict(probe_texts)
    assert loaded.fit_info_["adapter_bytes"] == clf.fit_info_["adapter_bytes"]
    restored = loaded.strategy_.saved_tensors(loaded.backbone_)
    assert set(restored) == {k for k in saved if "adapter." in k}

    config["backbone"]["pretrained_weight_id"] = "0" * 64  # adapters for other weights
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(HeadstartError, match="differ from those the LoRA adapters"):
        TextClassifier.load(run)


def test_lora_on_minilm_saves_a_small_adapter(tmp_path):
    texts, labels = sentences()
    clf = TextClassifier("minilm_l6", "lora", epochs=1, **FAST).fit(texts, y=labels)
    run = clf.save(tmp_path / "run")
    size = (run / "model.safetensors").stat().st_size
    assert size < 1_000_000, size  # the encoder alone is ~90 MB
    # 6 layers x (query, value) x (A: 8 x 384, B: 384 x 8), float32
    assert clf.fit_info_["adapter_bytes"] == 6 * 2 * 2 * 8 * 384 * 4
    loaded = TextClassifier.load(run)
    np.testing.assert_array_equal(loaded.predict_proba(texts[:6]), clf.predict_proba(texts[:6]))


# ---- contrastive --------------------------------------------------------------------------------


def test_pairs_are_labelled_right_and_bounded():
    labels = np.array([0] * 3 + [1] * 5 + [2])
    pairs = make_pairs(labels, per_example=20, max_pairs=20_000, seed=0)
    assert pairs.shape == (2 * 20 * len(labels), 3)
    same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
    assert np.array_equal(same, pairs[:, 2] == 1) and pairs[:, 2].mean() == 0.5
    lonely = pairs[(pairs[:, 2] == 1) & (labels[pairs[:, 0]] != 2)]
    assert (lonely[:, 0] != lonely[:, 1]).all()  # a partner, not the anchor itself
    np.testing.assert_array_equal(make_pairs(labels, 20, 20_000, 0), pairs)

    many = np.random.default_rng(1).integers(0, 2, 2_000)
    capped = make_pairs(many, per_example=20, max_pairs=20_000, seed=0)
    assert len(capped) == 20_000  # not 2 x 20 x 2,000 = 80,000
    uses = np.bincount(capped[:, 0], minlength=len(many))
    assert uses.max() - uses.min() <= 2  # anchors are used evenly
    assert len(make_pairs(many, 20, 500, 0)) == 500


def test_default_pairs_are_every_unique_pair_balanced():
    labels = np.array([0] * 16 + [1] * 16)
    pairs = make_pairs(labels, per_example=None, max_pairs=20_000, seed=0)
    # 2 x C(16, 2) = 240 positive and 16 x 16 = 256 negative unique pairs: positives oversampled
    assert pairs.shape == (512, 3) and pairs[:, 2].sum() == 256
    assert len({tuple(sorted(p)) for p in pairs[:, :2].tolist()}) == 496  # each one at least once
    same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
    assert np.array_equal(same, pairs[:, 2] == 1) and (pairs[:, 0] != pairs[:, 1]).all()
    assert len(make_pairs(labels, None, 100, 0)) == 100
    many = np.random.default_rng(1).integers(0, 2, 2_000)  # ~2 million unique pairs
    assert len(make_pairs(many, None, 20_000, 0)) == 20_000
    assert len(make_pairs(np.array([0, 1, 2]), None, 20_000, 0)) == 12  # no positive pair


def test_contrastive_tunes_the_encoder_and_round_trips(tiny_bert, tmp_path):
    texts, labels = toy_texts(30, 0)
    before = pretrained_state(tiny_bert)
    make = lambda: TextClassifier(  # noqa: E731
        tiny_bert, "contrastive:iterations=4", lr=1e-3, **FAST
    ).fit(texts, y=labels)
    clf = make()
    assert clf.fit_info_["pairs"] == 2 * 4 * 24  # 24 training texts after the 20% validation
    assert clf.fit_info_["positive_pairs"] == 4 * 24
    assert len(clf.history_) == 1 and np.isfinite(clf.history_[0]["train_loss"])
    tuned = clf.backbone_.model.state_dict()
    assert any(not torch.equal(tuned[k], v) for k, v in before.items())
    probe_texts, _ = toy_texts(10, 9)
    proba = clf.predict_proba(probe_texts)
    np.testing.assert_array_equal(make().predict_proba(probe_texts), proba)  # seeded

    run = clf.save(tmp_path / "run")
    assert any(k.startswith("backbone.") for k in load_file(str(run / "model.safetensors")))
    loaded = TextClassifier.load(run)
    np.testing.assert_allclose(loaded.predict_proba(probe_texts), proba, atol=1e-6)


def test_contrastive_needs_single_label_classification(tiny_bert):
    texts, _ = toy_texts(20, 0)
    values = [i / 10 for i in range(20)]
    with pytest.raises(HeadstartError, match="single-label classification"):
        TextClassifier(tiny_bert, "contrastive", task="regression", **FAST).fit(texts, y=values)


def test_contrastive_on_minilm(tmp_path):
    texts, labels = sentences()
    clf = TextClassifier("minilm_l6", "contrastive:iterations=5", val_fraction=0.25, **FAST)
    clf.fit(texts, y=labels)
    assert clf.fit_info_["pairs"] == 2 * 5 * 18  # 18 training sentences
    assert np.isfinite(clf.history_[0]["train_loss"])
    assert clf.backbone_trained_ and clf.backbone_.weight_id.startswith("tuned-")
    assert clf.metrics_["n"] == 6 and clf.metrics_["accuracy"] >= 0.5
