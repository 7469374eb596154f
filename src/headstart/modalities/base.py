"""The modality interface and its registry: everything that depends on the kind of data.

A modality says how its data is recognised (a folder, a table column, a value given in Python),
read into a Source, hashed for the embedding cache, decoded for a backbone, batched for
extraction and for training, and prepared on the device. Nothing outside the modality objects
asks which modality it has.

Modality objects import neither torch nor pandas when they are imported: the CLI's cheap paths
(`models`, `cache info`, a fully cached `embed`) use them. Heavy imports live in the methods
that compute.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import HeadstartError, check_choice

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..data.sources import Item, Skip, Source
    from ..features.extract import Extractor
    from ..zoo.backbone import Backbone

MODALITIES: dict[str, Modality] = {}  # the registry: name -> modality object, registration order

Progress = Callable[[int, int], None]  # (done, total)


def register_modality(cls: type[Modality]) -> type[Modality]:
    """Class decorator: one instance of the class becomes available under its `name`."""
    MODALITIES[cls.name] = cls()
    return cls


def get_modality(name: str) -> Modality:
    """The modality called `name` ('image', 'text')."""
    if name not in MODALITIES:
        check_choice("modality", name, tuple(MODALITIES))
    return MODALITIES[name]


def detect_values(values: Sequence) -> Modality:
    """The modality of values given in Python, judged by the first one (an image path: image)."""
    first = next(iter(values), None)
    for modality in sorted(MODALITIES.values(), key=lambda m: m.fallback):
        if first is not None and modality.claims(first):
            return modality
    return next(m for m in MODALITIES.values() if m.fallback)


def folder_modality(path: Path) -> Modality:
    """The modality whose files a folder holds the most of (images when it holds none)."""
    readers = [m for m in MODALITIES.values() if m.reads_folders]
    counts = [m.folder_files(path) for m in readers]
    if not max(counts):
        return next(m for m in readers if m.folder_default)
    return readers[counts.index(max(counts))]


def path_modality(paths: Sequence, default: Modality) -> Modality:
    """The file modality that takes the most of `paths` (by suffix), else `default`."""
    readers = [m for m in MODALITIES.values() if m.reads_folders]
    counts = [sum(1 for p in paths if m.accepts_file(Path(str(p)))) for m in readers]
    return readers[counts.index(max(counts))] if max(counts, default=0) else default


def table_modalities() -> list[Modality]:
    return [m for m in MODALITIES.values() if m.table_columns]


def accepted_data() -> str:
    """What DATA may be, for messages: every modality's folder forms, then tables."""
    forms = [form for m in MODALITIES.values() for form in m.folder_forms]
    return ", ".join(forms) + ", or a .csv, .tsv, .jsonl or .json table"


