"""headstart compare: transfer against training from scratch on the user's own data, measured
over a grid of strategies x labels per class x seeds, with resume, figures and a report."""

from .run import CompareResult, compare

__all__ = ["CompareResult", "compare"]
