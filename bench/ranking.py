"""Choosing before training: does `rank` pick what training all candidates would have picked?

    python bench/ranking.py [--datasets digits,lfw,hymenoptera,fsdd,sst2] [--quick]
                           [--epochs 2] [--skip-finetune] [--cap N]

Image data sets (train -> test): scikit-learn digits (8x8, split 50/50, seeded), scikit-image
lfw_subset (faces vs non-faces, 50/50), hymenoptera (train -> val), and FSDD spoken digits as
log-spectrogram images (speaker recordings with index 5-14 -> index 0-4, the standard test set).
Candidates: the bundled efficientnet_lite0/1/2, random-init copies (controls that must rank last,
saved to a file so the same weights are scored and trained) and the no-transfer control (pixels
+ logistic regression). SST-2: the cuts after each parameter group of minilm_l6, 200 training
sentences per class -> all of dev.tsv, against TF-IDF.

Measured in this run, per data set: ranking time (cold cache, then warm), the time to train every
candidate (linear probe from a cold cache; freeze-unfreeze for a few epochs), Kendall tau between
LogME and test accuracy, the regret of the top pick (best test accuracy minus the pick's, in
points), and whether the no-transfer verdict matches the test accuracies.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from common import DATA

LITES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
IMAGE_SETS = ("digits", "lfw", "hymenoptera", "fsdd")


@dataclass
class Outcome:
    name: str
    n_train: int
    n_test: int
    rank_cold: float = 0.0
    rank_warm: float = 0.0
    train_probe: float = 0.0
    train_finetune: float = 0.0
    rows: list[dict] = field(default_factory=list)  # candidate, logme, cv, probe, finetune
    raw_test: float = 0.0
    verdict_says_transfer_helps: bool | None = None
    pick: str = ""


# ---- data sets, written as class folders in a temporary directory ----------------------------


def write_png(folder: Path, name: str, pixels: np.ndarray) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(folder / f"{name}.png")


def split_arrays(images, labels, root: Path, seed: int = 0, cap: int | None = None):
    """50/50 stratified train/test class folders; at most `cap` per class on each side."""
    rng = np.random.default_rng(seed)
    for label in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == label))
        half = len(index) // 2
        for part, chosen in (("train", index[:half]), ("test", index[half:])):
            for i in chosen[:cap]:
                write_png(root / part / str(label), str(i), images[i])
    return root / "train", root / "test"


def digits(root: Path, cap):
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images * 255 / 16).round().astype(np.uint8)
    return split_arrays(images, d.target, root, cap=cap)


def lfw(root: Path, cap):
    from skimage import data

    images = (data.lfw_subset() * 255).round().astype(np.uint8)
    labels = np.array(["face"] * 100 + ["not-face"] * 100)
    return split_arrays(images, labels, root, cap=cap)


def hymenoptera(root: Path, cap):
    base = DATA / "hymenoptera_data"
    if cap is None:
        return base / "train", base / "val"
    for part, target in (("train", "train"), ("val", "test")):
        for folder in sorted((base / part).iterdir()):
            for path in sorted(folder.iterdir())[:cap]:
                (root / target / folder.name).mkdir(parents=True, exist_ok=True)
                (root / target / folder.name / path.name).symlink_to(path)
    return root / "train", root / "test"


def fsdd(root: Path, cap):
    """Log-magnitude spectrograms (64 x 64 grey) of the spoken digits; label = the digit."""
    from PIL import Image
    from scipy.io import wavfile
    from scipy.signal import spectrogram

    for path in sorted((DATA / "fsdd" / "recordings").glob("*.wav")):
        digit, _speaker, index = path.stem.split("_")
        part = "test" if int(index) < 5 else "train"
        per_speaker = 2 if cap is not None else (5 if part == "test" else 10)
        if int(index) - (0 if part == "test" else 5) >= per_speaker:
            continue
        rate, wave = wavfile.read(path)
        _, _, power = spectrogram(wave.astype(np.float64), fs=rate, nperseg=256, noverlap=192)
        db = np.log10(power[:96] + 1e-10)
        db = (db - db.min()) / max(db.max() - db.min(), 1e-9) * 255
        img = Image.fromarray(db[::-1].astype(np.uint8)).resize((64, 64), Image.BILINEAR)
        write_png(root / part / digit, path.stem, np.asarray(img))
    return root / "train", root / "test"


BUILDERS = {"digits": digits, "lfw": lfw, "hymenoptera": hymenoptera, "fsdd": fsdd}


# ---- image benchmark ---------------------------------------------------------------------------


def random_copy(model: str, folder: Path) -> Path:
    """A random-init copy as a weights file: scored and trained with the very same weights."""
    import torch
    from safetensors.torch import save_file

    from headstart.zoo import build

    torch.manual_seed(0)
    path = folder / f"random-{model}.safetensors"
    state = build(model, pretrained=False).model.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def fresh_cache(work: Path) -> str:
    folder = tempfile.mkdtemp(prefix="cache-", dir=work)
    os.environ["HEADSTART_CACHE"] = folder
    return folder


def image_benchmark(name: str, args, work: Path) -> Outcome:
    from headstart.data.sources import read_source
    from headstart.estimators import ImageClassifier
    from headstart.select.rank import Candidate, rank_models

    cap = args.cap or (15 if args.quick else None)
    train_dir, test_dir = BUILDERS[name](work / name, cap)
    train, test = read_source(train_dir), read_source(test_dir)
    lites = LITES[:2] if args.quick else LITES
    controls = LITES[:1] if args.quick else [LITES[0], LITES[2]]
    candidates = [Candidate(m) for m in lites]
    candidates += [Candidate(m, random_copy(m, work), pretrained=False) for m in controls]
    outcome = Outcome(name, len(train.items), len(test.items))

    fresh_cache(work)
    start = time.perf_counter()
    ranking = rank_models(train, candidates, workers=args.workers)
    outcome.rank_cold = time.perf_counter() - start
    start = time.perf_counter()
    rank_models(train, candidates, workers=args.workers)
    outcome.rank_warm = time.perf_counter() - start
    outcome.verdict_says_transfer_helps = ranking.transfer_helps
    outcome.pick = ranking.top.candidate

    fresh_cache(work)  # training pays for its own embeddings, as it would without a ranking
    by_label = {c.label: c for c in candidates}
    for row in ranking.rows:
        entry = {"candidate": row.candidate, "kind": row.kind, "logme": row.logme}
        entry["cv"] = row.cv_accuracy
        if row.kind == "no-transfer":
            start = time.perf_counter()
            clf = ImageClassifier(strategy="pixels", verbose=False).fit(train)
            outcome.raw_test = clf.evaluate(test)["accuracy"]
            outcome.train_probe += time.perf_counter() - start
            entry["probe"] = outcome.raw_test
            outcome.rows.append(entry)
            continue
        cand = by_label[row.candidate]
        params = {"model": cand.model, "weights": str(cand.weights) if cand.weights else None}
        start = time.perf_counter()
        clf = ImageClassifier(strategy="linear-probe", verbose=False, **params).fit(train)
        entry["probe"] = clf.evaluate(test)["accuracy"]
        entry["seconds"] = time.perf_counter() - start
        outcome.train_probe += entry["seconds"]
        if not (args.quick or args.skip_finetune):
            start = time.perf_counter()
            clf = ImageClassifier(
                strategy="freeze-unfreeze", epochs=args.epochs, verbose=False, **params
            ).fit(train)
            entry["finetune"] = clf.evaluate(test)["accuracy"]
            entry["seconds"] += time.perf_counter() - start
            outcome.train_finetune += time.perf_counter() - start
        outcome.rows.append(entry)
    return outcome


# ---- SST-2 layer cuts -----------------------------------------------------------------------


def sst2_benchmark(args, work: Path) -> Outcome:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from headstart.data.sources import read_source
    from headstart.estimators import TextClassifier
    from headstart.select.layers import layer_features, rank_layers
    from headstart.select.rank import Candidate

    per_class, n_test = (30, 200) if args.quick else (200, None)
    frame = pd.read_csv(DATA / "sst2" / "train.tsv", sep="\t")
    sample = frame.groupby("label", group_keys=False).sample(per_class, random_state=0)
    dev = pd.read_csv(DATA / "sst2" / "dev.tsv", sep="\t")
    dev = dev.sample(n_test, random_state=0) if n_test else dev
    (work / "sst2").mkdir(parents=True, exist_ok=True)
    sample.to_csv(work / "sst2" / "train.csv", index=False)
    dev.to_csv(work / "sst2" / "test.csv", index=False)
    train = read_source(work / "sst2" / "train.csv")
    test = read_source(work / "sst2" / "test.csv")
    outcome = Outcome("sst2 (minilm_l6 cuts)", len(train.items), len(test.items))
    cand = Candidate("minilm_l6")

    fresh_cache(work)
    start = time.perf_counter()
    ranking = rank_layers(train, cand)
    outcome.rank_cold = time.perf_counter() - start
    start = time.perf_counter()
    rank_layers(train, cand)
    outcome.rank_warm = time.perf_counter() - start
    outcome.verdict_says_transfer_helps = ranking.transfer_helps
    outcome.pick = ranking.top.candidate

    fresh_cache(work)
    start = time.perf_counter()
    tap, train_emb = layer_features(train, cand)
    _, test_emb = layer_features(test, cand)
    y_train = np.array([i.label for i in train_emb.items])
    y_test = np.array([i.label for i in test_emb.items])
    cuts, offset = {}, 0
    for name, dim in zip(tap.group_names, tap.dims, strict=True):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        probe.fit(train_emb.features[:, offset : offset + dim], y_train)
        cuts[name] = probe.score(test_emb.features[:, offset : offset + dim], y_test)
        offset += dim
    outcome.train_probe = time.perf_counter() - start
    start = time.perf_counter()
    clf = TextClassifier(strategy="tfidf", verbose=False).fit(train)
    outcome.raw_test = clf.evaluate(test)["accuracy"]
    outcome.train_probe += time.perf_counter() - start
    for row in ranking.rows:
        entry = {"candidate": row.candidate, "kind": row.kind, "logme": row.logme}
        entry["cv"] = row.cv_accuracy
        cut = row.candidate.rsplit("@", 1)[-1]
        entry["probe"] = outcome.raw_test if row.kind == "no-transfer" else cuts[cut]
        outcome.rows.append(entry)
    return outcome


# ---- report ---------------------------------------------------------------------------------


def summarise(outcome: Outcome) -> dict:
    from scipy.stats import kendalltau

    # tau over every backbone row (random copies included: they must rank last); regret and the
    # verdict over pre-trained ones only, which are what a user would pick from
    reused = [r for r in outcome.rows if r["kind"] != "no-transfer"]
    pretrained = [r for r in reused if r["kind"] != "random-init"]
    out = {}
    for key in ("probe", "finetune"):
        if not all(key in r for r in reused):
            continue
        tau = kendalltau([r["logme"] for r in reused], [r[key] for r in reused]).statistic
        pick = next(r[key] for r in reused if r["candidate"] == outcome.pick)
        best = max(r[key] for r in pretrained)
        truth = best > outcome.raw_test
        out[key] = {
            "tau": tau,
            "regret": 100 * (best - pick),
            "verdict_right": outcome.verdict_says_transfer_helps == truth,
            "truth": truth,
        }
    return out


def report(outcomes: list[Outcome]) -> None:
    print("\n## Per candidate (test accuracy)\n")
    print("| data set | candidate | LogME | quick cv acc | linear probe | freeze-unfreeze |")
    print("|---|---|---|---|---|---|")
    for o in outcomes:
        for r in o.rows:
            cv = f"{r['cv']:.3f}" if r["cv"] is not None else "-"
            ft = f"{r['finetune']:.3f}" if "finetune" in r else "-"
            cells = [o.name, r["candidate"], f"{r['logme']:.4f}", cv, f"{r['probe']:.3f}", ft]
            print("| " + " | ".join(cells) + " |")
    print("\n## Per data set\n")
    print(
        "| data set | train/test | rank s (cold / warm) | train all s (probe / fine-tune) | "
        "speed-up (cold) | rank + train the pick s | saved vs train all | pick | tau probe | "
        "regret probe (pts) | tau ft | regret ft (pts) | transfer helps? said / true (probe) | "
        "verdict right |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for o in outcomes:
        s = summarise(o)
        total = o.train_probe + o.train_finetune
        probe, ft = s.get("probe", {}), s.get("finetune", {})
        # the workflow rank offers: rank every candidate, then train only the top pick
        pick_s = next((r.get("seconds") for r in o.rows if r["candidate"] == o.pick), None)
        workflow = f"{o.rank_cold + pick_s:.1f}" if pick_s is not None else "-"
        saved = f"{total / (o.rank_cold + pick_s):.1f}x" if pick_s is not None else "-"
        print(
            f"| {o.name} | {o.n_train}/{o.n_test} | {o.rank_cold:.1f} / {o.rank_warm:.1f} | "
            f"{o.train_probe:.1f} / {o.train_finetune:.1f} | {total / o.rank_cold:.1f}x | "
            f"{workflow} | {saved} | "
            f"{o.pick} | {_f(probe.get('tau'))} | {_f(probe.get('regret'), 1)} | "
            f"{_f(ft.get('tau'))} | {_f(ft.get('regret'), 1)} | "
            f"{o.verdict_says_transfer_helps} / {probe.get('truth')} | "
            f"{probe.get('verdict_right')} |"
        )


def _f(value, digits: int = 2) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="digits,lfw,hymenoptera,fsdd,sst2")
    parser.add_argument("--quick", action="store_true", help="~15 per class, no fine-tuning")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--cap", type=int, default=0, help="at most N per class on each side")
    parser.add_argument("--skip-finetune", action="store_true")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HEADSTART_NO_PROGRESS", "1")
    import headstart.estimators  # noqa: F401  (imports are not part of any timing)
    import headstart.select  # noqa: F401

    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in names if n not in (*IMAGE_SETS, "sst2")]
    if unknown:
        sys.exit(f"unknown data sets {unknown}; choose from {', '.join((*IMAGE_SETS, 'sst2'))}")
    if any(n in ("hymenoptera", "fsdd", "sst2") for n in names) and not DATA.exists():
        sys.exit(f"needs {DATA}; not found")
    outcomes = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            started = time.perf_counter()
            work = Path(tmp)
            outcome = (
                sst2_benchmark(args, work) if name == "sst2" else image_benchmark(name, args, work)
            )
            outcomes.append(outcome)
            print(f"{name}: done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    report(outcomes)


if __name__ == "__main__":
    main()
