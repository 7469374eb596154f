import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import headstart
from headstart.errors import HeadstartError
from headstart.features.cache import (
    EmbeddingCache,
    cache_root,
    content_hash_file,
    content_hash_text,
    item_key,
)

# Child processes must import the same headstart as this test, installed or not.
SRC = str(Path(headstart.__file__).resolve().parents[1])


@pytest.fixture
def root(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("HEADSTART_CACHE", str(path))
    return path


@pytest.fixture
def cache(root):
    with EmbeddingCache() as c:
        yield c


def keys_for(names, model_key="mk"):
    return [item_key(content_hash_text(str(n)), model_key) for n in names]


def run_child(script, *args):
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = textwrap.dedent(script)
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def raw_count(root):
    with sqlite3.connect(root / "embeddings.sqlite") as conn:
        return conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]


def test_cache_root_follows_env_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "x"))
    assert cache_root() == tmp_path / "x"
    monkeypatch.delenv("HEADSTART_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "headstart"


def test_db_lives_under_root(cache, root):
    assert cache.path == root / "embeddings.sqlite"
    assert cache.path.exists()
    mode = cache.conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_round_trip_is_exact_and_misses_are_absent(cache):
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((1200, 16)).astype(np.float32)
    keys = keys_for(range(1200))
    cache.put_many("model-a", "mk", keys, vecs)
    # 1200 + misses spans several 500-key chunks.
    got = cache.get_many(keys + keys_for(["missing-1", "missing-2"]))
    assert set(got) == set(keys)
    for key, vec in zip(keys, vecs, strict=True):
        assert got[key].dtype == np.float32 and got[key].ndim == 1
        np.testing.assert_array_equal(got[key], vec)


def test_other_model_key_is_a_miss(cache):
    content = content_hash_text("a cat on a mat")
    cache.put_many("m", "model-v1", [item_key(content, "model-v1")], np.ones((1, 4)))
    assert cache.get_many([item_key(content, "model-v2")]) == {}
    assert len(cache.get_many([item_key(content, "model-v1")])) == 1


def test_renamed_file_hits(cache, tmp_path):
    first = tmp_path / "a" / "photo.jpg"
    first.parent.mkdir()
    first.write_bytes(b"\xff\xd8 some image bytes")
    key = item_key(content_hash_file(first), "mk")
    cache.put_many("m", "mk", [key], np.arange(4, dtype=np.float32)[None])
    moved = tmp_path / "b" / "renamed.jpg"
    moved.parent.mkdir()
    first.rename(moved)
    hit = cache.get_many([item_key(content_hash_file(moved), "mk")])
    np.testing.assert_array_equal(hit[key], np.arange(4, dtype=np.float32))


def test_content_hashes_match_sha256(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)  # crosses several 1 MiB blocks
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert content_hash_file(path) == hashlib.sha256(data).hexdigest()
    assert content_hash_text("héllo") == hashlib.sha256("héllo".encode()).hexdigest()
    assert item_key("a", "b") != item_key("b", "a")


def test_put_many_checks_shape_and_skips_non_finite(cache):
    with pytest.raises(ValueError, match="one vector per key"):
        cache.put_many("m", "mk", keys_for([1, 2]), np.zeros((3, 4)))
    vecs = np.array([[1.0, 2.0], [np.nan, 0.0]])
    assert cache.put_many("m", "mk", keys_for([1, 2]), vecs) == 1
    assert list(cache.get_many(keys_for([1, 2]))) == keys_for([1])


def test_info_and_clear(cache):
    cache.put_many("a", "ka", keys_for(range(3000), "ka"), np.ones((3000, 64)))
    cache.put_many("b", "kb", keys_for(range(5), "kb"), np.ones((5, 8)))
    info = cache.info()
    assert info["entries"] == 3005
    assert info["models"]["a"] == {"entries": 3000, "dim": 64, "bytes": 3000 * 64 * 4}
    assert info["models"]["b"] == {"entries": 5, "dim": 8, "bytes": 5 * 8 * 4}
    size_full = info["size"]
    assert size_full > 3000 * 64 * 4

    assert cache.clear("b") == 5
    assert cache.clear("nope") == 0
    assert set(cache.info()["models"]) == {"a"}
    assert cache.clear() == 3000
    info = cache.info()
    assert info["entries"] == 0 and info["models"] == {}
    assert info["size"] < size_full / 10


def test_damaged_rows_are_misses_and_deleted(cache, root):
    keys = keys_for(range(3))
    cache.put_many("m", "mk", keys, np.ones((3, 4)))
    nan_blob = np.array([1, np.nan, 2, 3], dtype=np.float32).tobytes()
    with sqlite3.connect(root / "embeddings.sqlite") as conn:
        conn.execute("UPDATE embeddings SET vec = ? WHERE key = ?", (b"abc", keys[0]))
        conn.execute("UPDATE embeddings SET vec = ? WHERE key = ?", (nan_blob, keys[1]))
    assert list(cache.get_many(keys)) == [keys[2]]
    assert raw_count(root) == 1


def test_threads_share_one_instance(cache):
    def work(n):
        keys = keys_for([f"{n}-{i}" for i in range(200)])
        for start in range(0, 200, 20):
            part = keys[start : start + 20]
            cache.put_many("m", "mk", part, np.full((20, 4), n, dtype=np.float32))
            assert len(cache.get_many(part)) == 20

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.info()["entries"] == 800


WRITE_FOREVER = """
    import sys
    from pathlib import Path
    import numpy as np
    from headstart.features.cache import EmbeddingCache, content_hash_text, item_key

    cache = EmbeddingCache(Path(sys.argv[1]))
    batch = 0
    while True:
        keys = [item_key(content_hash_text(f"{batch}:{i}"), "mk") for i in range(64)]
        cache.put_many("m", "mk", keys, np.full((64, 32), batch, dtype=np.float32))
        if batch == 0:
            print("ready", flush=True)
        batch += 1
"""


def test_kill_9_leaves_whole_batches(root):
    child = run_child(WRITE_FOREVER, root)
    assert child.stdout.readline().strip() == "ready", child.stderr.read()
    time.sleep(1.0)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    assert child.returncode == -signal.SIGKILL

    with sqlite3.connect(root / "embeddings.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    count = raw_count(root)
    assert count >= 64 and count % 64 == 0
    # Batches were written in order, so batches 0..n-1 are complete and nothing else exists.
    with EmbeddingCache(root) as cache:
        for batch in range(count // 64 + 1):
            keys = keys_for([f"{batch}:{i}" for i in range(64)])
            got = cache.get_many(keys)
            if batch == count // 64:
                assert got == {}
                continue
            assert len(got) == 64
            for vec in got.values():
                np.testing.assert_array_equal(vec, np.full(32, batch, dtype=np.float32))


WRITE_RANGE = """
    import sys, time
    from pathlib import Path
    import numpy as np
    from headstart.features.cache import EmbeddingCache, content_hash_text, item_key

    root, first = Path(sys.argv[1]), int(sys.argv[2])
    print("ready", flush=True)
    go = root.parent / "go"
    while not go.exists():  # start both writers (and the db creation) at the same moment
        time.sleep(0.001)
    with EmbeddingCache(root) as cache:
        for start in range(first, first + 2000, 50):
            ids = range(start, start + 50)
            keys = [item_key(content_hash_text(str(i)), "mk") for i in ids]
            vecs = np.repeat(np.array(ids, dtype=np.float32)[:, None], 16, axis=1)
            cache.put_many("m", "mk", keys, vecs)
            cache.get_many(keys)
            time.sleep(0.002)  # let the other writer interleave
"""


def test_two_processes_write_at_once(root):
    children = [run_child(WRITE_RANGE, root, first) for first in (0, 1000)]
    for child in children:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
    (root.parent / "go").touch()
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    assert raw_count(root) == 3000
    with EmbeddingCache(root) as cache:
        got = cache.get_many(keys_for(range(3000)))
    assert len(got) == 3000
    for i, key in enumerate(keys_for(range(3000))):
        assert got[key][0] == i


def test_garbage_db_file_is_a_clear_error(root):
    root.mkdir(parents=True)
    db = root / "embeddings.sqlite"
    db.write_bytes(os.urandom(4096))
    with pytest.raises(HeadstartError) as err:
        EmbeddingCache()
    message = str(err.value)
    assert str(db) in message and "Delete" in message
    assert "\n" not in message


def test_closed_cache_refuses_use(root):
    cache = EmbeddingCache()
    cache.close()
    cache.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        cache.get_many(["x"])
