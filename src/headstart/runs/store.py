"""Save and load a fitted estimator as safetensors weights + JSON. Loading never unpickles.

RUN_DIR/
  model.safetensors   head.* (and backbone.* when the backbone was trained; adapter.* instead
                      for lora, whose pre-trained backbone is rebuilt from its original file)
  config.json         backbone id and weight hash, preprocessing, labels, strategy, every
                      hyper-parameter, library versions, training-data fingerprint, file hashes
  metrics.json        validation metrics
  confusion_matrix.png, curves.png, report.md
"""

from __future__ import annotations

import json
import os
import platform
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .. import __version__
from ..errors import HeadstartError
from ..heads import Task, build_head
from ..zoo.weights import sha256_file

FORMAT = "headstart-run/1"
WEIGHTS, CONFIG, METRICS = "model.safetensors", "config.json", "metrics.json"


class VersionWarning(UserWarning):
    """The run was saved by another headstart version."""


def save_run(est, run_dir: Path) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"head.{k}": v.detach().cpu().contiguous() for k, v in est.head_.state_dict().items()
    }
    if est.backbone_trained_:
        custom = getattr(est.strategy_, "backbone_tensors", None)  # lora: adapter.* tensors only
        if custom is not None:
            tensors.update(custom())
        else:
            for key, value in est.backbone_.state_dict().items():
                tensors[f"backbone.{key}"] = value.detach().cpu().contiguous()
    _atomic(run_dir / WEIGHTS, lambda tmp: save_file(tensors, str(tmp)))
    write_files = getattr(est.head_, "write_files", None)  # tfidf: its vocabulary, as JSON
    extra = write_files(run_dir) if write_files is not None else {}
    config = run_config(est, sha256_file(run_dir / WEIGHTS), extra)
    write_json(run_dir / CONFIG, config)
    write_json(run_dir / METRICS, est.metrics_)
    from .artifacts import write_artifacts

    write_artifacts(est, run_dir)
    return run_dir


def run_config(est, weights_sha: str, extra_files: dict | None = None) -> dict:
    backbone = est.backbone_  # None for a classic strategy (tfidf)
    return {
        "format": FORMAT,
        "headstart_version": __version__,
        "estimator": type(est).__name__,
        "modality": est.modality,
        "backbone": None
        if backbone is None
        else {
            "name": backbone.name,
            "weight_id": backbone.weight_id,
            "pretrained_weight_id": getattr(est, "pretrained_weight_id_", backbone.weight_id),
            "weights_file": str(est.weights) if est.weights else None,
            "trained": bool(est.backbone_trained_),
            "feature_dim": backbone.feature_dim,
        },
        "preprocess": None
        if backbone is None
        else {"type": type(backbone.preprocess).__name__, **asdict(backbone.preprocess)},
        "task": {"kind": est.task_.kind, "classes": est.task_.classes},
        "head": est.head_.spec(),
        "thresholds": None if est.thresholds_ is None else [float(t) for t in est.thresholds_],
        "strategy": {**est.strategy_.describe(), "reason": est.strategy_reason_},
        "params": {k: _jsonable(v) for k, v in est.get_params().items()},
        "fit": est.fit_info_,
        "history": est.history_,
        "versions": versions(),
        "files": {WEIGHTS: weights_sha, **(extra_files or {})},
    }


def versions() -> dict:
    import lightning
    import sklearn
    import timm
    import transformers

    return {
        "headstart": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "transformers": transformers.__version__,
        "lightning": lightning.__version__,
        "scikit-learn": sklearn.__version__,
    }


def load_run(cls, run_dir: Path):
    config = read_config(run_dir)
    weights = run_dir / WEIGHTS
    if not weights.is_file():
        raise HeadstartError(f"Run '{run_dir}' is incomplete: {WEIGHTS} is missing. Re-run fit.")
    for name, expected in config.get("files", {}).items():  # the weights, tfidf.json
        path = run_dir / name
        if not path.is_file():
            raise HeadstartError(f"Run '{run_dir}' is incomplete: {name} is missing. Re-run fit.")
        if expected and sha256_file(path) != expected:
            raise HeadstartError(
                f"'{path}' does not match the hash recorded in {CONFIG}: the file was altered or "
                "damaged. Re-run fit, or restore the run directory from a copy."
            )
    saved_by = config.get("headstart_version", "unknown")
    if saved_by != __version__:
        warnings.warn(
            f"Run '{run_dir}' was saved by headstart {saved_by}; this is "
            f"{__version__}. Predictions may differ slightly.",
            VersionWarning,
            stacklevel=3,
        )
    est = cls(**{k: v for k, v in config["params"].items() if k in cls._param_names()})
    state = load_file(str(weights))
    restore(est, config, state, run_dir)
    est.metrics_ = read_json(run_dir / METRICS)
    return est


def restore(est, config: dict, state: dict, run_dir: Path | None = None) -> None:
    from ..strategies import get_strategy
    from ..zoo import get_entry, load_backbone

    info = config["backbone"]
    strategy = get_strategy(config["strategy"]["name"])
    if info is None:  # a classic strategy (tfidf): no backbone
        backbone = None
    elif info["trained"] and hasattr(strategy, "restore_backbone"):  # lora: pre-trained + adapters
        backbone = strategy.restore_backbone(config, state)
    elif info["trained"]:  # the weights are all in the run: no need for the original file
        backbone = get_entry(info["name"]).build(pretrained=False)
        backbone_state = {k[9:]: v for k, v in state.items() if k.startswith("backbone.")}
        backbone.load_state_dict(backbone_state, strict=True)
        backbone.weight_id = info["weight_id"]
    else:
        backbone = load_backbone(info["name"], config["modality"], info["weights_file"])
        if backbone.weight_id != info["weight_id"]:
            raise HeadstartError(
                f"The backbone weights for {info['name']!r} differ from those the run was fitted "
                f"with (sha256 {backbone.weight_id[:12]}... vs {info['weight_id'][:12]}...). "
                "Install the same weights, or re-run fit."
            )
    head_state = {k[5:]: v for k, v in state.items() if k.startswith("head.")}
    if getattr(strategy, "classic", False):  # its own model: weights here, vocabulary in JSON
        head = strategy.load_model(config["head"], head_state, run_dir)
    else:
        head = build_head(config["head"])
        head.load_state_dict(head_state)
    est.backbone_, est.head_ = backbone, head.eval()  # a frozen backbone stays lazy
    est.backbone_trained_ = bool(info and info["trained"])
    est.task_ = Task(config["task"]["kind"], config["task"]["classes"])
    thresholds = config.get("thresholds")
    est.thresholds_ = None if thresholds is None else np.array(thresholds, dtype=np.float32)
    est.strategy_ = strategy
    est.strategy_name_, est.strategy_reason_ = (
        config["strategy"]["name"],
        config["strategy"]["reason"],
    )
    est.history_, est.fit_info_ = config.get("history", []), config.get("fit", {})


def read_config(run_dir: Path) -> dict:
    if not run_dir.exists():
        raise HeadstartError(f"Run directory '{run_dir}' does not exist. Pass the --out of a fit.")
    path = run_dir / CONFIG
    if not path.is_file():
        raise HeadstartError(f"'{run_dir}' is not a complete run: {CONFIG} is missing.")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HeadstartError(f"'{path}' is not valid JSON ({exc}). Re-run fit.") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise HeadstartError(f"'{path}' is not a headstart run config (format {FORMAT}).")
    return config


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def write_json(path: Path, value) -> None:
    text = json.dumps(value, indent=2, default=_jsonable)
    _atomic(path, lambda tmp: tmp.write_text(text + "\n"))


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
