"""AudioClassifier: a pre-trained audio encoder with a new head for the user's labels."""

from __future__ import annotations

from .base import TransferEstimator


class AudioClassifier(TransferEstimator):
    """Audio classification, multi-label or regression by transfer from a pre-trained encoder.

    Data is a folder of clips (.wav, .flac, .ogg, .mp3), one subfolder per class, or a table with
    a path column. The default encoder is the bundled speech_embedding (words, short commands);
    `ge2e_speaker` (after `headstart fetch ge2e_speaker`) tells voices apart.
    strategy="mfcc" is the no-transfer control.

    >>> clf = AudioClassifier(strategy="linear-probe").fit("clips/train/")
    >>> clf.evaluate("clips/test/")["accuracy"]
    """

    modality = "audio"
