"""`headstart rank`: which pre-trained model, which cut, whether transfer pays; before training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..errors import HeadstartError
from .console import DEVICE_HELP, PRECISION_HELP, err, out


def rank(
    data: Annotated[
        Path, typer.Argument(help="Labelled class-folder tree, CSV with path and label, or texts.")
    ],
    models: Annotated[
        str,
        typer.Option(
            help="Comma-separated candidates: zoo names, timm:<arch>, hf:<id>, random:<name> "
            "(a random-init copy). Default: every bundled backbone for the data available offline."
        ),
    ] = "",
    layers: Annotated[
        bool, typer.Option("--layers", help="Score cuts after each parameter group of --model.")
    ] = False,
    model: Annotated[
        str, typer.Option(help="The backbone for --layers and --weights (default: by modality).")
    ] = "",
    weights: Annotated[
        Path | None, typer.Option(help="Local weights file for --model; added as a candidate.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list, best first.")] = False,
    max_items: Annotated[
        int, typer.Option(min=10, help="Score a stratified sample of at most this many items.")
    ] = 2000,
    seed: Annotated[int, typer.Option()] = 0,
    text_col: Annotated[str | None, typer.Option(help="Text column of a table.")] = None,
    label_col: Annotated[str | None, typer.Option(help="Label column of a table.")] = None,
    precision: Annotated[str, typer.Option(help=PRECISION_HELP)] = "auto",
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
    workers: Annotated[int | None, typer.Option(min=0, help="Decoding processes.")] = None,
) -> None:
    """Rank candidate backbones (or --layers cuts) on DATA by LogME, LEEP, H-score, NCE and a quick
    cross-validated linear probe, against a no-transfer control; no training."""
    import tempfile

    from ..data.sources import read_source
    from ..select.rank import Candidate, parse_candidates, rank_models
    from ..tasks import own_estimator_task

    scratch = tempfile.TemporaryDirectory(prefix="headstart-crops-")
    own = own_estimator_task("auto", data)
    if own is not None:  # detection, segmentation: rank on crops labelled by what they show
        source = own.ranking_crops(data, Path(scratch.name), seed, max_items)
        if not as_json:
            err.print(
                f"{own.name} set: ranking on {source.origin} (how well each backbone tells "
                "the classes apart in crops of the images)",
                markup=False,
            )
    else:
        source = read_source(data, text_col=text_col, label_col=label_col)
    extract = {"precision": precision, "device": device, "workers": workers}
    say = None if as_json else (lambda line: err.print(line, markup=False))
    if layers:
        from ..select.layers import rank_layers
        from ..zoo import DEFAULT_MODEL

        if models:
            raise HeadstartError("--layers cuts one backbone: name it with --model, not --models.")
        name = model or DEFAULT_MODEL.get(source.modality, "")
        candidate = Candidate(name, weights.expanduser() if weights else None)
        parse_candidates([name], source.modality)  # the same checks as for --models
        ranking = rank_layers(source, candidate, seed=seed, max_items=max_items, **extract)
    else:
        candidates = parse_candidates(models, source.modality, model, weights)
        ranking = rank_models(
            source, candidates, seed=seed, max_items=max_items, say=say, **extract
        )
    if as_json:
        out.print_json(json.dumps(ranking.to_json()))
        return
    # piped output is 80 columns by default: too narrow for eight columns of names and numbers
    wide = out if out.is_terminal else Console(file=out.file, width=160, highlight=False)
    wide.print(ranking_table(ranking))
    if own is not None and ranking.transfer_helps is False:
        out.print(_own_task_verdict(own.name, ranking.verdict), markup=False)
    else:
        out.print(ranking.verdict, markup=False)
    if not models and not layers:
        _say_unfetched(source.modality)


def _own_task_verdict(task: str, verdict: str) -> str:
    """The crops are a proxy: pooled features of a crop, not a detector's or decoder's own maps.
    Raw pixels can win on them while fine-tuning still beats training from scratch."""
    first = verdict.split(". The data is")[0]
    return (
        f"{first}. On crops, pooled features are a proxy for {task}: measure what pre-training "
        f"buys with headstart compare DATA --strategies fine-tune,from-scratch."
    )


def _say_unfetched(modality: str) -> None:
    """Candidates the default list left out because their weights are not fetched yet."""
    from ..select.rank import unfetched

    for entry in unfetched(modality):
        out.print(
            f"Not ranked: {entry.name} ({entry.description.split(';')[0]}); `headstart fetch "
            f"{entry.name}` ({entry.fetch.size_mb} MB, once) adds it to the candidates.",
            markup=False,
        )


def ranking_table(ranking):
    from rich.table import Table

    title = (
        f"{ranking.n_items} items, {len(ranking.classes)} classes; "
        "LogME ranks, cv accuracy is a 3-fold logistic regression"
    )
    table = Table(title=title, title_justify="left")
    for column in ("rank", "candidate", "logme", "leep", "h-score", "nce", "cv accuracy", "s"):
        left = column == "candidate"
        table.add_column(column, justify="left" if left else "right", no_wrap=left)
    for index, row in enumerate(ranking.rows, start=1):
        name = row.candidate if row.kind != "no-transfer" else f"no-transfer ({row.about})"
        table.add_row(
            str(index),
            name,
            _num(row.logme, 4),
            _num(row.leep, 3),
            _num(row.h_score, 2),
            _num(row.nce, 3),
            _num(row.cv_accuracy, 3),
            f"{row.seconds:.1f}",
        )
    return table


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
