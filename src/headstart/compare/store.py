"""results.csv: one row per finished cell, appended as each cell finishes, so an interrupted
compare keeps its work. A rerun reuses the rows whose key (strategy, per_class, seed) and
settings fingerprint match; rows of other settings are moved aside, never reused."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import HeadstartError
from .grid import ALL, Cell

RESULTS = "results.csv"
PREVIOUS = "results.previous.csv"
COLUMNS = (
    "strategy",
    "per_class",
    "seed",
    "n_train",
    "n_test",
    "accuracy",
    "macro_f1",
    "log_loss",
    "train_seconds",
    "predict_seconds",
    "trainable_parameters",
    "status",
    "settings",
)
NUMBERS = {"n_train": int, "n_test": int, "trainable_parameters": int, "seed": int}
FLOATS = ("accuracy", "macro_f1", "log_loss", "train_seconds", "predict_seconds")


def cell_key(row: dict) -> Cell:
    size = row["per_class"]
    return Cell(row["strategy"], ALL if size in ("all", None) else int(size), int(row["seed"]))


class ResultStore:
    """The rows of results.csv, by cell, for the current settings."""

    def __init__(self, folder: Path):
        self.path = folder / RESULTS
        self.rows: dict[Cell, dict] = {}  # finished with the current settings
        self.others: list[dict] = []  # finished with other settings

    def load(self, fingerprint: Callable[[str], str | None]) -> None:
        """Read the file; `fingerprint(strategy)` is a strategy's current settings hash, or None
        for a strategy this version does not know (its rows cannot be checked, so they move)."""
        for row in read_rows(self.path):
            if row["status"] != "ok":  # a failure is retried, and its row replaced
                continue
            if fingerprint(row["strategy"]) != row["settings"]:
                self.others.append(row)
            else:
                self.rows[cell_key(row)] = row

    def append(self, row: dict) -> None:
        """Add one finished cell to the file now; a crash later keeps it."""
        new = not self.path.exists()
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, COLUMNS, extrasaction="ignore", lineterminator="\n")
            if new:
                writer.writeheader()
            writer.writerow(_formatted(row))
            handle.flush()
            os.fsync(handle.fileno())
        if row["status"] == "ok":
            self.rows[cell_key(row)] = row

    def rewrite(self, order: list[Cell], failed: list[dict]) -> int:
        """Replace the file with one row per cell (the grid's first, in grid order, then other
        finished cells of these settings, then this run's failures); rows of other settings go to
        results.previous.csv. Returns how many rows were moved aside."""
        kept = [self.rows[c] for c in order if c in self.rows]
        kept += [row for cell, row in self.rows.items() if cell not in order]
        if self.others:
            previous = self.path.with_name(PREVIOUS)
            write_rows(previous, read_rows(previous) + self.others)
        write_rows(self.path, kept + failed)
        moved, self.others = len(self.others), []
        return moved


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = set(COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise HeadstartError(
                    f"'{path}' is not a compare results file (no column "
                    f"{', '.join(sorted(missing))}). Choose another --out, or remove it."
                )
            return [_parsed(row) for row in reader if _complete(row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise HeadstartError(f"Cannot read '{path}' ({exc}). Remove it to start over.") from exc


def _complete(row: dict) -> bool:
    """A row cut short by a crash mid-write has empty trailing fields: skip it."""
    return bool(row.get("settings")) and bool(row.get("status"))


def _parsed(row: dict) -> dict:
    out = dict(row)
    for key, kind in NUMBERS.items():
        out[key] = kind(row[key]) if row[key] not in ("", None) else None
    for key in FLOATS:
        out[key] = float(row[key]) if row[key] not in ("", None) else None
    return out


def _formatted(row: dict) -> dict:
    out = {}
    for key in COLUMNS:
        value = row.get(key)
        if isinstance(value, float):
            value = f"{value:.6g}" if key.endswith("seconds") else f"{value:.6f}"
        out[key] = "" if value is None else value
    return out


def write_rows(path: Path, rows: list[dict]) -> None:
    from ..files import write_text_atomic

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(_formatted(row))
    text = buffer.getvalue()
    write_text_atomic(path, text)
