"""The layer scan on every registered architecture, and issue 19: MPNet's 'embeddings' group holds
the shared relative-position bias, whose output is no (batch, tokens, dim) tensor; the scan takes
each group's output from forward_intermediates, so it never sees that table.

Everything is offline and tiny: image entries keep their architecture at random init with small
inputs; text entries are rebuilt at their architecture with a 32-wide, 2-layer config and a small
tokenizer, saved as a Hugging Face folder.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest
import torch

import headstart.zoo
from headstart.data.sources import read_source
from headstart.select.layers import LayerTap, rank_layers
from headstart.select.rank import Candidate
from headstart.zoo import get_entry, registered_names

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster

VOCAB = ["[CLS]", "[PAD]", "[SEP]", "[UNK]", "[MASK]", "a", "the", "cat", "dog", "sat", "ran"]
VOCAB += ["on", "mat", "rug", "stock", "bond", "rose", "fell", "price", "today", "market"]
IMAGE_SIDE = {"inception_v3": 75}  # the smallest input each architecture takes; 32 otherwise
TINY = {  # every name the architectures use for width, depth and heads
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 37,
    "d_ff": 37,
    "d_kv": 16,
    "n_inner": 37,
}


def tiny_text_folder(folder, model_type: str, **config) -> str:
    """A random-init encoder of `model_type`, 32 wide and 2 layers deep, with a tokenizer."""
    import transformers

    from headstart.zoo.text import new_encoder

    cfg = transformers.AutoConfig.for_model(model_type, **config)
    for key, value in TINY.items():
        if hasattr(cfg, key):
            setattr(cfg, key, value)
    # [PAD] is id 1, MPNet's and RoBERTa's padding id (their position ids skip it)
    tokenizer = transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)})
    torch.manual_seed(0)
    new_encoder(cfg).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return f"hf:{folder}"


def write_texts(path, count: int, seed: int = 0, labels=("pets", "money")) -> str:
    """A CSV of `count` short texts, labels alternating; words drawn at random (no signal)."""
    rng = np.random.default_rng(seed)
    rows = ["text,label"]
    for index in range(count):
        words = rng.choice(VOCAB[5:], size=int(rng.integers(3, 9)))
        rows.append(f"{' '.join(words)},{labels[index % 2]}")
    path.write_text("\n".join(rows) + "\n")
    return path


def image_folder(root, per_class: int = 4):
    from conftest import write_noise_images

    write_noise_images(root / "a", per_class, side=24, seed=0)
    write_noise_images(root / "b", per_class, side=24, seed=1)
    return root


def small_images(monkeypatch, name: str) -> None:
    """The registered entry, its input side made small: the same network, a cheap forward."""
    real = headstart.zoo.get_entry

    def smaller(asked):
        entry = real(asked)
        if asked != name:
            return entry
        pre = dataclasses.replace(entry.cfg.preprocess, input_size=IMAGE_SIDE.get(name, 32))
        return dataclasses.replace(entry, cfg=dataclasses.replace(entry.cfg, preprocess=pre))

    monkeypatch.setattr(headstart.zoo, "get_entry", smaller)


def layer_rows(ranking) -> list:
    return sorted((r for r in ranking.rows if r.kind == "layer"), key=lambda r: r.group)


@pytest.mark.parametrize("name", registered_names())
def test_layer_scan_on_every_registered_architecture(name, tmp_path, monkeypatch):
    entry = get_entry(name)
    if entry.modality == "image":
        small_images(monkeypatch, name)
        source, model = read_source(image_folder(tmp_path / "pictures")), name
        with torch.device("meta"):  # the groups only: no weights, no time
            groups = len(entry.build(pretrained=False).groups())
    elif entry.modality == "audio":
        from audio_files import tone_folder

        source, model = read_source(tone_folder(tmp_path / "clips", per_class=3)), name
        groups = len(entry.build(pretrained=False).groups())
    else:
        model = tiny_text_folder(tmp_path / "model", entry.architecture)
        source = read_source(write_texts(tmp_path / "texts.csv", 10))
        groups = len(get_entry(model).build(pretrained=False).groups())
    ranking = rank_layers(source, Candidate(model, pretrained=False), workers=0)
    rows = layer_rows(ranking)
    assert [r.group for r in rows] == list(range(groups)), name
    assert all(np.isfinite(r.logme) and r.dim > 0 for r in rows), name
    assert 1 <= ranking.extra["unfreeze"] <= groups


# ---- MPNet, issue 19 ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_mpnet(tmp_path_factory) -> str:
    return tiny_text_folder(tmp_path_factory.mktemp("tiny_mpnet"), "mpnet")


def test_mpnet_embeddings_group_holds_the_relative_bias_but_its_output_is_token_states(
    tiny_mpnet,
):
    backbone = get_entry(tiny_mpnet).build()
    groups = backbone.groups()
    assert groups[0].name == "embeddings"
    assert "encoder.relative_attention_bias.weight" in groups[0].modules
    batch = backbone.tokenize(["a cat sat on the mat today", "the dog ran"])
    with torch.no_grad():
        found = backbone.forward_intermediates(batch)
        states = backbone.model(**batch, output_hidden_states=True).hidden_states
    assert len(found) == len(groups)
    tokens = batch["input_ids"].shape[1]
    assert all(t.shape == (2, tokens, 32) for t in found)
    assert torch.equal(found[0], states[0]) and torch.equal(found[1], states[1])
    tap = LayerTap(backbone)
    assert tap.dims == [32] * len(groups)
    with torch.no_grad():
        cuts = tap(batch)
    assert cuts.shape == (2, 32 * len(groups))
    # the top cut is the backbone's own embedding
    torch.testing.assert_close(cuts[:, -32:], backbone(batch), rtol=0, atol=0)


def test_mpnet_layer_scan(tiny_mpnet, tmp_path):
    source = read_source(write_texts(tmp_path / "texts.csv", 20))
    ranking = rank_layers(source, Candidate(tiny_mpnet), workers=0)
    rows = layer_rows(ranking)
    assert [r.candidate.rsplit("@", 1)[1] for r in rows] == [
        "embeddings",
        "layer.0",
        "layer.1",
        "final",
    ]
    assert all(r.n == 20 for r in rows)


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    from headstart.cli import main

    monkeypatch.setattr(sys, "argv", ["headstart", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_mpnet_rank_layers_cli(tiny_mpnet, tmp_path, monkeypatch, capsys):
    data = write_texts(tmp_path / "texts.csv", 20)
    code, out, err = run_cli(monkeypatch, capsys, "rank", data, "--layers", "--model", tiny_mpnet)
    assert code == 0, err
    assert f"{tiny_mpnet}@embeddings" in out and "no-transfer" in out
    assert "unfreeze" in out.splitlines()[-1]


def test_mpnet_fit_strategy_auto_runs_the_layer_scan(tiny_mpnet, tmp_path, monkeypatch, capsys):
    """20 texts per class (enough for `auto` to consider training) with labels the random words
    cannot predict (so the frozen probe is not good enough): auto scans the layers."""
    from headstart.modalities.text import TextModality

    # texts need 1,000 rows before auto offers freeze-unfreeze; a tiny model needs fewer
    only = {("freeze-unfreeze", "many"): (0.5, "head first, then the encoder")}
    monkeypatch.setattr(TextModality, "auto_gains", only)
    monkeypatch.setattr(TextModality, "auto_train_rows", 0)
    train = write_texts(tmp_path / "train.csv", 40, seed=0)
    val = write_texts(tmp_path / "test.csv", 10, seed=1)
    run = tmp_path / "run"
    args = ["fit", train, "--val", val, "--model", tiny_mpnet, "--strategy", "auto"]
    code, _, err = run_cli(monkeypatch, capsys, *args, "--epochs", "1", "--out", run)
    assert code == 0, err
    assert "layer scan" in err
    config = json.loads((run / "config.json").read_text())
    scan = config["fit"]["layer_scan"]
    assert scan["groups"] == 4 and len(scan["logme"]) == 4
    assert config["fit"]["auto"]["plan"].startswith("freeze-unfreeze")
    # random words cannot predict these labels: the check decides which model is kept
    assert config["fit"]["auto"]["check"]["kept"] in ("trained", "probe")
