"""Text classification on SST-2: few labels per class, 4,000 random rows, and SetFit side by side.

    python bench/text.py [--per-class 8,16,64] [--seeds 5] [--strategies linear-probe,contrastive]
    python bench/text.py --rows 4000 --strategies fine-tune [--epochs 3]
    python bench/text.py --setfit --per-class 8,16 --seeds 5   # needs `pip install setfit`
    python bench/text.py --model mpnet_base --per-class 8,16,64 --seeds 5 \
        --strategies linear-probe,mlp-head,tfidf   # after `headstart fetch mpnet_base`

Training labels: K per class drawn with the estimator's seeded sampler from all of train.tsv, or
`--rows N` random rows (seeded); test set: all 872 rows of dev.tsv. Frozen and contrastive
strategies choose their regularisation by cross-validation on the training labels alone, so
dev.tsv only measures them. Strategies that train the encoder by epochs (fine-tune,
freeze-unfreeze, lora) hold out 10% of their training rows for early stopping instead, and dev.tsv
is used once, at the end. Each fit starts with an empty embedding cache, so its wall time includes
building the backbone and embedding every sentence it needs; reading train.tsv (67,349 rows) is
done once per process and is not timed.

`--setfit` runs SetFit 1.2 (SetFitModel.from_pretrained on the bundled MiniLM folder, its default
arguments: 1 epoch, batch 16, oversampled pairs, logistic-regression head; checkpoint saving
off) and headstart's
`contrastive` on the same draws, and times both from the texts in memory to dev predictions.
SetFit is not a headstart dependency: install it into a separate benchmark environment only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
from common import DATA as SHARED

DATA = SHARED / "sst2"
TRAINED_BY_EPOCHS = ("fine-tune", "freeze-unfreeze", "gradual", "lora", "from-scratch")


def read(split: str):
    from headstart.data.sources import read_source

    return read_source(DATA / f"{split}.tsv")


def random_rows(source, n: int, seed: int):
    rng = np.random.default_rng(seed)
    keep = sorted(rng.permutation(len(source.items))[:n].tolist())
    return replace(source, items=[source.items[i] for i in keep])


def headstart_fit(strategy: str, train, test, seed: int, model: str, **params) -> dict:
    """One cold fit (empty cache) and its dev accuracy; seconds include predicting dev."""
    from headstart.estimators import TextClassifier

    with tempfile.TemporaryDirectory(prefix="headstart-bench-cache-") as cache:
        os.environ["HEADSTART_CACHE"] = cache
        start = time.perf_counter()
        clf = TextClassifier(model, strategy, seed=seed, verbose=False, **params)
        if strategy.split(":")[0] in TRAINED_BY_EPOCHS:
            clf.fit(train)  # early stopping on a held-out 10% of the training rows
            metrics = clf.evaluate(test)
        else:
            clf.fit(train, val=test)  # val only measured: nothing is chosen on it
            metrics = clf.metrics_
        seconds = time.perf_counter() - start
    epochs = sum(h["epoch"] > 0 for h in getattr(clf, "history_", []) or [])  # 0: the start
    return {"accuracy": metrics["accuracy"], "f1": metrics["macro_f1"], "s": seconds, "ep": epochs}


def setfit_fit(train, test, seed: int) -> dict:
    """SetFit 1.2 with its defaults on the bundled MiniLM folder, from texts to dev predictions."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from sklearn.metrics import f1_score

    from headstart.zoo import get_entry
    from headstart.zoo.entry import locate_weights

    folder = locate_weights(get_entry("minilm_l6").cfg.weights)
    texts = [i.text for i in train.items]
    labels = [i.label for i in train.items]
    with tempfile.TemporaryDirectory(prefix="setfit-bench-") as scratch:
        start = time.perf_counter()
        model = SetFitModel.from_pretrained(str(folder))
        # no checkpoint writing: SetFit's time is its training and prediction alone
        args = TrainingArguments(
            output_dir=scratch,
            batch_size=16,
            num_epochs=1,
            seed=seed,
            report_to="none",
            save_strategy="no",
        )
        data = Dataset.from_dict({"text": texts, "label": labels})
        Trainer(model=model, args=args, train_dataset=data).train()
        predicted = [str(p) for p in model.predict([i.text for i in test.items])]
        seconds = time.perf_counter() - start
    truth = [i.label for i in test.items]
    accuracy = float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))
    f1 = float(f1_score(truth, predicted, average="macro"))
    return {"accuracy": accuracy, "f1": f1, "s": seconds, "ep": 1}


def row(name: str, size: str, runs: list[dict]) -> str:
    accuracy = [r["accuracy"] for r in runs]
    spread = f" ± {statistics.stdev(accuracy):.3f}" if len(runs) > 1 else ""
    return (
        f"| {name} | {size} | {len(runs)} | {statistics.mean(accuracy):.3f}{spread} "
        f"| {min(accuracy):.3f} | {statistics.mean(r['f1'] for r in runs):.3f} "
        f"| {statistics.mean(r['s'] for r in runs):.1f} |"
    )


def run_grid(sizes, seeds, runners: dict[str, Callable], draw) -> None:
    print(
        "| strategy | training labels | seeds | dev accuracy (mean ± sd) | worst | macro F1 "
        "| wall s per fit |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for size in sizes:
        for name, runner in runners.items():
            runs = [runner(draw(size, seed), seed) for seed in range(seeds)]
            print(row(name, size_label(size), runs), flush=True)


def size_label(size) -> str:
    return f"{size[1]} random rows" if size[0] == "rows" else f"{size[1]} per class"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", default="16", help="comma list, e.g. 8,16,64")
    parser.add_argument("--rows", type=int, default=0, help="N random training rows instead")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--strategies", default="linear-probe,tfidf")
    parser.add_argument("--epochs", type=int, default=3, help="for strategies trained by epochs")
    parser.add_argument("--setfit", action="store_true", help="SetFit 1.2 beside contrastive")
    parser.add_argument("--model", default="minilm_l6", help="headstart's encoder (hf:FOLDER...)")
    parser.add_argument("--lr", type=float, default=None, help="else each strategy's default")
    parser.add_argument("--lr-decay", type=float, default=None, help="layer-wise, e.g. 0.9")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} is not there; this benchmark needs ../shared/data/sst2.")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from headstart.data.split import per_class

    train, test = read("train"), read("dev")
    if args.rows:
        sizes = [("rows", args.rows)]
    else:
        sizes = [("per_class", int(k)) for k in args.per_class.split(",")]

    def draw(size, seed):
        kind, n = size
        return random_rows(train, n, seed) if kind == "rows" else per_class(train, n, seed)

    strategies = ["contrastive"] if args.setfit else args.strategies.split(",")
    runners: dict[str, Callable] = {}
    for strategy in strategies:
        params = {"lr": args.lr, "lr_decay": args.lr_decay}
        if strategy.split(":")[0] in TRAINED_BY_EPOCHS:
            params.update(epochs=args.epochs, val_fraction=0.1)
        runners[strategy] = lambda sub, seed, s=strategy, p=params: headstart_fit(
            s, sub, test, seed, args.model, **p
        )
    if args.setfit:
        runners["SetFit 1.2 (defaults)"] = lambda sub, seed: setfit_fit(sub, test, seed)
    threads = torch.get_num_threads()
    print(f"SST-2, dev.tsv ({len(test.items)}) as the test set; {args.model}; {threads} threads")
    run_grid(sizes, args.seeds, runners, draw)


if __name__ == "__main__":
    main()
