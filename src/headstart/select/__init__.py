"""Choose before training: transferability scores, candidate and cut-layer ranking, no transfer."""

from .layers import rank_layers
from .rank import Candidate, Ranking, Row, rank_models
from .scores import h_score, leep, logme, nce

__all__ = [
    "Candidate",
    "Ranking",
    "Row",
    "h_score",
    "leep",
    "logme",
    "nce",
    "rank_layers",
    "rank_models",
]
