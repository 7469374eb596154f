"""Few-shot text classification on SST-2: the bundled MiniLM's linear probe against TF-IDF.

    python bench/text.py [--per-class 16] [--seeds 1] [--strategies linear-probe,tfidf]

Training labels: K per class drawn with the estimator's seeded sampler from all of train.tsv;
test set: all 872 rows of dev.tsv, passed as validation data. Both strategies choose their
regularisation by cross-validation on the training labels alone, so dev.tsv is never used for
fitting (mlp-head would use it for early stopping, so it is not in the default list). Each fit
starts with an empty embedding cache: the wall time includes reading the 67,349-row train.tsv,
building the backbone and embedding the training and dev sentences.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from common import DATA as SHARED

DATA = SHARED / "sst2"


def fit(strategy: str, per_class: int, seed: int) -> tuple[float, float, float]:
    """(dev accuracy, dev macro F1, wall seconds) of one cold fit."""
    from headstart.estimators import TextClassifier

    with tempfile.TemporaryDirectory(prefix="headstart-bench-cache-") as cache:
        os.environ["HEADSTART_CACHE"] = cache
        start = time.perf_counter()
        clf = TextClassifier(strategy=strategy, per_class=per_class, seed=seed, verbose=False)
        clf.fit(DATA / "train.tsv", val=DATA / "dev.tsv")
        seconds = time.perf_counter() - start
    return clf.metrics_["accuracy"], clf.metrics_["macro_f1"], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--strategies", default="linear-probe,tfidf")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} is not there; this benchmark needs ../shared/data/sst2.")
    print(f"SST-2, {args.per_class} labels per class, dev.tsv (872) as the test set")
    print("| strategy | seeds | dev accuracy | dev macro F1 | wall s per fit |")
    print("|---|---:|---:|---:|---:|")
    for strategy in args.strategies.split(","):
        runs = [fit(strategy, args.per_class, seed) for seed in range(args.seeds)]
        accuracy = [r[0] for r in runs]
        spread = f" ± {statistics.stdev(accuracy):.3f}" if len(runs) > 1 else ""
        print(
            f"| {strategy} | {len(runs)} | {statistics.mean(accuracy):.3f}{spread} "
            f"| {statistics.mean(r[1] for r in runs):.3f} "
            f"| {statistics.mean(r[2] for r in runs):.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
