"""No-transfer featurisers: raw input turned into feature rows with no pre-trained network.

`tfidf` (word 1-2 grams) for texts, `pixels` (raw pixels at side x side) for images and
`mfcc` (MFCC statistics) for audio. They are
the controls: `select.rank`'s no-transfer row, the `tfidf` and `pixels` strategies (featuriser +
the linear probe's regularised logistic regression) and `compare`'s baselines all use them.

    featuriser = TfidfFeaturiser().fit(texts)
    x = featuriser.transform(texts)          # (N, terms) sparse rows
    featuriser.save(folder)                  # JSON + safetensors, never a pickle
    same = load_featuriser(folder, "tfidf")
"""

from .base import FEATURISERS, Featuriser, get_featuriser, load_featuriser
from .mfcc import MFCCFeaturiser
from .pixels import DEFAULT_SIDE, PixelsFeaturiser
from .tfidf import TfidfFeaturiser

__all__ = [
    "FEATURISERS",
    "Featuriser",
    "get_featuriser",
    "load_featuriser",
    "DEFAULT_SIDE",
    "MFCCFeaturiser",
    "PixelsFeaturiser",
    "TfidfFeaturiser",
]
