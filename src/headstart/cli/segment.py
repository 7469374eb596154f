"""Segmentation on the command line: `headstart predict` writes masks and overlays."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import HeadstartError
from .console import err, out


def predict_masks(est, inputs: list[Path], out_dir: Path, as_json: bool) -> None:
    """One mask and one overlay per input under out_dir; a line (or JSON row) per input."""
    if not inputs:
        raise HeadstartError(
            "Nothing to segment: pass image files, folders, .nii/.nii.gz volumes or DICOM series "
            "folders after RUN_DIR."
        )
    rows = est.write_predictions(inputs, out_dir, order=[str(p) for p in inputs])
    if as_json:
        out.print_json(json.dumps(rows))
        return
    for row in rows:
        if "error" in row:
            out.print(f"{row['input']}\terror: {row['error']}", markup=False)
            continue
        shares = ", ".join(f"{name} {share:.1%}" for name, share in row["pixels"].items())
        out.print(f"{row['input']}\t{row['mask']}\t{shares}", markup=False)
    err.print(f"wrote {out_dir}/", markup=False)
