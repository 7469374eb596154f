"""TF-IDF rows of word 1-2 grams: the no-transfer featuriser for texts.

The vocabulary and IDF weights are learnt by scikit-learn's TfidfVectorizer; transform recomputes
the rows from them (counts of the known n-grams, 1 + log, IDF, L2 norm) in float64, so a featuriser
rebuilt from its saved state gives the very same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ..errors import HeadstartError
from .base import Featuriser

# TfidfVectorizer settings; everything needed to rebuild the transform, saved with the state
OPTIONS = {
    "lowercase": True,
    "token_pattern": r"(?u)\b\w\w+\b",
    "ngram_range": [1, 2],
    "min_df": 1,
    "sublinear_tf": True,
    "norm": "l2",
}


def texts_of(items: Sequence) -> list[str]:
    """Items (their .text) or plain strings."""
    return [item if isinstance(item, str) else item.text for item in items]


class TfidfFeaturiser(Featuriser):
    name: ClassVar[str] = "tfidf"
    modality: ClassVar[str] = "text"

    def __init__(self, terms: Sequence[str] = (), idf=None, options: dict | None = None):
        self.terms = list(terms)
        self.idf = np.asarray(idf if idf is not None else np.zeros(0), dtype=np.float64)
        self.options = dict(options or OPTIONS)
        self._counter = None

    @property
    def about(self) -> str:
        return "TF-IDF word 1-2 grams"

    @property
    def dim(self) -> int:
        return len(self.terms)

    def fit(self, items) -> TfidfFeaturiser:
        from sklearn.feature_extraction.text import TfidfVectorizer

        options = {**self.options, "ngram_range": tuple(self.options["ngram_range"])}
        vectorizer = TfidfVectorizer(**options, dtype=np.float64)
        try:
            vectorizer.fit(texts_of(items))
        except ValueError as err:  # "empty vocabulary"
            raise HeadstartError(
                "TF-IDF found no words in the texts (it counts words of two or more letters or "
                f"digits): {err}. Use a backbone strategy such as linear-probe."
            ) from None
        terms = [""] * len(vectorizer.vocabulary_)
        for term, index in vectorizer.vocabulary_.items():
            terms[index] = term
        self.terms, self.idf, self._counter = terms, vectorizer.idf_.astype(np.float64), None
        return self

    @classmethod
    def control_rows(cls, items) -> tuple[Any, list]:
        try:
            return cls().fit_transform(items), list(items)
        except HeadstartError:  # no word of two letters anywhere
            raise HeadstartError("The texts hold no words, so nothing can be ranked.") from None

    def transform(self, items):
        """(N, terms) scipy CSR float64 rows."""
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.preprocessing import normalize

        if not self.terms:
            raise HeadstartError("This TF-IDF featuriser is not fitted: call fit(texts) first.")
        if self._counter is None:
            self._counter = CountVectorizer(
                lowercase=self.options["lowercase"],
                token_pattern=self.options["token_pattern"],
                ngram_range=tuple(self.options["ngram_range"]),
                vocabulary={term: i for i, term in enumerate(self.terms)},
                dtype=np.float64,
            )
        counts = self._counter.transform(texts_of(items)).tocsr()
        if self.options["sublinear_tf"]:
            counts.data = 1.0 + np.log(counts.data)
        weighted = counts.multiply(self.idf).tocsr()
        return normalize(weighted, norm=self.options["norm"]) if self.options["norm"] else weighted

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """All in JSON (tfidf.json's format since the first runs): options, terms in column
        order, IDF weights (a float64 written by json reads back bit for bit)."""
        return {"options": self.options, "terms": self.terms, "idf": self.idf.tolist()}, {}

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray]) -> TfidfFeaturiser:
        """config: {"options", "terms", "idf"}; an "idf" array, where given, is used instead."""
        try:
            terms, options = config["terms"], config["options"]
            idf = arrays["idf"] if "idf" in arrays else config["idf"]
        except (KeyError, TypeError) as err:
            raise HeadstartError(f"The saved TF-IDF vocabulary lacks {err}. Re-run fit.") from None
        if len(terms) != len(idf):
            raise HeadstartError(
                f"The saved TF-IDF vocabulary ({len(terms)} terms) does not match its IDF weights "
                f"({len(idf)}). Re-run fit."
            )
        return cls(terms, idf, options)
