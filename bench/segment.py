"""Segmentation on ISBI 2012 electron microscopy: transfer against from-scratch, side by side.

    python bench/segment.py                                 # every part
    python bench/segment.py --parts main --budget 900       # 15 minutes per fit
    python bench/segment.py --parts few,speed

Split: slices 0-23 train, 24-29 test (the data README's); classes membrane (0) and cell (255).
Every fit trains on all its slices (val_fraction 0: with so few slices the annealed last epoch is
kept rather than an epoch chosen on two or three held-out slices); the test slices are only scored
at the end.
Parts:
- main: a U-Net decoder on the bundled efficientnet_lite0 encoder, fine-tuned, against the same
  architecture from random weights, --budget seconds each.
- few: 4 training slices (0-3), the transfer strategies and from-scratch, --few-budget each.
- speed: seconds to segment one 512x512 slice on CPU (tiles, blending, argmax), after a warm-up.
Pixel error is 1 - pixel accuracy (the U-Net paper's 0.0611 is on the challenge's test volume).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import DATA

ISBI = DATA / "isbi_em"
CLASSES = ["membrane", "cell"]
MODEL = ["efficientnet_lite0"]  # the encoder (--model)


def split_folders(root: Path) -> dict[str, Path]:
    """{train 0-23, few 0-3, test 24-29} as image/ + label/ folders of links."""
    parts = {"train": range(0, 24), "few": range(0, 4), "test": range(24, 30)}
    out = {}
    for name, numbers in parts.items():
        folder = root / name
        for sub in ("image", "label"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            for n in numbers:
                link = folder / sub / f"{n}.png"
                if not link.exists():
                    link.symlink_to(ISBI / sub / f"{n}.png")
        out[name] = folder
    return out


def fit(train: Path, test: Path, strategy: str, budget: float, **extra):
    extra.setdefault("model", MODEL[0])
    from headstart.estimators import Segmenter

    est = Segmenter(
        strategy=strategy,
        epochs=100_000,  # the budget ends training
        budget=budget,
        val_fraction=0,
        classes=CLASSES,
        verbose=False,
        **extra,
    )
    est.fit(train)
    est.tta = True
    with_tta = est.evaluate(test)
    est.tta = False
    metrics = est.evaluate(test)
    per = metrics["per_class"]
    info = est.fit_info_
    row = {
        "tta_pixel_error": with_tta["pixel_error"],
        "tta_dice_membrane": with_tta["per_class"]["membrane"]["dice"],
        "strategy": strategy,
        "pixel_error": metrics["pixel_error"],
        "dice_cell": per["cell"]["dice"],
        "dice_membrane": per["membrane"]["dice"],
        "dice_mean": (per["cell"]["dice"] + per["membrane"]["dice"]) / 2,
        "iou_cell": per["cell"]["iou"],
        "epochs": info["epochs_run"],
        "train_s": info["train_seconds"],
    }
    print(
        f"  {strategy:<16} pixel error {row['pixel_error']:.4f}  Dice cell {row['dice_cell']:.4f} "
        f"membrane {row['dice_membrane']:.4f}  (with flip TTA: pixel error "
        f"{row['tta_pixel_error']:.4f}, Dice membrane {row['tta_dice_membrane']:.4f}; "
        f"{row['epochs']} epochs, {row['train_s']:.0f} s)",
        flush=True,
    )
    return est, row


def table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(
        "| strategy | pixel error | Dice cell | Dice membrane | Dice mean | with TTA: pixel "
        "error | Dice membrane | epochs | train s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['strategy']} | {r['pixel_error']:.4f} | {r['dice_cell']:.4f} | "
            f"{r['dice_membrane']:.4f} | {r['dice_mean']:.4f} | {r['tta_pixel_error']:.4f} | "
            f"{r['tta_dice_membrane']:.4f} | {r['epochs']} | {r['train_s']:.0f} |"
        )
    print(flush=True)


def speed(est, test: Path) -> None:
    from headstart.data.masks import read_segmentation

    items = read_segmentation(test, classes=CLASSES).items
    print("\nPrediction of one 512x512 slice, CPU (PNG decode, tiles, blending, argmax)")
    print("| model | s/slice | slices/s |")
    print("|---|---|---|")
    for tta in (False, True):
        est.tta = tta
        est.predict([items[0].path])  # warm-up
        started = time.perf_counter()
        for item in items:
            est.predict([item.path])
        seconds = (time.perf_counter() - started) / len(items)
        name = f"U-Net on {MODEL[0]}" + (", flip TTA (4 passes)" if tta else "")
        print(f"| {name} | {seconds:.3f} | {1 / seconds:.1f} |", flush=True)
    est.tta = False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="main,few,speed")
    parser.add_argument("--budget", type=float, default=900.0)
    parser.add_argument("--few-budget", type=float, default=180.0)
    parser.add_argument("--few-strategies", default="fine-tune,head-only,freeze-unfreeze")
    parser.add_argument("--scratch", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--model", default="efficientnet_lite0", help="the encoder")
    args = parser.parse_args()
    if not ISBI.is_dir():
        sys.exit(f"ISBI EM data not found at {ISBI}")
    torch.set_num_threads(os.cpu_count() or 1)
    parts = set(args.parts.split(","))
    MODEL[0] = args.model
    print(
        f"CPU threads: {torch.get_num_threads()}; encoder {args.model}; budgets: main "
        f"{args.budget:.0f} s, few {args.few_budget:.0f} s",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as scratch:
        folders = split_folders(Path(scratch))
        trained = None
        if "main" in parts:
            print("\nISBI EM, slices 0-23 -> 24-29", flush=True)
            trained, row = fit(folders["train"], folders["test"], "fine-tune", args.budget)
            rows = [row]
            if args.scratch:
                rows.append(fit(folders["train"], folders["test"], "from-scratch", args.budget)[1])
            table("ISBI EM, 24 training slices", rows)
        if "few" in parts:
            print("\nISBI EM, 4 training slices (0-3) -> 24-29", flush=True)
            rows = []
            for strategy in [*args.few_strategies.split(","), "from-scratch"]:
                rows.append(fit(folders["few"], folders["test"], strategy, args.few_budget)[1])
            table("ISBI EM, 4 training slices", rows)
        if "speed" in parts:
            if trained is None:
                trained, _ = fit(folders["few"], folders["test"], "fine-tune", 30)
            speed(trained, folders["test"])


if __name__ == "__main__":
    main()
