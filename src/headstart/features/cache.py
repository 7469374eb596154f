"""Persistent, content-addressed cache of embeddings, kept in one SQLite file.

A row's key is sha256(content hash + model key): the content hash covers only an item's bytes, so
renaming or moving a file keeps its key, and the model key (built by the caller from the backbone,
its weights, the preprocessing and the precision) makes any change to how vectors are computed a
miss rather than a stale hit.

The database runs in WAL mode with a long busy timeout, so several processes can extract at once:
readers never block, and writers queue behind each other instead of failing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
import time
from pathlib import Path
from types import TracebackType

import numpy as np

from headstart.errors import HeadstartError

DB_NAME = "embeddings.sqlite"
BUSY_TIMEOUT_S = 60.0
# SQLite caps the number of bound variables per statement; stay well under old limits (999).
CHUNK = 500
HASH_BLOCK = 1 << 20

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS embeddings (
        key TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        model_key TEXT NOT NULL,
        dim INTEGER NOT NULL,
        dtype TEXT NOT NULL,
        vec BLOB NOT NULL,
        created REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS embeddings_model ON embeddings (model)",
)


def cache_root() -> Path:
    """The cache folder: $HEADSTART_CACHE if set, else ~/.cache/headstart."""
    env = os.environ.get("HEADSTART_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "headstart"


def content_hash_file(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks so large files never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def content_hash_text(text: str) -> str:
    """sha256 of a text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def item_key(content_hash: str, model_key: str) -> str:
    """The cache key of one item under one model: sha256 of both hashes."""
    return hashlib.sha256(f"{content_hash}\0{model_key}".encode()).hexdigest()


def _chunks(items: list[str], size: int = CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _decode(dim: int, dtype: str, blob: bytes) -> np.ndarray | None:
    """The stored vector, or None when the row is damaged (wrong type, length or non-finite)."""
    if dtype != "float32" or not isinstance(blob, bytes) or len(blob) != dim * 4 or dim <= 0:
        return None
    vec = np.frombuffer(blob, dtype="<f4").astype(np.float32)
    if not np.isfinite(vec).all():
        return None
    return vec


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL, retrying: SQLite does not apply the busy timeout to this pragma, so two
    processes opening a brand-new cache at the same moment would otherwise fail with 'locked'."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.01
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


class EmbeddingCache:
    """One connection to the embedding database; safe to share between threads of one process."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (Path(root) if root is not None else cache_root()).expanduser().absolute()
        self.path = self.root / DB_NAME
        # One connection, guarded by a lock, so DataLoader threads may share the instance.
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._open()

    # -- connection ----------------------------------------------------------------------------

    def _open(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HeadstartError(
                f"Cannot create the embedding cache folder {self.root}: {exc.strerror}. "
                "Set HEADSTART_CACHE to a writable folder."
            ) from exc
        conn = None
        try:
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so writers take the lock up
            # front and wait on the busy timeout instead of failing on a lock upgrade.
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            _enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in SCHEMA:
                conn.execute(statement)
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if conn is not None:
                conn.close()
            raise HeadstartError(
                f"Cannot open the embedding cache {self.path}: {exc}. Check that the folder is "
                "writable, or set HEADSTART_CACHE to another folder."
            ) from exc
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            raise HeadstartError(
                f"The embedding cache {self.path} is damaged or not an SQLite database ({exc}). "
                f"Delete the file {self.path} (it only holds cached embeddings, which are "
                "recomputed on demand) and run again."
            ) from exc
        self._conn = conn

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"The embedding cache {self.path} is closed.")
        if self._pid != os.getpid():
            # A connection inherited through fork must be neither used nor closed (closing could
            # checkpoint or delete the parent's WAL); keep it referenced and open a fresh one.
            self._inherited = self._conn
            self._pid = os.getpid()
            self._open()
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _write(self, sql: str, rows: list[tuple] | None = None) -> int:
        """Run one statement (over many rows) in its own transaction; return the rows changed."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            cursor = conn.executemany(sql, rows) if rows is not None else conn.execute(sql)
            changed = cursor.rowcount
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return changed

    # -- reads and writes ----------------------------------------------------------------------

    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]:
        """The cached vectors (float32, 1-D) for those keys that hit; damaged rows are removed."""
        found: dict[str, np.ndarray] = {}
        damaged: list[str] = []
        with self._lock:
            for part in _chunks(list(dict.fromkeys(keys))):
                marks = ",".join("?" * len(part))
                rows = self.conn.execute(
                    f"SELECT key, dim, dtype, vec FROM embeddings WHERE key IN ({marks})", part
                )
                for key, dim, dtype, blob in rows:
                    vec = _decode(dim, dtype, blob)
                    if vec is None:
                        damaged.append(key)
                    else:
                        found[key] = vec
            if damaged:
                self._write("DELETE FROM embeddings WHERE key = ?", [(k,) for k in damaged])
        return found

    def put_many(self, model: str, model_key: str, keys: list[str], vecs: np.ndarray) -> int:
        """Store one batch in one transaction, so a killed process leaves all of it or none.

        Rows that are not finite are skipped (get_many would reject them anyway); returns the
        number of rows stored.
        """
        vecs = np.ascontiguousarray(vecs, dtype="<f4")
        if vecs.ndim != 2 or vecs.shape[0] != len(keys):
            raise ValueError(
                f"put_many needs one vector per key: got {len(keys)} keys and an array of "
                f"shape {vecs.shape}."
            )
        now = time.time()
        dim = int(vecs.shape[1])
        ok = np.isfinite(vecs).all(axis=1)
        rows = [
            (key, model, model_key, dim, "float32", vecs[i].tobytes(), now)
            for i, key in enumerate(keys)
            if ok[i]
        ]
        if not rows:
            return 0
        with self._lock:
            self._write(
                "INSERT OR REPLACE INTO embeddings "
                "(key, model, model_key, dim, dtype, vec, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return len(rows)

    # -- housekeeping --------------------------------------------------------------------------

    def size_bytes(self) -> int:
        """Bytes on disk: the database file plus its write-ahead log."""
        total = 0
        for path in (self.path, self.path.with_name(DB_NAME + "-wal")):
            with contextlib.suppress(FileNotFoundError):  # the WAL may not exist yet
                total += path.stat().st_size
        return total

    def info(self) -> dict:
        """Entries, bytes on disk and, per model, entries, dimension and vector bytes."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT model, COUNT(*), MAX(dim), SUM(LENGTH(vec)) FROM embeddings "
                "GROUP BY model ORDER BY model"
            ).fetchall()
        models = {
            model: {"entries": count, "dim": dim, "bytes": nbytes or 0}
            for model, count, dim, nbytes in rows
        }
        return {
            "path": str(self.path),
            "entries": sum(m["entries"] for m in models.values()),
            "size": self.size_bytes(),
            "models": models,
        }

    def clear(self, model: str | None = None) -> int:
        """Delete one model's rows, or all rows; return how many were deleted."""
        with self._lock:
            if model is not None:
                return self._write("DELETE FROM embeddings WHERE model = ?", [(model,)])
            count = self._write("DELETE FROM embeddings")
            # VACUUM goes through the WAL; the TRUNCATE checkpoint then shrinks both files.
            self.conn.execute("VACUUM")
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return count
