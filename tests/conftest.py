"""Shared fixtures: an isolated embedding cache per test, the bundled backbones built once, and
small image folders written at test time from scikit-image's sample pictures (no binary files
live in the repository)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Models fetched on this machine (headstart fetch) must not change what the tests see: an empty
# folder of fetched models, set before any zoo entry is made (entries keep their folder).
os.environ["HEADSTART_MODELS"] = tempfile.mkdtemp(prefix="headstart-test-models-")

import headstart  # noqa: E402

# Child processes must import the same headstart as the tests, installed or not.
SRC = str(Path(headstart.__file__).resolve().parents[1])

# Two classes of six pictures each: colour photographs and greyscale ones.
SAMPLES = {
    "colour": ["chelsea", "coffee", "astronaut", "rocket", "hubble_deep_field", "retina"],
    "grey": ["camera", "moon", "coins", "page", "clock", "brick"],
}
SMALL_SIDE = 64  # shorter side of the written pictures: decoding stays cheap


def pytest_collection_modifyitems(config, items):
    """The `slow` marker (declared in pyproject.toml): skipped unless HEADSTART_SLOW=1."""
    if os.environ.get("HEADSTART_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow test; set HEADSTART_SLOW=1 to run it")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shared_cache")


@pytest.fixture(autouse=True)
def isolated_cache(request, tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own, empty embedding cache and never draws progress bars. A module
    that sets CACHE_PER_MODULE = True shares one cache among its tests instead (keys are
    content hashes, so each item is embedded once per module)."""
    if getattr(request.module, "CACHE_PER_MODULE", False):
        root = request.getfixturevalue("module_cache")
    else:
        root = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("HEADSTART_CACHE", str(root))
    monkeypatch.setenv("HEADSTART_NO_PROGRESS", "1")
    return root


@pytest.fixture
def trained_weights_kept(monkeypatch):
    """Tests of what training changes: keep the trained weights even where the start (a fitted
    head, epoch 0) scores better on the validation loss, as it can on tiny toy data."""
    import importlib

    engine = importlib.import_module("headstart.engine.train")  # the module, not train()
    monkeypatch.setattr(engine, "_keep_start_if_best", lambda module, start, state, h: [start, *h])


def child_env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: this test's cache, this checkout's source."""
    path = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


@pytest.fixture(scope="session")
def lite0():
    """efficientnet_lite0 with its bundled weights, built once per session."""
    from headstart.zoo import build

    return build("efficientnet_lite0")


@pytest.fixture(scope="session")
def minilm():
    """The bundled text backbone, built once per session."""
    from headstart.zoo import build

    return build("minilm_l6")


@pytest.fixture(scope="session")
def sample_pictures() -> dict[str, dict[str, Image.Image]]:
    """{class: {name: small PIL picture}} from scikit-image's bundled sample data."""
    from skimage import data

    pictures: dict[str, dict[str, Image.Image]] = {}
    for label, names in SAMPLES.items():
        pictures[label] = {}
        for name in names:
            img = Image.fromarray(np.asarray(getattr(data, name)()))
            width, height = img.size
            scale = SMALL_SIDE / min(width, height)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            pictures[label][name] = img.resize(size, Image.Resampling.BILINEAR)
    return pictures


def write_pictures(folder: Path, pictures: dict[str, dict[str, Image.Image]]) -> list[Path]:
    """Write every picture under folder/<class>/, alternating JPEG and PNG; return the paths."""
    paths = []
    for label, named in pictures.items():
        (folder / label).mkdir(parents=True, exist_ok=True)
        for index, (name, img) in enumerate(named.items()):
            path = folder / label / f"{name}.{'jpg' if index % 2 == 0 else 'png'}"
            img.save(path, **({"quality": 90} if path.suffix == ".jpg" else {}))
            paths.append(path)
    return sorted(paths)


@pytest.fixture
def image_folder(tmp_path, sample_pictures) -> Path:
    """A fresh class-folder tree (colour/ and grey/, six pictures each) the test may change."""
    folder = tmp_path / "pictures"
    write_pictures(folder, sample_pictures)
    return folder


def write_noise_images(folder: Path, count: int, side: int = 32, seed: int = 0) -> list[Path]:
    """`count` small PNGs of distinct random noise (every file has different bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        path = folder / f"img_{index:04d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def one_thread():
    """One torch thread for the test (restored after): tiny models run faster without thread
    hand-offs, and parallel test runs do not oversubscribe the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def save_tiny_bert(
    folder: Path, vocab: list[str], intermediate_size: int = 64, max_positions: int = 64
) -> str:
    """A 2-layer, 32-wide random BERT with a tokenizer over `vocab`, saved as a Hugging Face
    folder; returns its `hf:` model name."""
    import torch
    import transformers

    # transformers 5 ignores vocab_file=: pass the vocabulary itself
    tokenizer = transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    config = transformers.BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=intermediate_size,
        vocab_size=len(vocab),
        max_position_embeddings=max_positions,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return f"hf:{folder}"
