"""Read any user data source (image folders, class-folder trees, tables) into one Source.

Nothing is dropped silently: every file or row that cannot become an item is kept in
`Source.skipped` with a reason. Images are not decoded here; the extractor does that later.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from headstart.errors import HeadstartError, did_you_mean

if TYPE_CHECKING:  # imported where a table is read: an image folder needs no pandas
    import pandas as pd

    from .boxes import Boxes  # boxes.py and masks.py import this module
    from .masks import Mask

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")
LABEL_COLUMN = "label"


@dataclass
class Item:
    id: str
    path: Path | None = None
    text: str | None = None
    label: str | None = None  # the raw label as read (multi-label: 'a|b')
    # the typed target the task parses from `label` (class name, set of names, number), or the
    # boxes a detection set's annotations give; set by the estimator once the task is known
    target: str | frozenset[str] | float | Boxes | Mask | None = None


@dataclass
class Skip:
    id: str
    reason: str


@dataclass
class Source:
    modality: str  # "image" or "text"
    items: list[Item]
    skipped: list[Skip] = field(default_factory=list)
    origin: str = ""
    # the class names the data declares (a detection set's names file or COCO categories), in
    # its order; empty where classes come from the labels
    classes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # repairs made while reading, one line each

    @property
    def labels(self) -> list[str | None] | None:
        """One label per item, or None when no item has one."""
        labels = [item.label for item in self.items]
        return labels if any(label is not None for label in labels) else None

    @property
    def class_names(self) -> list[str]:
        return sorted({item.label for item in self.items if item.label is not None})


def read_source(
    data: str | os.PathLike,
    *,
    text_col: str | None = None,
    label_col: str | None = None,
    path_col: str | None = None,
    labels: bool = True,
) -> Source:
    """Read a folder or a table into a Source; raise HeadstartError when it cannot be used.

    labels=False ignores a table's label column (data to predict: a blank label is no reason
    to skip a row)."""
    from ..modalities import accepted_data, folder_modality

    path = Path(data)
    if not labels:
        label_col = False  # _from_table: no label column at all
    if not path.exists():
        raise HeadstartError(f"DATA {str(data)!r} does not exist. Pass {accepted_data()}.")
    if not path.is_dir() and path.suffix.lower() not in TABLE_SUFFIXES:
        raise HeadstartError(
            f"DATA {str(data)!r} is a {path.suffix or 'suffix-less'} file; "
            f"expected {accepted_data()}."
        )
    columns = {"text_col": text_col, "path_col": path_col}  # a modality's column_arg -> asked
    try:
        source = (
            folder_modality(path).read_folder(path)
            if path.is_dir()
            else _read_any_table(path, columns, label_col)
        )
    except OSError as err:  # permissions, I/O errors: the whole source, not one item
        raise HeadstartError(f"DATA {str(data)!r} cannot be read ({err.strerror or err}).") from err
    _check_not_empty(source, str(data))
    return source


def source_from_texts(texts: Sequence[str], labels: Sequence | None = None) -> Source:
    """Texts given in Python; ids are 1-based positions."""
    given = labels is not None
    labels = _check_labels(labels, len(texts), "texts")
    items, skipped = [], []
    for number, (text, label) in enumerate(zip(texts, labels, strict=True), start=1):
        _add_row(items, skipped, str(number), {"text": text}, label, labels_given=given)
    return Source("text", items, skipped, origin=f"list of {len(texts)} texts")


def source_from_paths(
    paths: Iterable[str | os.PathLike], labels: Sequence | None = None, modality: str = "image"
) -> Source:
    """File paths given in Python (images, audio clips); ids are the paths."""
    paths = [Path(p) for p in paths]
    given = labels is not None
    labels = _check_labels(labels, len(paths), "paths")
    items, skipped = [], []
    for path, label in zip(paths, labels, strict=True):
        _add_row(items, skipped, str(path), {"path": path}, label, labels_given=given)
    return Source(modality, items, skipped, origin=f"list of {len(paths)} paths")


# ---- folders -------------------------------------------------------------------------------


def read_file_folder(root: Path, modality) -> Source:
    """A folder of files of `modality` (images, audio clips), or a folder with one subfolder of
    them per class. The modality says which files are its own (`accepts_file`)."""
    kind = _FileKind(modality.accepts_file, modality.name)
    entries = _visible(root)
    class_dirs = [e for e in entries if e.is_dir() and not kind.accepts(e)]
    if any(_has_files(d, kind) for d in class_dirs):
        items, skipped = _read_class_tree(entries, class_dirs, kind)
    else:
        items, skipped = _read_flat(entries, kind)
    items.sort(key=lambda item: item.id)
    return Source(modality.name, items, skipped, origin=str(root))


def count_files(root: Path, accepts, limit: int = 200) -> int:
    """Files under `root` that `accepts` takes, counted up to `limit` (folder detection)."""
    count = 0
    for _dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        count += sum(1 for f in filenames if not f.startswith(".") and accepts(Path(f)))
        if count >= limit:
            break
    return count


@dataclass(frozen=True)
class _FileKind:
    accepts: object  # Path -> bool
    noun: str  # "image", "audio"


def _read_class_tree(entries: list[Path], class_dirs: list[Path], kind: _FileKind):
    items: list[Item] = []
    skipped: list[Skip] = []
    for class_dir in class_dirs:
        found, bad = _scan(class_dir, class_dir.name, kind)
        if not found:
            bad.append(Skip(str(class_dir), f"empty class folder (no {kind.noun} files)"))
        items += found
        skipped += bad
    for entry in entries:  # files or file-named folders next to the class folders
        if entry not in class_dirs:
            reason = "is a directory" if entry.is_dir() else "not inside a class folder"
            skipped.append(Skip(str(entry), reason))
    return items, skipped


def _read_flat(entries: list[Path], kind: _FileKind):
    items: list[Item] = []
    skipped: list[Skip] = []
    for entry in entries:
        if entry.is_dir():
            named_like_one = kind.accepts(entry)
            reason = "is a directory" if named_like_one else f"folder without {kind.noun} files"
            skipped.append(Skip(str(entry), reason))
        else:
            _add_file(entry, None, items, skipped, kind)
    return items, skipped


def _scan(folder: Path, label: str, kind: _FileKind):
    """All files under `folder`, recursively, as items or skips."""
    items: list[Item] = []
    skipped: list[Skip] = []

    def unreadable(err: OSError) -> None:  # os.walk would otherwise skip it silently
        skipped.append(Skip(str(err.filename), f"cannot read folder ({err.strerror})"))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in [d for d in dirnames if kind.accepts(Path(d))]:
            skipped.append(Skip(str(Path(dirpath) / name), "is a directory"))
            dirnames.remove(name)
        for name in sorted(f for f in filenames if not f.startswith(".")):
            _add_file(Path(dirpath) / name, label, items, skipped, kind)
    return items, skipped


def _add_file(path: Path, label, items: list[Item], skipped: list[Skip], kind: _FileKind) -> None:
    if kind.accepts(path):
        items.append(Item(str(path), path=path, label=label))
    else:
        suffix = path.suffix.lower() or "none"
        skipped.append(
            Skip(str(path), f"not {_article(kind.noun)} {kind.noun} file (suffix {suffix})")
        )


def _article(noun: str) -> str:
    return "an" if noun[:1] in "aeiou" else "a"


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _has_files(folder: Path, kind: _FileKind) -> bool:
    for _dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and not kind.accepts(Path(d))]
        if any(kind.accepts(Path(f)) and not f.startswith(".") for f in filenames):
            return True
    return False


# ---- tables: bytes to a frame with row ids ---------------------------------------------------


def _read_any_table(path: Path, columns: dict, label_col) -> Source:
    frame, ids, skipped = _read_table(path)
    source = _from_table(frame, ids, path, columns, label_col)
    source.skipped[:0] = skipped
    return source


def _read_table(path: Path) -> tuple[pd.DataFrame, list[str], list[Skip]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(path.read_bytes())
    if suffix == ".json":
        return _read_json(path)
    return _read_delimited(path, sep="\t" if suffix == ".tsv" else ",")


def _read_delimited(path: Path, sep: str) -> tuple[pd.DataFrame, list[str], list[Skip]]:
    """CSV/TSV as strings. Rows with invalid UTF-8 or the wrong number of fields are skipped."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
        row_numbers = None  # data line k is data row k
        skipped: list[Skip] = []
    except UnicodeDecodeError:
        text, row_numbers, skipped = _drop_bad_utf8(path, raw)
    frame, bad_lines = _parse_delimited(path, text, sep)
    ids, bad = _row_ids(path, text, len(frame), bad_lines, row_numbers)
    return frame, ids, skipped + bad


