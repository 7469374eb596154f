"""Modalities as objects in a registry (image, text, audio): how each kind of data is
recognised, read, hashed, decoded, batched and prepared for a backbone."""

from .audio import AudioModality
from .base import (
    MODALITIES,
    Modality,
    accepted_data,
    detect_values,
    folder_modality,
    get_modality,
    path_modality,
    register_modality,
    table_modalities,
)
from .image import ImageModality
from .text import TextModality

__all__ = [
    "MODALITIES",
    "AudioModality",
    "ImageModality",
    "Modality",
    "TextModality",
    "accepted_data",
    "detect_values",
    "folder_modality",
    "get_modality",
    "path_modality",
    "register_modality",
    "table_modalities",
]
