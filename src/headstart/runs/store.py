"""Save and load a fitted estimator as safetensors weights + JSON. Loading never unpickles.

RUN_DIR/
  model.safetensors   head.* (and backbone.* when the backbone was trained; adapter.* instead
                      for lora, whose pre-trained backbone is rebuilt from its original file;
                      featuriser.* for tfidf and pixels, whose config is tfidf.json/pixels.json)
  config.json         the RunSpec (runs/spec.py): backbone id and weight hash, preprocessing,
                      labels, strategy, every hyper-parameter, the table columns, library
                      versions, training-data fingerprint, file hashes
  metrics.json        validation metrics
  confusion_matrix.png, curves.png, report.md
"""

from __future__ import annotations

import json
import platform
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .. import __version__
from ..errors import HeadstartError
from ..files import atomic_path, write_text_atomic
from ..zoo.weights import sha256_file
from .spec import FORMAT, RunSpec, _jsonable

WEIGHTS, CONFIG, METRICS = "model.safetensors", "config.json", "metrics.json"


class VersionWarning(UserWarning):
    """The run was saved by another headstart version."""


def save_run(est, run_dir: Path) -> Path:
    """Write the estimator's tensors, its RunSpec as config.json, metrics and the report."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tensors = est.tensors()
    with atomic_path(run_dir / WEIGHTS) as tmp:
        save_file(tensors, str(tmp))
    extra = est.strategy_.saved_files(run_dir)  # tfidf.json, pixels.json: featuriser config
    spec = est.to_spec()
    spec.files = {WEIGHTS: sha256_file(run_dir / WEIGHTS), **extra}
    write_json(run_dir / CONFIG, spec.to_json())
    write_json(run_dir / METRICS, est.metrics_)
    est.write_artifacts(run_dir)  # plots and report.md, by task
    return run_dir


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
    spec = read_spec(run_dir)
    weights = run_dir / WEIGHTS
    if not weights.is_file():
        raise HeadstartError(f"Run '{run_dir}' is incomplete: {WEIGHTS} is missing. Re-run fit.")
    for name, expected in spec.files.items():  # the weights, tfidf.json
        path = run_dir / name
        if not path.is_file():
            raise HeadstartError(f"Run '{run_dir}' is incomplete: {name} is missing. Re-run fit.")
        if expected and sha256_file(path) != expected:
            raise HeadstartError(
                f"'{path}' does not match the hash recorded in {CONFIG}: the file was altered or "
                "damaged. Re-run fit, or restore the run directory from a copy."
            )
    if spec.headstart_version != __version__:
        warnings.warn(
            f"Run '{run_dir}' was saved by headstart {spec.headstart_version}; this is "
            f"{__version__}. Predictions may differ slightly.",
            VersionWarning,
            stacklevel=3,
        )
    est = cls.from_spec(spec, load_file(str(weights)), run_dir)
    est.metrics_ = read_json(run_dir / METRICS)
    return est


def read_spec(run_dir: Path) -> RunSpec:
    """The RunSpec of a run directory (config.json), checked for its format."""
    return RunSpec.from_json(read_config(run_dir), str(run_dir / CONFIG))


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
    return config  # the raw JSON; read_spec gives the RunSpec


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def write_json(path: Path, value) -> None:
    text = json.dumps(value, indent=2, default=_jsonable)
    write_text_atomic(path, text + "\n")