def _drop_bad_utf8(path: Path, raw: bytes) -> tuple[str, list[int], list[Skip]]:
    """Decode line by line (assumes no quoted newlines); keep the good lines' row numbers."""
    lines = _split_lines(raw)
    try:
        header = lines[0].decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise HeadstartError(
            f"DATA '{path}': the header line is not valid UTF-8. Re-save the file as UTF-8."
        ) from err
    good, numbers, skipped = [header], [], []
    for number, line in enumerate(lines[1:], start=1):
        try:
            good.append(line.decode("utf-8"))
            numbers.append(number)
        except UnicodeDecodeError:
            skipped.append(Skip(str(number), "not valid UTF-8"))
    return "\n".join(good), numbers, skipped


def _split_lines(data: bytes | str) -> list:
    """Split on the line ends the CSV parser knows (not on the extra ones str.splitlines knows)."""
    lines = re.split(rb"\r\n|\r|\n" if isinstance(data, bytes) else r"\r\n|\r|\n", data)
    return lines[:-1] if lines and not lines[-1] else lines


def _parse_delimited(path: Path, text: str, sep: str) -> tuple[pd.DataFrame, list[tuple]]:
    """pandas parse; lines with too many fields are reported, not fatal."""
    import pandas as pd

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        try:
            frame = pd.read_csv(
                io.StringIO(text),
                sep=sep,
                dtype=str,
                keep_default_na=False,  # "NA" or "null" is a text or a class name, not missing
                skip_blank_lines=False,  # keeps row numbers aligned with lines
                on_bad_lines="warn",
            )
        except pd.errors.EmptyDataError as err:
            raise HeadstartError(f"DATA '{path}' is empty; expected a header line.") from err
        except pd.errors.ParserError as err:
            raise HeadstartError(f"DATA '{path}' cannot be parsed: {err}") from err
    bad = []
    for warning in caught:
        for line, why in re.findall(r"Skipping line (\d+): (.*)", str(warning.message)):
            bad.append((int(line) - 1, why.strip()))  # file line -> data line (header is line 1)
    return frame, bad