class Modality:
    """One kind of data. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str] = ""
    estimator: ClassVar[str] = ""  # the estimator class for this data (messages, the CLI)
    default_model: ClassVar[str] = ""  # the zoo name used when no model is given
    control_strategy: ClassVar[str] = ""  # the no-backbone strategy that is its control
    # labelled items from which `auto` fine-tunes every layer on a GPU (None: it never does)
    fine_tune_rows: ClassVar[int | None] = None
    # what `auto` may train here, by regime of the data (see auto/plan.py): "few" labels (at
    # most 64 in the smallest class), "more" (over 64), "many" (at least 20 in the smallest
    # class and auto_train_rows in all) -> (expected accuracy points over the probe, why)
    auto_gains: ClassVar[dict[tuple[str, str], tuple[float, str]]] = {}
    auto_train_rows: ClassVar[int] = 0
    batch_size: ClassVar[int] = 32  # extraction batch default
    min_train_rows: ClassVar[int] = 1  # fewest readable rows a training batch may have
    # decoding finds unreadable items (so they are found before training, not during it)
    decoding_can_fail: ClassVar[bool] = False
    reads_folders: ClassVar[bool] = False  # a folder of files can hold this data
    folder_default: ClassVar[bool] = False  # what a folder holding no known files is read as
    folder_forms: ClassVar[tuple[str, ...]] = ()  # how such folders look, for messages
    table_columns: ClassVar[tuple[str, ...]] = ()  # default column names in a table
    column_arg: ClassVar[str] = ""  # read_source's argument naming that column
    column_hint: ClassVar[str] = ""  # how to name the column on the command line
    fallback: ClassVar[bool] = False  # what values given in Python are when nothing else claims
    typed_inputs: ClassVar[bool] = False  # inputs can be typed on the command line (--text)
    feature_maps: ClassVar[bool] = False  # its backbones give spatial maps a detector reads

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    @property
    def preprocess_type(self) -> type:
        """Its typed preprocessing config class (zoo.config: ImagePreprocess, TextPreprocess)."""
        raise NotImplementedError

    @property
    def plural(self) -> str:
        return f"{self.name}s"

    @property
    def article(self) -> str:
        return "an" if self.name[:1] in "aeiou" else "a"

    # -- recognising the data

    def claims(self, value: Any) -> bool:
        """Whether one value given in Python (a path, a string) is of this modality."""
        return False

    def is_one_input(self, data: str | Path) -> bool:
        """Whether a str or Path given alone is one input (an image file, a text), not a folder
        or a table to read."""
        return False

    def folder_files(self, path: Path) -> int:
        """How many of its files a folder holds (counted up to a limit): folder detection."""
        return 0

    def accepts_file(self, path: Path) -> bool:
        """Whether a file is one of this modality's, by its name."""
        return False

    # -- reading

    def read_folder(self, path: Path) -> Source:
        raise HeadstartError(f"{self.plural.capitalize()} cannot be read from a folder.")

    def table_row(self, row_id: str, value: str | None, folder: Path) -> tuple[str, dict]:
        """(item id, Item fields) of one table cell of this modality's column."""
        raise NotImplementedError

    def source_from_values(self, values: Sequence, labels: Sequence | None = None) -> Source:
        """A Source of values given in Python (paths, texts), one label each when given."""
        raise NotImplementedError

    def input_id(self, value: Any, position: int) -> str:
        """The id the value at 1-based `position` of a list gets in source_from_values."""
        raise NotImplementedError

    def value_of(self, item: Item) -> Any:
        """What the item holds for strategies that read it themselves (a path, a text)."""
        raise NotImplementedError

    # -- the model's input

    def content_hash(self, item: Item) -> str:
        """What the cache keys the item by; raises UnreadableItem when it cannot be read."""
        raise NotImplementedError

    def decode(self, item: Item, preprocess) -> Any:
        """The item as the backbone's input (before batching); raises UnreadableItem."""
        raise NotImplementedError

    def dummy_batch(self, backbone: Backbone, size: int = 2) -> Any:
        """A batch of `size` made-up inputs the backbone takes (shape probes, folding checks)."""
        raise NotImplementedError

    # -- extraction

    def embed(
        self, extractor: Extractor, todo: list[Item], keys: dict[str, str], progress
    ) -> tuple[dict[str, np.ndarray], list[Skip], int]:
        """Compute the pooled features of `todo` through `extractor` (storing each batch in its
        cache): ({key: vector}, items that failed, how many inputs were truncated)."""
        raise NotImplementedError

    # -- training

    def train_dataset(self, items: list[Item], targets, preprocess, augment: bool):
        """A map-style dataset of (input, target); None for an item that cannot be read."""
        raise NotImplementedError

    def augmentation(self, preprocess) -> Callable | None:
        """The training transform (None: inputs are used as they are)."""
        return None

    def stack(self, inputs: list) -> Any:
        """One batch of the inputs train_dataset gives."""
        raise NotImplementedError

    def before_transfer(self, backbone: Backbone, inputs: Any) -> Any:
        """Inputs on the main process, before they move to the device (texts: tokenise)."""
        return inputs

    def after_transfer(self, inputs: Any) -> Any:
        """Inputs on the device (images: channels-last)."""
        return inputs

    def memory_format(self) -> torch.memory_format | None:
        """The memory format modules train in (None: leave them as they are)."""
        return None
