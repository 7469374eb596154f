"""Classic baselines that need no backbone: the control a text user should always see.

`tfidf` turns texts into TF-IDF vectors of word 1-2 grams and fits a logistic regression (C by
cross-validation, as the linear probe does). It does not use the backbone or its cache at all: the
estimator hands it the training texts and later asks it for logits. A fitted model is a
vocabulary and IDF weights (saved as JSON) and a weight matrix and bias (saved as safetensors),
never a pickle; predictions after loading run the very same code, so they are identical.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..errors import HeadstartError
from ..files import write_bytes_atomic
from ..heads import Task
from .base import Strategy

VOCABULARY_FILE = "tfidf.json"
# TfidfVectorizer settings; everything needed to rebuild the transform, saved with the model
OPTIONS = {
    "lowercase": True,
    "token_pattern": r"(?u)\b\w\w+\b",
    "ngram_range": [1, 2],
    "min_df": 1,
    "sublinear_tf": True,
    "norm": "l2",
}


class TfidfLogistic(Strategy):
    name = "tfidf"
    summary = "TF-IDF + logistic regression, no backbone: the control a text user should always see"
    frozen = True
    classic = True  # produces its own features and predictions; the backbone is never built
    modalities = ("text",)
    modality_hint = "TF-IDF reads words; for images use linear-probe as the quick control."

    def fit_model(
        self, texts: Sequence[str], targets: np.ndarray, task: Task, seed: int = 0
    ) -> tuple[TfidfModel, dict]:
        from sklearn.feature_extraction.text import TfidfVectorizer

        from .frozen import fit_linear

        vectorizer = TfidfVectorizer(
            **{**OPTIONS, "ngram_range": tuple(OPTIONS["ngram_range"])}, dtype=np.float64
        )
        try:
            vectorizer.fit(texts)
        except ValueError as err:  # "empty vocabulary"
            raise HeadstartError(
                "TF-IDF found no words in the training texts (it counts words of two or more "
                f"letters or digits): {err}. Use a backbone strategy such as linear-probe."
            ) from None
        terms = [""] * len(vectorizer.vocabulary_)
        for term, index in vectorizer.vocabulary_.items():
            terms[index] = term
        model = TfidfModel(terms, vectorizer.idf_, np.zeros((0,)), np.zeros((0,)), dict(OPTIONS))
        x = model.features(texts)
        weight, bias, info = fit_linear(x, targets, task, seed)
        model.weight = np.asarray(weight, dtype=np.float64)
        model.bias = np.asarray(bias, dtype=np.float64)
        self.info = {**info, "terms": len(terms)}
        return model, self.info

    def fit_info(self) -> dict:
        return {"tfidf": getattr(self, "info", {})}

    def load_model(self, spec: dict, state: dict, run_dir: Path) -> TfidfModel:
        return TfidfModel.load(spec, state, Path(run_dir))


class TfidfModel:
    """logits = TF-IDF(texts) @ weight.T + bias, computed in float64 with scipy."""

    kind: ClassVar[str] = "tfidf"

    def __init__(self, terms, idf, weight, bias, options: dict):
        self.terms = list(terms)
        self.idf = np.asarray(idf, dtype=np.float64)
        self.weight, self.bias = weight, bias  # (out_dim, terms), (out_dim,)
        self.options = options
        self._counter = None

    def features(self, texts: Sequence[str]):
        """(N, terms) sparse TF-IDF rows: counts of the known n-grams, 1 + log, IDF, L2 norm."""
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.preprocessing import normalize

        if self._counter is None:
            self._counter = CountVectorizer(
                lowercase=self.options["lowercase"],
                token_pattern=self.options["token_pattern"],
                ngram_range=tuple(self.options["ngram_range"]),
                vocabulary={term: i for i, term in enumerate(self.terms)},
                dtype=np.float64,
            )
        counts = self._counter.transform(list(texts)).tocsr()
        if self.options["sublinear_tf"]:
            counts.data = 1.0 + np.log(counts.data)
        weighted = counts.multiply(self.idf).tocsr()
        return normalize(weighted, norm=self.options["norm"]) if self.options["norm"] else weighted

    def logits(self, items) -> torch.Tensor:
        """Logits for Items (their .text) or plain strings, as float32."""
        texts = [item if isinstance(item, str) else item.text for item in items]
        if not texts:
            return torch.zeros((0, len(self.bias)), dtype=torch.float32)
        raw = np.asarray(self.features(texts) @ self.weight.T) + self.bias
        return torch.from_numpy(raw).float()

    # -- the estimator's head protocol: spec() and state_dict() go into the run directory --------

    def spec(self) -> dict:
        return {
            "kind": self.kind,
            "file": VOCABULARY_FILE,
            "terms": len(self.terms),
            "out_dim": int(len(self.bias)),
            "options": self.options,
        }

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "weight": torch.from_numpy(np.ascontiguousarray(self.weight, dtype=np.float64)),
            "bias": torch.from_numpy(np.ascontiguousarray(self.bias, dtype=np.float64)),
        }

    def eval(self) -> TfidfModel:
        return self

    def write_files(self, run_dir: Path) -> dict[str, str]:
        """tfidf.json (terms in column order, IDF weights, options); returns {name: sha256}."""
        text = json.dumps(
            {"options": self.options, "terms": self.terms, "idf": self.idf.tolist()},
            ensure_ascii=False,
        )
        data = (text + "\n").encode("utf-8")
        path = Path(run_dir) / VOCABULARY_FILE
        write_bytes_atomic(path, data)
        return {VOCABULARY_FILE: hashlib.sha256(data).hexdigest()}

    @classmethod
    def load(cls, spec: dict, state: dict, run_dir: Path) -> TfidfModel:
        path = run_dir / spec.get("file", VOCABULARY_FILE)
        if not path.is_file():
            raise HeadstartError(
                f"Run '{run_dir}' is incomplete: {path.name} is missing. Re-run fit."
            )
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            terms, idf, options = saved["terms"], saved["idf"], saved["options"]
        except (ValueError, KeyError, TypeError) as err:
            raise HeadstartError(f"'{path}' is not a saved TF-IDF vocabulary ({err}).") from None
        weight = state["weight"].double().numpy()
        bias = state["bias"].double().numpy()
        if len(terms) != len(idf) or weight.shape != (len(bias), len(terms)):
            raise HeadstartError(
                f"'{path}' ({len(terms)} terms) does not match the saved weights "
                f"{tuple(weight.shape)}: the run directory is inconsistent. Re-run fit."
            )
        return cls(terms, idf, weight, bias, options)
