"""Image classification on hymenoptera (train -> val): every strategy against a plain baseline.

    python bench/classify.py [--epochs 5] [--seeds 5] [--skip-trainable]
    python bench/classify.py --only-trainable --model efficientnet_lite1

Baseline (measured in this run): timm tf_efficientnet_lite0 with the same weights in fp32, PIL
decode in one process, scikit-learn LogisticRegression on the features. headstart figures are
whole `ImageClassifier.fit` calls (model build included) with a cold or warm embedding cache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from common import DATA as SHARED
from common import plain_lite0

DATA = SHARED / "hymenoptera_data"


def baseline() -> tuple[float, float]:
    """(val accuracy, wall seconds) of the plain recipe, from image files to a fitted probe."""
    import numpy as np
    import torch
    from PIL import Image
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    model, transform = plain_lite0()

    def features(split: str):
        files = sorted(p for p in (DATA / split).rglob("*") if p.is_file())
        labels = [p.parent.name for p in files]
        out = []
        with torch.inference_mode():
            for i in range(0, len(files), 32):
                batch = [transform(Image.open(f).convert("RGB")) for f in files[i : i + 32]]
                out.append(model(torch.stack(batch)).numpy())
        return np.concatenate(out), labels

    x_train, y_train = features("train")
    x_val, y_val = features("val")
    clf = LogisticRegression(max_iter=2000).fit(x_train, y_train)
    accuracy = float((clf.predict(x_val) == np.array(y_val)).mean())
    return accuracy, time.perf_counter() - start


def fit(strategy: str, **params) -> tuple[float, float, object]:
    from headstart.estimators import ImageClassifier

    start = time.perf_counter()
    clf = ImageClassifier(strategy=strategy, verbose=False, **params)
    clf.fit(DATA / "train", val=DATA / "val")
    return clf.metrics_["accuracy"], time.perf_counter() - start, clf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--skip-trainable", action="store_true")
    parser.add_argument("--only-trainable", action="store_true", help="no baseline, no probes")
    parser.add_argument("--model", default="efficientnet_lite0", help="for the trainable rows")
    args = parser.parse_args()
    if not DATA.exists():
        sys.exit(f"needs {DATA}; not found")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import headstart.estimators  # noqa: F401  (imports are not part of any timing)

    rows = []
    if not args.only_trainable:
        rows += frozen_rows(args)
    if not args.skip_trainable:
        with tempfile.TemporaryDirectory() as cache:
            os.environ["HEADSTART_CACHE"] = cache
            for strategy in ("freeze-unfreeze", "from-scratch"):
                acc, secs, clf = fit(strategy, model=args.model, epochs=args.epochs)
                best = max((h.get("val_accuracy", 0) for h in clf.history_), default=0)
                trained = sum(h["epoch"] > 0 for h in clf.history_)  # epoch 0: the start
                note = f"{args.model}, {trained} epochs, best epoch val acc {best:.4f}"
                rows.append((f"{strategy}, {args.epochs} epochs max", acc, secs, note))
    print("\n| run | val accuracy | wall s | note |\n|---|---|---|---|")
    for name, acc, secs, note in rows:
        shown = f"{secs:.1f}" if secs is not None else ""
        print(f"| {name} | {acc:.4f} | {shown} | {note} |")


def frozen_rows(args) -> list[tuple]:
    rows = []
    base_acc, base_s = baseline()
    rows.append(("baseline: timm fp32 + PIL + LogisticRegression", base_acc, base_s, ""))
    with tempfile.TemporaryDirectory() as cache:
        os.environ["HEADSTART_CACHE"] = cache
        acc, secs, clf = fit("linear-probe")
        rows.append(("linear-probe, cold cache", acc, secs, f"{secs / base_s:.2f}x baseline time"))
        acc, secs, clf = fit("linear-probe")
        rows.append(("linear-probe, warm cache (whole fit)", acc, secs, ""))
        acc, secs, _ = fit("mlp-head")
        rows.append(("mlp-head, warm cache", acc, secs, ""))
        few = [fit("linear-probe", per_class=5, seed=s)[0] for s in range(args.seeds)]
        spread = f"min {min(few):.4f}, max {max(few):.4f}"
        rows.append(
            (
                f"linear-probe, 5 per class, {args.seeds} seeds (mean)",
                statistics.mean(few),
                None,
                spread,
            )
        )
    return rows


if __name__ == "__main__":
    main()