def _row_ids(path, text, n_rows, bad_lines, row_numbers) -> tuple[list[str], list[Skip]]:
    """Map parsed rows back to 1-based data row numbers of the original file."""
    original = (lambda line: line) if row_numbers is None else (lambda line: row_numbers[line - 1])
    skipped = [Skip(str(original(line)), f"cannot parse row ({why})") for line, why in bad_lines]
    if not bad_lines and row_numbers is None:
        return [str(k) for k in range(1, n_rows + 1)], skipped
    n_lines = len(_split_lines(text)) - 1
    bad_set = {line for line, _ in bad_lines}
    kept = [line for line in range(1, n_lines + 1) if line not in bad_set]
    if len(kept) != n_rows:  # rows spanning several lines (quoted newlines)
        raise HeadstartError(
            f"DATA '{path}' has rows that cannot be read and rows spanning several lines, so "
            "row numbers would be wrong. Re-save it as UTF-8 with one row per line."
        )
    return [str(original(line)) for line in kept], skipped


def _read_jsonl(raw: bytes) -> tuple[pd.DataFrame, list[str], list[Skip]]:
    import pandas as pd

    records, ids, skipped = [], [], []
    for number, line in enumerate(_split_lines(raw), start=1):
        if not line.strip():
            continue  # blank lines hold no record
        record, reason = _json_record(line)
        if reason:
            skipped.append(Skip(str(number), reason))
        else:
            records.append(record)
            ids.append(str(number))
    return pd.DataFrame.from_records(records), ids, skipped


def _json_record(line: bytes) -> tuple[dict | None, str | None]:
    try:
        value = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not valid UTF-8"
    except json.JSONDecodeError as err:
        return None, f"not valid JSON ({err.msg})"
    if not isinstance(value, dict):
        return None, f"not a JSON object (found {type(value).__name__})"
    return value, None


def _read_json(path: Path) -> tuple[pd.DataFrame, list[str], list[Skip]]:
    """A list of records, or columns as {name: [values]}; JSON Lines saved as .json also works."""
    import pandas as pd

    raw = path.read_bytes()
    try:
        value = json.loads(raw.decode("utf-8-sig"))
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":  # several JSON values: JSON Lines
            return _read_jsonl(raw)
        raise HeadstartError(
            f"DATA '{path}' is not valid JSON ({err.msg} at line {err.lineno}). "
            "Expected a list of objects, or one object per line in a .jsonl file."
        ) from err
    except UnicodeDecodeError:
        return _read_jsonl(raw)  # per-line decoding finds the bad rows
    if isinstance(value, dict):
        value = _columns_to_records(path, value)
    if not isinstance(value, list):
        raise HeadstartError(
            f"DATA '{path}' holds a JSON {type(value).__name__}; expected a list of objects."
        )
    records, ids, skipped = [], [], []
    for number, record in enumerate(value, start=1):
        if isinstance(record, dict):
            records.append(record)
            ids.append(str(number))
        else:
            skipped.append(Skip(str(number), f"not a JSON object (found {type(record).__name__})"))
    return pd.DataFrame.from_records(records), ids, skipped


def _columns_to_records(path: Path, value: dict) -> list[dict]:
    import pandas as pd

    try:
        return pd.DataFrame(value).to_dict("records")
    except ValueError as err:
        raise HeadstartError(
            f"DATA '{path}' is a JSON object but not {{column: [values]}} ({err}). "
            "Expected a list of objects."
        ) from err


