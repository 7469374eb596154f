"""TextClassifier: a pre-trained text encoder with a new head for the user's labels."""

from __future__ import annotations

import sys

from ..features.truncation import count_truncated
from .base import TransferEstimator


class TextClassifier(TransferEstimator):
    """Text classification, multi-label or regression by transfer from a pre-trained encoder.

    The default encoder is the bundled minilm_l6. Data is a CSV, TSV or JSON Lines table (columns
    `text` or `sentence`, and `label`; others with fit(..., text_col=, label_col=)), a Source, or
    a list of strings with y labels: fit(texts, y). Texts longer than the encoder's max_length
    tokens are truncated; fit_info_["truncated_rows"] counts them.
    strategy="tfidf" is the no-backbone control.

    >>> clf = TextClassifier(strategy="linear-probe").fit("train.csv")
    >>> clf.score(["a delight", "a bore"], ["pos", "neg"])
    >>> clf.predict(["a delight from start to finish", "two hours I will never get back"])
    """

    modality = "text"

    def _fit_extras(self, train_emb, val_emb) -> dict:
        if self.backbone_ is None:  # a classic strategy (tfidf) reads every word of every text
            return {}
        items = train_emb.items + (val_emb.items if val_emb is not None else [])
        limit = self.backbone_.preprocess.max_length
        count = count_truncated(_tokenizer(self.backbone_), [i.text for i in items], limit)
        if count and self.verbose:
            print(
                f"truncated: {count} of {len(items)} texts are longer than {limit} tokens; "
                f"{self.backbone_.name} reads only their first {limit}",
                file=sys.stderr,
            )
        return {"truncated_rows": count, "max_length": limit}


def _tokenizer(backbone):
    """The backbone's tokenizer, without building the network when it is not built yet."""
    from ..zoo.entry import LazyBackbone
    from ..zoo.text import load_tokenizer

    built = backbone._built if isinstance(backbone, LazyBackbone) else backbone
    if built is not None:
        return getattr(built, "tokenizer", None)
    return load_tokenizer(backbone.preprocess.tokenizer, backbone.cfg.weights.kind)
