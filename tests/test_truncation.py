"""One count of truncated texts: extraction's stats and the estimator's fit_info agree."""

from __future__ import annotations

from headstart.data.sources import source_from_texts
from headstart.estimators import TextClassifier
from headstart.features.extract import Extractor
from headstart.features.truncation import count_truncated


def test_extraction_and_estimator_report_the_same_count(minilm):
    limit = minilm.preprocess.max_length
    texts = [
        "a delight from start to finish",
        "two hours I will never get back",
        "! " * limit,  # 2 * limit characters, but limit + 2 tokens: truncated
        "dreadful " * 400,  # about 400 tokens: truncated
        "word " * (limit - 3),  # exactly max_length tokens with [CLS] and [SEP]: kept whole
        "lovely",
    ]
    labels = ["pos", "neg", "neg", "neg", "pos", "pos"]
    assert count_truncated(minilm.tokenizer, texts, limit) == 2

    extracted = Extractor(minilm, precision="fp32", device="cpu", workers=0, cache=False)
    stats = extracted.run(source_from_texts(texts)).stats
    clf = TextClassifier(strategy="linear-probe", device="cpu", workers=0, verbose=False)
    clf.fit(texts, y=labels)
    assert stats.truncated == clf.fit_info_["truncated_rows"] == 2