# ---- tables: frame to items ------------------------------------------------------------------


def _from_table(frame, ids, path, asked: dict, label_col) -> Source:
    if not ids:  # every row was skipped while reading; the caller reports why
        return Source("text", [], [], origin=str(path))
    frame.columns = [str(c) for c in frame.columns]
    columns = list(frame.columns)
    label = (
        None
        if label_col is False
        else _pick_column(path, columns, label_col, (LABEL_COLUMN,), "--label-col")
    )
    modality, content = _content_column(path, columns, asked)
    modality = _by_file_suffix(modality, [_cell(row) for row in frame[content]])
    items: list[Item] = []
    skipped: list[Skip] = []
    for row_id, row in zip(ids, frame.to_dict("records"), strict=True):
        row_id, fields = modality.table_row(row_id, _cell(row.get(content)), path.parent)
        row_label = row.get(label) if label else None
        _add_row(items, skipped, row_id, fields, row_label, labels_given=label is not None)
    return Source(modality.name, items, skipped, origin=str(path))


def _by_file_suffix(modality, values: list):
    """Paths in a path column may be images or audio clips: the suffixes decide."""
    from ..modalities import path_modality

    if not getattr(modality, "accepts_file", None):
        return modality
    return path_modality([v for v in values if v], modality)


def _content_column(path, columns, asked: dict):
    """(modality, its column): a column the caller named wins (an explicit --text-col means
    text even beside a 'file' column), then the first modality with a default column found."""
    from ..modalities import table_modalities

    modalities = table_modalities()
    for modality in modalities:
        name = asked.get(modality.column_arg)
        if name:
            flag = "--" + modality.column_arg.replace("_", "-")
            return modality, _pick_column(path, columns, name, (), flag)
    for modality in modalities:
        found = _pick_column(path, columns, None, modality.table_columns, "")
        if found:
            return modality, found
    fallback = next((m for m in modalities if m.fallback), modalities[-1])
    expected = " or ".join(repr(d) for d in fallback.table_columns)
    hints = [fallback.column_hint] + [m.column_hint for m in modalities if m is not fallback]
    raise HeadstartError(
        f"DATA '{path}' has no {expected} column; found columns {columns}. "
        f"Pass {', or '.join(hints)}."
    )


def _pick_column(path, columns, asked, defaults, flag) -> str | None:
    """The column asked for (an error naming `flag` when missing), else the first default."""
    if asked is not None:
        if asked in columns:
            return asked
        raise HeadstartError(
            f"DATA '{path}' has no column {asked!r}; found columns {columns}. "
            f"Pass one of them to {flag}.{did_you_mean(asked, columns)}"
        )
    by_lower = {c.strip().lower(): c for c in columns}
    for name in defaults:
        if name in by_lower:
            return by_lower[name]
    return None


def _add_row(items, skipped, row_id, fields, label, *, labels_given) -> None:
    """One row or list entry: an Item, or a Skip with the first reason it cannot be used."""
    reason = _row_problem(fields)
    label = _label(label)
    if reason is None and labels_given and label is None:
        reason = "missing label"
    if reason:
        skipped.append(Skip(row_id, reason))
    else:
        items.append(Item(row_id, label=label, **fields))


def _row_problem(fields: dict) -> str | None:
    if "text" in fields:
        text = fields["text"]
        if text is None or not str(text).strip():
            return "empty text"
        fields["text"] = str(text)
        return None
    path = fields["path"]
    if path is None:
        return "empty path"
    if path.is_dir():
        return "is a directory"
    if not path.exists():
        return "file not found"
    return None


def _cell(value) -> str | None:
    """A table cell as text; None when missing."""
    import pandas as pd

    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    return str(value)


def _label(value) -> str | None:
    """Labels are strings: 0 -> '0', 1.0 (an int column with gaps) -> '1', blank -> None."""
    import pandas as pd

    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _check_labels(labels, count: int, what: str) -> list:
    if labels is None:
        return [None] * count
    labels = list(labels)
    if len(labels) != count:
        raise HeadstartError(
            f"Got {count} {what} but {len(labels)} labels; pass one label per item."
        )
    return labels


def _check_not_empty(source: Source, data: str) -> None:
    if source.items:
        return
    if source.skipped:
        first = source.skipped[0]
        detail = (
            f"all {len(source.skipped)} entries were skipped (first: {first.id}: {first.reason})"
        )
    else:
        detail = "it holds no files headstart reads and no rows"
    from ..modalities import accepted_data

    raise HeadstartError(f"DATA {data!r} has nothing usable: {detail}. Expected {accepted_data()}.")
