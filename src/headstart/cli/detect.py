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
