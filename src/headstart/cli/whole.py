"""fit and compare for tasks whose estimator trains a whole model (detection, segmentation): the
task class names its estimator and headline metrics, so nothing here asks which task it is."""

from __future__ import annotations

from pathlib import Path

from .console import err, out

DEFAULT_COMPARE = ("fine-tune", "head-only", "from-scratch")
# the command line's --size, per estimator: the parameter it sets
SIZE_PARAM = {"ObjectDetector": "size", "Segmenter": "crop"}


def estimator_class(task_cls):
    from .. import estimators

    return getattr(estimators, task_cls.estimator)


def headline_keys(task_cls) -> list[str]:
    return [key for key, _ in task_cls.headline_metrics if key != "n"]


def fit_whole(task_cls, data: Path, out_dir: Path, val: Path | None, options: dict) -> None:
    cls = estimator_class(task_cls)
    size = options.pop("size", None)
    if size:
        options[SIZE_PARAM[cls.__name__]] = size
    accepted = cls._get_param_names()
    est = cls(**{k: v for k, v in options.items() if v is not None and k in accepted})
    est.fit(data, val=val, run_dir=str(out_dir))
    spec = est.to_spec()
    err.print(
        f"model: {spec.backbone.name}; strategy: {est.strategy_name_}"
        + (f" ({est.strategy_reason_})" if est.strategy_reason_ else ""),
        markup=False,
    )
    m = est.metrics_
    shown = ", ".join(f"{k} {m[k]:.4f}" for k in headline_keys(task_cls) if k in m)
    where = est.fit_info_["validation"]
    out.print(f"{where}: {shown}, n {m['n']}" if m else f"{where}: not scored", markup=False)
    err.print(f"fit in {est.fit_info_['total_seconds']:.1f} s; wrote {out_dir}", markup=False)


def refuse_options(task_cls, given: dict) -> None:
    """A classifier option given for a whole-model fit is an error, not silently ignored
    (unless this task's estimator takes it too)."""
    from ..errors import HeadstartError

    accepted = estimator_class(task_cls)._get_param_names()
    used = [
        flag
        for flag, value in given.items()
        if value is not None and flag.lstrip("-").replace("-", "_") not in accepted
    ]
    if used:
        raise HeadstartError(
            f"{', '.join(used)} {'does' if len(used) == 1 else 'do'} not apply to {task_cls.name} "
            f"(DATA is a {task_cls.name} set). Drop it; {task_cls.name} takes --model, "
            "--strategy, --epochs, --budget, --size, --lr, --batch-size, --patience, --weights, "
            "--device, --val, --val-fraction."
        )


def compare_whole(task_cls, data: Path, out_dir: Path, options: dict) -> None:
    """Fit each strategy with the same model and budget, score each on the same held-out
    images; write results.csv, compare.png and report.md to out_dir."""
    import csv

    cls = estimator_class(task_cls)
    keys = headline_keys(task_cls)
    val, strategies = options.pop("val"), options.pop("strategies")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for strategy in strategies or DEFAULT_COMPARE:
        err.print(f"fitting {strategy} ...", markup=False)
        est = cls(strategy=strategy, verbose=False, **options)
        est.fit(data, val=val)
        metrics = est.metrics_ or dict.fromkeys(keys, float("nan"))
        row = {"model": est.to_spec().backbone.name, "strategy": strategy}
        row.update({k: round(metrics[k], 4) for k in keys})
        row.update(epochs=est.fit_info_["epochs_run"], train_seconds=est.fit_info_["train_seconds"])
        rows.append(row)
        shown = ", ".join(f"{k} {metrics[k]:.4f}" for k in keys)
        out.print(
            f"{strategy}: {shown} ({row['epochs']} epochs, {row['train_seconds']:.0f} s)",
            markup=False,
        )
    with (out_dir / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    names = dict(task_cls.headline_metrics)
    _compare_png(rows, keys[0], names[keys[0]], task_cls.name, out_dir / "compare.png")
    where = str(val or "a held-out share of DATA")
    _compare_report(rows, keys, names, task_cls.name, out_dir / "report.md", where)
    err.print(f"wrote {out_dir}", markup=False)


def _compare_png(rows: list[dict], key: str, name: str, task: str, path: Path) -> None:
    from ..report.plots import _figure_class, _save

    Figure = _figure_class()
    fig = Figure(figsize=(6.4, 3.6), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    names = [f"{r['strategy']}\n{r['model']}" for r in rows]
    bars = ax.bar(names, [r[key] for r in rows], color=["C0", "C1", "C2", "C3"][: len(rows)])
    ax.bar_label(bars, fmt="%.3f")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"{name} on the held-out images")
    ax.set_title(f"{task.capitalize()}: what pre-training bought (same model, same budget)")
    fig.tight_layout()
    _save(fig, path)


def _compare_report(rows, keys, names, task: str, path: Path, where: str) -> None:
    from ..files import write_text_atomic

    lines = [f"# headstart compare: {task}", "", f"Scored on {where}.", ""]
    header = " | ".join(names[k] for k in keys)
    lines += [f"| model | strategy | {header} | epochs | train s |"]
    lines += ["|---|---|" + "---:|" * len(keys) + "---:|---:|"]
    for r in rows:
        values = " | ".join(f"{r[k]:.3f}" for k in keys)
        lines.append(
            f"| {r['model']} | {r['strategy']} | {values} | {r['epochs']} | "
            f"{r['train_seconds']:.0f} |"
        )
    lines += ["", "![compare](compare.png)", ""]
    write_text_atomic(path, "\n".join(lines))
