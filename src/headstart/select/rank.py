"""Rank candidate backbones on the user's labelled data before any training.

Each candidate embeds the data through the usual extractor and cache, then gets LogME, H-score,
LEEP and NCE (the last two where the weights carry their ImageNet head) and a quick
cross-validated linear-probe accuracy. A "no transfer" row (raw pixels or TF-IDF with the same
linear model) is always scored the same way, so the ranking can say when no pre-trained model
beats raw input. Rows are ordered by LogME, best first.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..data.sources import Source
from ..errors import HeadstartError
from ..heads import TASKS, detect_task
from . import scores

NO_TRANSFER = "no-transfer"
RANDOM_PREFIX = "random:"
CV_FOLDS = 3
CV_GRID = (0.1, 1.0)  # two C values: enough to be fair to wide and narrow features, still quick
# unit-length TF-IDF rows, not standardised, need far weaker regularisation to fit at all
CV_GRID_SPARSE = (1.0, 10.0)
MAX_ITEMS = 2000  # a stratified sample this large ranks as well as all items, in far less time
HSCORE_MAX_DIM = 4096  # Ledoit-Wolf needs a D x D covariance: skipped for wide TF-IDF rows

Say = Callable[[str], None]


@dataclass(frozen=True)
class Candidate:
    """A backbone to score: a zoo name, optionally a local weights file, or a random-init copy
    (pretrained=False; its random weights may come from a file, so that it can be trained later
    exactly as it was scored)."""

    model: str
    weights: Path | None = None
    pretrained: bool = True

    @property
    def label(self) -> str:
        if not self.pretrained:
            return f"{RANDOM_PREFIX}{self.model}"
        return f"{self.model} ({self.weights.name})" if self.weights else self.model


@dataclass
class Row:
    candidate: str
    kind: str  # "pre-trained", "random-init", "no-transfer" or "layer"
    logme: float
    h_score: float | None = None
    leep: float | None = None
    nce: float | None = None
    cv_accuracy: float | None = None
    seconds: float = 0.0
    dim: int = 0
    n: int = 0
    group: int | None = None  # layer rows: index of the parameter group, input to output
    about: str = ""  # what the features are, in words

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if not (k == "group" and v is None)}


@dataclass
class Ranking:
    rows: list[Row]  # best first by LogME
    verdict: str
    transfer_helps: bool | None  # None: no cross-validated accuracy to compare
    classes: list[str]
    n_items: int
    extra: dict = field(default_factory=dict)  # layers: the unfreeze recommendation

    @property
    def top(self) -> Row | None:
        """The best candidate that reuses pre-trained weights (layers: the best cut)."""
        return next((r for r in self.rows if r.kind in ("pre-trained", "layer")), None)

    def to_json(self) -> list[dict]:
        return [{"rank": i + 1, **row.to_json()} for i, row in enumerate(self.rows)]


def default_candidates(modality: str) -> list[Candidate]:
    """Every bundled backbone of the modality, and every one fetched with `headstart fetch`,
    whose weights are on this machine."""
    from ..zoo import bundled_names, get_entry, registered_names

    local = set(bundled_names(modality))
    names = [
        n
        for n in registered_names(modality)
        if (n in local or get_entry(n).fetch is not None) and get_entry(n).available_offline()
    ]
    if not names:
        raise HeadstartError(
            f"No bundled {modality} backbone is available offline. Reinstall headstart's "
            "dependencies, or name candidates with --models."
        )
    return [Candidate(n) for n in names]


def unfetched(modality: str) -> list:
    """The entries of the modality that `headstart fetch` would bring and that are not here."""
    from ..zoo import get_entry, registered_names

    entries = [get_entry(n) for n in registered_names(modality)]
    return [e for e in entries if e.fetch is not None and not e.available_offline()]


def parse_candidates(
    spec: str | list[str] | None, modality: str, model: str = "", weights: Path | None = None
) -> list[Candidate]:
    """'a,b,random:c' (default: every bundled one), plus MODEL with WEIGHTS when a file is given."""
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec or [])
    names = [n for n in names if n]
    found = (
        [_candidate(n) for n in names]
        if names
        else ([] if weights else default_candidates(modality))
    )
    if weights is not None:
        from ..modalities import get_modality

        default = get_modality(modality).default_model
        found.append(Candidate(model or default, Path(weights).expanduser()))
    for cand in found:
        _check_candidate(cand, modality)
    return list(dict.fromkeys(found))


def _candidate(name: str) -> Candidate:
    if name.startswith(RANDOM_PREFIX):
        return Candidate(name.removeprefix(RANDOM_PREFIX), pretrained=False)
    return Candidate(name)


def _check_candidate(cand: Candidate, modality: str) -> None:
    from ..zoo import get_entry

    entry = get_entry(cand.model)
    if entry.modality != modality:
        raise HeadstartError(
            f"Candidate {cand.model!r} takes {entry.modality} input but the data is {modality}."
        )
    if cand.weights is not None and not cand.weights.is_file():
        raise HeadstartError(f"Weights file '{cand.weights}' does not exist. Check --weights.")


# ---- the ranking ---------------------------------------------------------------------------


def rank_models(
    source: Source,
    candidates: list[Candidate] | None = None,
    *,
    seed: int = 0,
    max_items: int | None = MAX_ITEMS,
    say: Say | None = None,
    **extract,
) -> Ranking:
    """Score every candidate and the no-transfer control on `source` (labelled, classification)."""
    source = prepare(source, max_items, seed)
    candidates = candidates or default_candidates(source.modality)
    rows = [no_transfer_row(source, seed)]
    for cand in candidates:
        rows.append(score_candidate(source, cand, seed, **extract))
        if say:
            say(_progress_line(rows[-1]))
    return finish(rows, source)


def prepare(source: Source, max_items: int | None, seed: int) -> Source:
    """The labelled classification items to score, a stratified sample when there are many."""
    from ..data.split import per_class

    if source.items and any(i.label is None for i in source.items):
        raise HeadstartError(
            "Ranking needs labels: use a folder with one subfolder per class, or a table with a "
            "label column (--label-col)."
        )
    labels = [i.label for i in source.items]
    kind = detect_task(labels) if labels else "classification"
    if not TASKS[kind].one_class_per_item:
        raise HeadstartError(
            f"Ranking scores classification labels; these look like {kind} labels."
        )
    classes = sorted(set(labels))
    if len(classes) < 2:
        only = classes[0] if classes else "none"
        raise HeadstartError(
            f"Ranking needs at least two classes; the data has one ({only!r}). Add examples of "
            "another class (another subfolder or label value)."
        )
    if max_items and len(source.items) > max_items:
        source = per_class(source, max(2, max_items // len(classes)), seed)
    return source


def score_candidate(source: Source, cand: Candidate, seed: int = 0, **extract) -> Row:
    start = time.perf_counter()
    backbone, emb = embed_candidate(source, cand, **extract)
    y = labels_of(emb.items)
    logits = source_logits(backbone, emb.features) if cand.pretrained else None
    row = score_features(emb.features, y, seed, logits)
    row.candidate = cand.label
    row.kind = "pre-trained" if cand.pretrained else "random-init"
    row.about = f"{backbone.name}, {'pre-trained' if cand.pretrained else 'random'} weights"
    row.seconds = time.perf_counter() - start
    return row


def embed_candidate(source: Source, cand: Candidate, **extract):
    """(backbone, Embeddings) through the shared extractor and cache (random copies skip it)."""
    from ..features.extract import Extractor
    from ..zoo import get_entry, load_backbone

    if cand.pretrained or cand.weights:  # a random-init copy may come saved in a file
        backbone = load_backbone(cand.model, source.modality, cand.weights)
    else:
        backbone = get_entry(cand.model).build(pretrained=False)
    extract = {k: v for k, v in extract.items() if v is not None}
    emb = Extractor(backbone, **extract).run(source)
    if len(emb.items) < 2:
        raise HeadstartError(
            f"{cand.label}: only {len(emb.items)} of {len(source.items)} items could be used."
        )
    return backbone, emb


def source_logits(backbone, features: np.ndarray) -> np.ndarray | None:
    """The source task's logits for cached features, where the weights carry that head."""
    import torch

    from ..zoo.entry import materialize

    if not backbone.cfg.num_source_classes:
        return None
    built = materialize(backbone)
    try:
        with torch.inference_mode():
            return built.forward_head(torch.from_numpy(features).float()).double().numpy()
    except NotImplementedError:  # a file without the source head (reset or replaced)
        return None


