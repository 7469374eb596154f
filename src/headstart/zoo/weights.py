"""Finding and safely reading pre-trained weight files. Nothing here unpickles arbitrary objects.

Finding and hashing need no torch (listing models and cache hits stay fast); reading does.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import HeadstartError

if TYPE_CHECKING:
    import torch

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def sha256_file(path: str | os.PathLike[str]) -> str:
    st = os.stat(path)
    return _sha256_cached(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def check_sha256(path: str | os.PathLike[str], expected: str, what: str, fix: str) -> str:
    """The file's sha256, or a one-line error: "<what> has sha256 ..., expected ...: <fix>"."""
    got = sha256_file(path)
    if got != expected:
        raise HeadstartError(f"{what} has sha256 {got[:12]}..., expected {expected[:12]}...: {fix}")
    return got


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    # size and mtime are part of the cache key so an edited file is hashed again
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def package_path(package: str, relative: str) -> Path | None:
    """The path of a file inside an installed package, or None when the package is missing.

    The package is found, not imported: nothing of it runs, and it costs no import time."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).resolve() / relative
    return path if path.exists() else None


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors, or from .pt/.pth/.bin with weights_only=True."""
    import torch
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise HeadstartError(
            f"Weights file '{path}' does not exist. Check the path given to --weights."
        )
    if path.is_dir() or path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise HeadstartError(
            f"Weights file '{path}' has an unsupported type. Expected one of "
            f"{', '.join(WEIGHT_SUFFIXES)} (a state dict of tensors)."
        )
    try:
        if path.suffix.lower() == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # any decoding failure is the file's fault, not ours
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HeadstartError(
            f"Cannot read weights file '{path}': {first[:300]}. Only plain tensor state dicts are "
            "accepted (pickled objects are refused on purpose); re-save it with "
            "safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')."
        ) from None
    return _unwrap(state, path)


def _unwrap(state, path: Path) -> dict[str, torch.Tensor]:
    import torch

    # Training checkpoints often nest the weights one level down.
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise HeadstartError(
            f"Weights file '{path}' does not hold a dict of tensors (a state dict)."
        )
    return state


def hf_hub_cached(repo_id: str, filename: str) -> str | None:
    """Path of a file in the local Hugging Face cache, or None (never touches the network).

    huggingface_hub's try_to_load_from_cache, for model repos at revision main, read off the cache
    layout directly: importing the hub client (an HTTP stack) would double `headstart models`."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return None
    repo = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    ref = repo / "refs" / "main"
    try:
        revision = ref.read_text().strip() if ref.is_file() else "main"
    except OSError:
        return None
    found = repo / "snapshots" / revision / filename
    return str(found) if found.is_file() else None


def hub_download(repo_id: str, filename: str) -> tuple[str | None, str]:
    """(path, '') from the Hugging Face hub, or (None, why) when it cannot be reached."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return None, "HF_HUB_OFFLINE is set and the file is not in the local hub cache"
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        return None, "huggingface_hub is not installed"
    if not hub_reachable():
        return None, "no network route to the Hugging Face hub"
    try:
        return hf_hub_download(repo_id, filename, etag_timeout=5), ""
    except Exception as exc:  # network, auth and missing-file errors all mean "unreachable"
        return None, f"hub unreachable: {type(exc).__name__}"


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect instead of the hub client's minute of retries on a closed network."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False
