"""Detection on the command line: the boxes `headstart predict` prints."""

from __future__ import annotations

from .console import out


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
