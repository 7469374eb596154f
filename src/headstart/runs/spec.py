"""RunSpec: what config.json holds, as a dataclass the estimator produces and runs/ saves and loads.

The JSON keeps the keys of format headstart-run/1; a spec read from an older run of that format
(table columns among the hyper-parameters, no `columns` key) is converted on reading.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import HeadstartError

FORMAT = "headstart-run/1"
COLUMN_KEYS = ("text_col", "label_col")  # in `params` before they became arguments of fit


@dataclass
class BackboneSpec:
    """The backbone a run used: which one, which weights, and whether it was trained."""

    name: str
    weight_id: str  # sha256 of the weights used (tuned-...: the run's own, random-init)
    pretrained_weight_id: str  # the weights training started from
    weights_file: str | None  # a local file given with weights=, else the zoo's
    trained: bool  # True: backbone.* (or lora's adapter.*) tensors are in the run
    feature_dim: int


@dataclass
class RunSpec:
    """Everything needed to rebuild a fitted estimator besides its tensors (model.safetensors).

    task: {"kind", "classes"} (+ "label_type": "int" when fit's y were integers); head: the
    head's spec (heads.build_head, or a featuriser strategy's linear model); strategy: its
    describe() + "reason";
    params: the constructor's arguments; columns: the table columns fit read; fit: fit_info_;
    files: sha256 of each file of the run besides config.json (filled when saved)."""

    estimator: str
    modality: str
    backbone: BackboneSpec | None  # None: a featuriser strategy (tfidf, pixels)
    preprocess: dict | None
    task: dict
    head: dict
    thresholds: list[float] | None
    strategy: dict
    params: dict
    columns: dict = field(default_factory=dict)
    fit: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    versions: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    headstart_version: str = __version__
    format: str = FORMAT

    def to_json(self) -> dict[str, Any]:
        """The config.json object (key order as format headstart-run/1 wrote it)."""
        data = asdict(self)
        order = ("format", "headstart_version", "estimator", "modality", "backbone")
        order += ("preprocess", "task", "head", "thresholds", "strategy", "params", "columns")
        order += ("fit", "history", "versions", "files")
        return {key: data[key] for key in order}

    @classmethod
    def from_json(cls, data: dict, where: str = "config.json") -> RunSpec:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise HeadstartError(f"'{where}' is not a headstart run config (format {FORMAT}).")
        params = dict(data.get("params", {}))
        columns = data.get("columns")
        if columns is None:  # written before columns left the constructor
            columns = {key: params.pop(key, None) for key in COLUMN_KEYS}
            for key in ("run_dir", "resume"):
                params.pop(key, None)
        backbone = data.get("backbone")
        try:
            return cls(
                estimator=data["estimator"],
                modality=data["modality"],
                backbone=None if backbone is None else BackboneSpec(**backbone),
                preprocess=data.get("preprocess"),
                task=data["task"],
                head=data["head"],
                thresholds=data.get("thresholds"),
                strategy=data["strategy"],
                params=params,
                columns=columns,
                fit=data.get("fit", {}),
                history=data.get("history", []),
                versions=data.get("versions", {}),
                files=data.get("files", {}),
                headstart_version=data.get("headstart_version", "unknown"),
            )
        except (KeyError, TypeError) as exc:
            raise HeadstartError(
                f"'{where}' is missing or garbles {exc} of a headstart run config. Re-run fit."
            ) from None


def spec_of(est) -> RunSpec:
    """The RunSpec of a fitted estimator (files empty: save_run fills them)."""
    from ..runs.store import versions

    backbone = est.backbone_  # None for a featuriser strategy
    task = {"kind": est.task_.kind, "classes": list(est.task_.classes)}
    if getattr(est, "label_type_", "str") != "str":
        task["label_type"] = est.label_type_
    return RunSpec(
        estimator=type(est).__name__,
        modality=est.modality,
        backbone=None
        if backbone is None
        else BackboneSpec(
            name=backbone.name,
            weight_id=backbone.weight_id,
            pretrained_weight_id=getattr(est, "pretrained_weight_id_", backbone.weight_id),
            weights_file=str(est.weights) if est.weights else None,
            trained=bool(est.backbone_trained_),
            feature_dim=backbone.feature_dim,
        ),
        preprocess=None
        if backbone is None
        else {"type": type(backbone.preprocess).__name__, **asdict(backbone.preprocess)},
        task=task,
        head=est.head_.spec(),
        thresholds=None if est.thresholds_ is None else [float(t) for t in est.thresholds_],
        strategy={**est.strategy_.describe(), "reason": est.strategy_reason_},
        params={k: _jsonable(v) for k, v in est.get_params().items()},
        columns={"text_col": est.text_col_, "label_col": est.label_col_},
        fit=est.fit_info_,
        history=est.history_,
        versions=versions(),
    )


@dataclass
class Parts:
    backbone: Any
    head: Any
    strategy: Any


def restore_parts(spec: RunSpec, state: dict, run_dir: Path | None = None) -> Parts:
    """Backbone, head and strategy from a spec and the run's tensors (safetensors, no pickle):
    the strategy restores what its saved_tensors and saved_files wrote."""
    from ..strategies import get_strategy

    strategy = get_strategy(spec.strategy["name"])
    backbone, head = strategy.restore(spec, state, run_dir)
    return Parts(backbone, head.eval(), strategy)  # a frozen backbone stays lazy


def _jsonable(value):
    import numpy as np

    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