def score_features(features, y: np.ndarray, seed: int = 0, logits: np.ndarray | None = None) -> Row:
    """Every score for one feature matrix (dense or sparse) and integer labels."""
    dim = features.shape[1]
    leep = nce = None
    if logits is not None:
        leep = scores.leep(scores.source_probabilities(logits), y)
        nce = scores.nce(logits.argmax(axis=1), y)
    dense = features if not hasattr(features, "toarray") else None
    return Row(
        candidate="",
        kind="",
        logme=scores.logme(features, y),
        h_score=scores.h_score(dense, y) if dense is not None and dim <= HSCORE_MAX_DIM else None,
        leep=leep,
        nce=nce,
        cv_accuracy=quick_cv_accuracy(features, y, seed),
        dim=int(dim),
        n=len(y),
    )


def quick_cv_accuracy(features, y: np.ndarray, seed: int = 0, folds: int = CV_FOLDS):
    """Mean held-out accuracy of a logistic regression, k-fold stratified, best of a tiny C grid.

    Dense features are standardised inside each fold; sparse (TF-IDF) rows are used as they are.
    None when a class has a single example (no fold could hold it out)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = min(folds, int(np.bincount(y)[np.bincount(y) > 0].min()))
    if folds < 2:
        return None
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    best, sparse = 0.0, hasattr(features, "toarray")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs convergence chatter on tiny data
        for c in CV_GRID_SPARSE if sparse else CV_GRID:
            model = LogisticRegression(C=c, max_iter=500)
            if not sparse:
                model = make_pipeline(StandardScaler(), model)
            best = max(best, float(cross_val_score(model, features, y, cv=cv).mean()))
    return best


# ---- no transfer ---------------------------------------------------------------------------


def raw_features(source: Source, seed: int = 0):
    """(features, kept items, what they are): the modality's no-transfer featuriser (raw
    pixels, TF-IDF rows), the one its control strategy uses."""
    from ..featurisers import Featuriser

    featuriser = Featuriser.for_modality(source.modality)
    x, kept = featuriser.control_rows(source.items)
    return x, kept, featuriser().about


def no_transfer_row(source: Source, seed: int = 0) -> Row:
    start = time.perf_counter()
    features, kept, what = raw_features(source, seed)
    if len(kept) < 2:
        raise HeadstartError("Fewer than two items of the data can be read; nothing to rank.")
    row = score_features(features, labels_of(kept), seed)
    row.candidate, row.kind, row.about = NO_TRANSFER, "no-transfer", what
    row.seconds = time.perf_counter() - start
    return row


def labels_of(items) -> np.ndarray:
    _, y = np.unique(np.array([i.label for i in items]), return_inverse=True)
    return y.ravel()


# ---- verdict -------------------------------------------------------------------------------


def finish(rows: list[Row], source: Source, extra: dict | None = None) -> Ranking:
    rows = sorted(rows, key=lambda r: r.logme, reverse=True)
    verdict, helps = transfer_verdict(rows, source.modality)
    return Ranking(rows, verdict, helps, source.class_names, len(source.items), extra or {})


def transfer_verdict(rows: list[Row], modality: str) -> tuple[str, bool | None]:
    """Whether any pre-trained candidate beats raw input in cross-validated accuracy."""
    raw = next(r for r in rows if r.kind == "no-transfer")
    reused = [r for r in rows if r.kind in ("pre-trained", "layer") and r.cv_accuracy is not None]
    from ..modalities import get_modality

    control = get_modality(modality).control_strategy
    if raw.cv_accuracy is None or not reused:
        return "No cross-validated accuracy (a class has a single example): no verdict.", None
    best = max(reused, key=lambda r: r.cv_accuracy)
    top = reused[0] if reused[0].kind != "layer" else best
    if best.cv_accuracy <= raw.cv_accuracy:
        return (
            f"NO pre-trained candidate beats raw input: best {best.candidate} reaches "
            f"{best.cv_accuracy:.3f} cross-validated accuracy, raw input with the same linear "
            f"model {raw.cv_accuracy:.3f}. The data is far from what these models saw; use "
            f"--strategy {control} (no transfer), or fine-tune, and compare.",
            False,
        )
    return (
        f"Transfer helps: {best.candidate} reaches {best.cv_accuracy:.3f} cross-validated "
        f"accuracy against {raw.cv_accuracy:.3f} for raw input. Top pick by LogME: "
        f"{top.candidate}.",
        True,
    )


def _progress_line(row: Row) -> str:
    cv = f"{row.cv_accuracy:.3f}" if row.cv_accuracy is not None else "-"
    return f"{row.candidate}: LogME {row.logme:.4f}, cv accuracy {cv}, {row.seconds:.1f} s"
