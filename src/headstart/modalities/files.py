"""What every modality read from files shares (images, audio clips): recognising its files by
suffix, folders of them (flat or one subfolder per class), path columns, hashing by content."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import UnreadableItem
from .base import Modality

if TYPE_CHECKING:
    from ..data.sources import Item


class FileModality(Modality):
    suffixes: ClassVar[frozenset[str]] = frozenset()
    decoding_can_fail = True
    reads_folders = True
    column_arg = "path_col"
    column_hint = "a path column with --path-col"

    def accepts_file(self, path: Path) -> bool:
        return Path(path).suffix.lower() in self.suffixes

    def claims(self, value: Any) -> bool:
        path = Path(str(value))
        return self.accepts_file(path) and path.is_file()

    def is_one_input(self, data: str | Path) -> bool:
        return self.claims(data)

    def folder_files(self, path: Path) -> int:
        from ..data.sources import count_files

        return count_files(path, self.accepts_file)

    def read_folder(self, path: Path):
        from ..data.sources import read_file_folder

        return read_file_folder(path, self)

    def table_row(self, row_id: str, value: str | None, folder: Path) -> tuple[str, dict]:
        if value is None or not value.strip():
            return row_id, {"path": None}
        path = Path(value.strip()).expanduser()
        path = path if path.is_absolute() else folder / path
        return str(path), {"path": path}

    def source_from_values(self, values, labels=None):
        from ..data.sources import source_from_paths

        return source_from_paths(values, labels, self.name)

    def input_id(self, value: Any, position: int) -> str:
        return str(Path(value))

    def value_of(self, item: Item) -> Path | None:
        return item.path

    def content_hash(self, item: Item) -> str:
        from ..features.cache import content_hash_file

        path = item.path
        try:
            if path.is_dir():
                raise UnreadableItem("is a directory")
            return content_hash_file(path)
        except FileNotFoundError:
            raise UnreadableItem("file not found") from None
        except OSError as err:
            raise UnreadableItem(f"cannot read ({err.strerror or err})") from None
