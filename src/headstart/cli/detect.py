"""The detection side of fit and predict: ObjectDetector on the command line."""

from __future__ import annotations

from pathlib import Path

from .console import err, out


def fit_detector(data: Path, out_dir: Path, val: Path | None, options: dict) -> None:
    from ..estimators import ObjectDetector

    est = ObjectDetector(**options)
    est.fit(data, val=val, run_dir=str(out_dir))
    err.print(
        f"model: {est.detector_spec_['model']} ({est.detector_spec_['route']} route); strategy: "
        f"{est.strategy_name_}" + (f" ({est.strategy_reason_})" if est.strategy_reason_ else ""),
        markup=False,
    )
    m = est.metrics_
    out.print(
        f"{est.fit_info_['validation']}: map50 {m['map50']:.4f}, map {m['map']:.4f}, n {m['n']}",
        markup=False,
    )
    err.print(f"fit in {est.fit_info_['total_seconds']:.1f} s; wrote {out_dir}", markup=False)


def refuse_options(given: dict) -> None:
    """A classifier option given for a detection fit is an error, not silently ignored."""
    from ..errors import HeadstartError

    used = [name for name, value in given.items() if value is not None]
    if used:
        raise HeadstartError(
            f"{', '.join(used)} {'does' if len(used) == 1 else 'do'} not apply to detection (DATA "
            "is a detection set). Drop it; detection takes --model, --strategy, --epochs, "
            "--budget, --size, --lr, --batch-size, --patience, --weights, --device, --val."
        )


def print_boxes(rows: list[dict]) -> None:
    """One line per box: input, label, score, box; 'no boxes' or the error otherwise."""
    for row in rows:
        if "error" in row:
            out.print(f"{row['input']}\terror: {row['error']}", markup=False)
        elif not row["boxes"]:
            out.print(f"{row['input']}\tno boxes", markup=False)
        for box in row.get("boxes", []):
            corners = ", ".join(f"{v:g}" for v in box["box"])
            out.print(
                f"{row['input']}\t{box['label']}\t{box['score']:.3f}\t[{corners}]", markup=False
            )


DEFAULT_COMPARE = ("fine-tune", "head-only", "from-scratch")


def compare_detection(data: Path, out_dir: Path, options: dict) -> None:
    """Fit each strategy with the same model and budget, score each on the same held-out
    images; write results.csv, compare.png and report.md to out_dir."""
    import csv

    from ..estimators import ObjectDetector

    val, strategies = options.pop("val"), options.pop("strategies")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for strategy in strategies or DEFAULT_COMPARE:
        err.print(f"fitting {strategy} ...", markup=False)
        est = ObjectDetector(strategy=strategy, verbose=False, **options)
        est.fit(data, val=val)
        metrics = est.metrics_ or {"map50": float("nan"), "map": float("nan")}
        rows.append(
            {
                "model": est.detector_spec_["model"],
                "strategy": strategy,
                "map50": round(metrics["map50"], 4),
                "map": round(metrics["map"], 4),
                "epochs": est.fit_info_["epochs_run"],
                "train_seconds": est.fit_info_["train_seconds"],
            }
        )
        out.print(
            f"{strategy}: map50 {metrics['map50']:.4f}, map {metrics['map']:.4f} "
            f"({est.fit_info_['epochs_run']} epochs, {est.fit_info_['train_seconds']:.0f} s)",
            markup=False,
        )
    with (out_dir / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _compare_png(rows, out_dir / "compare.png")
    _compare_report(rows, out_dir / "report.md", str(val or "a held-out share of DATA"))
    err.print(f"wrote {out_dir}", markup=False)


def _compare_png(rows: list[dict], path: Path) -> None:
    from ..report.plots import _figure_class, _save

    Figure = _figure_class()
    fig = Figure(figsize=(6.4, 3.6), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    names = [f"{r['strategy']}\n{r['model']}" for r in rows]
    bars = ax.bar(names, [r["map50"] for r in rows], color=["C0", "C1", "C2", "C3"][: len(rows)])
    ax.bar_label(bars, fmt="%.3f")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mAP@0.5 on the held-out images")
    ax.set_title("Detection: what pre-training bought (same model, same budget)")
    fig.tight_layout()
    _save(fig, path)


def _compare_report(rows: list[dict], path: Path, where: str) -> None:
    from ..files import write_text_atomic

    lines = ["# headstart compare: detection", "", f"Scored on {where}.", ""]
    lines += ["| model | strategy | mAP@0.5 | mAP@[.5:.95] | epochs | train s |"]
    lines += ["|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['strategy']} | {r['map50']:.3f} | {r['map']:.3f} | "
            f"{r['epochs']} | {r['train_seconds']:.0f} |"
        )
    lines += ["", "![compare](compare.png)", ""]
    write_text_atomic(path, "\n".join(lines))
