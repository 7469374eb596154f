"""Object detection on the raccoon set: the two transfer routes and from-scratch, side by side.

    python bench/detect.py                                  # every part
    python bench/detect.py --parts routes --budget 1200     # 20 minutes per route
    python bench/detect.py --parts few,speed

Split: images 1-160 train, 161-200 test (the data README's). Every fit holds out 15% of its
training images (24 of 160; 3 of 20) for choosing the best epoch; the test images are only scored
at the end.
Parts:
- routes: yolox_nano (COCO-pretrained, class convs replaced) fine-tuned; FCOS + FPN on the
  bundled efficientnet_lite0; the YOLOX-Nano architecture from random weights (the control).
  Each trains for --budget seconds (epochs run until the budget ends; the LR anneals in time).
- strategies: head-only, freeze-unfreeze and fine-tune on yolox_nano, --strategy-budget each.
- few: 20 training images (1-20), yolox_nano fine-tuned against from-scratch, --few-budget.
- speed: images per second at 416, batch 1, on CPU, for both trained routes (decode excluded,
  letterbox included), after a warm-up.
The COCO weights come from ../shared/data/weights (as `--weights FILE`; users run `headstart
fetch yolox_nano`).
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

RACCOON = DATA / "raccoon"
YOLOX_ONNX = DATA / "weights" / "yolox_nano" / "yolox_nano.onnx"


def split_folders(root: Path) -> tuple[Path, Path, Path]:
    """(train 1-160, few 1-20, test 161-200) as VOC folders of links."""
    parts = {"train": range(1, 161), "few": range(1, 21), "test": range(161, 201)}
    out = []
    for name, numbers in parts.items():
        folder = root / name
        for sub in ("images", "annotations"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for n in numbers:
            for sub, suffix in (("images", "jpg"), ("annotations", "xml")):
                link = folder / sub / f"raccoon-{n}.{suffix}"
                if not link.exists():
                    link.symlink_to(RACCOON / sub / f"raccoon-{n}.{suffix}")
        out.append(folder)
    return tuple(out)


def fit(train: Path, test: Path, model: str, strategy: str, budget: float, val: float = 0.15):
    from headstart.estimators import ObjectDetector

    est = ObjectDetector(
        model=model,
        strategy=strategy,
        epochs=10_000,  # the budget ends training
        budget=budget,
        weights=str(YOLOX_ONNX) if model == "yolox_nano" else None,
        val_fraction=val,
        verbose=False,
    )
    started = time.perf_counter()
    est.fit(train)
    seconds = time.perf_counter() - started
    metrics = est.evaluate(test)
    info = est.fit_info_
    row = {
        "model": model if model == "yolox_nano" else f"fcos on {model}",
        "strategy": strategy,
        "map50": metrics["map50"],
        "map": metrics["map"],
        "val_map50": info["best_val_map50"] if val else float("nan"),
        "epochs": info["epochs_run"],
        "best_epoch": info["best_epoch"],
        "train_s": info["train_seconds"],
        "fit_s": round(seconds, 1),
    }
    print(
        f"  {row['model']:<26} {strategy:<16} test mAP@0.5 {row['map50']:.3f}  "
        f"mAP {row['map']:.3f}  (val {row['val_map50']:.3f}; {row['epochs']} epochs, best "
        f"{row['best_epoch']}; train {row['train_s']:.0f} s)",
        flush=True,
    )
    return est, row


def table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print("| route | strategy | test mAP@0.5 | test mAP@[.5:.95] | epochs | train s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['strategy']} | {r['map50']:.3f} | {r['map']:.3f} | "
            f"{r['epochs']} | {r['train_s']:.0f} |"
        )
    print(flush=True)


def speed(estimators: dict, test: Path, runs: int = 40) -> None:
    from headstart.data.boxes import read_detection
    from headstart.engine.detection import decode_image, detect_images

    items = read_detection(test).items[:runs]
    images = [decode_image(i.path) for i in items]
    print("\nInference, batch 1, CPU, 416 px (letterbox + model + decode, no JPEG decoding)")
    print("| route | images/s | ms/image |")
    print("|---|---|---|")
    for name, est in estimators.items():
        size = est.detector_spec_["size"]
        detect_images(est.detector_, images[:3], size, 0.3)  # warm-up
        started = time.perf_counter()
        for image in images:
            detect_images(est.detector_, [image], size, 0.3)
        seconds = (time.perf_counter() - started) / len(images)
        print(f"| {name} | {1 / seconds:.1f} | {seconds * 1000:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="routes,few,speed,strategies")
    parser.add_argument("--budget", type=float, default=1200, help="seconds per route")
    parser.add_argument("--fcos-budget", type=float, default=None, help="default: --budget")
    parser.add_argument("--few-budget", type=float, default=300)
    parser.add_argument("--strategy-budget", type=float, default=300)
    args = parser.parse_args()
    if not RACCOON.is_dir() or not YOLOX_ONNX.is_file():
        sys.exit(f"needs {RACCOON} and {YOLOX_ONNX} (../shared/data)")
    torch.set_num_threads(os.cpu_count() or 2)
    parts = set(args.parts.split(","))
    scratch = tempfile.TemporaryDirectory(prefix="bench-detect-")
    train, few, test = split_folders(Path(scratch.name))
    print(
        f"raccoon: train 1-160, test 161-200; {os.cpu_count()} CPU threads; "
        f"torch {torch.__version__}"
    )
    trained = {}
    if "routes" in parts:
        print(
            f"\nroutes, {args.budget:.0f} s of training each "
            f"(FCOS: {args.fcos_budget or args.budget:.0f} s)"
        )
        rows = []
        est, row = fit(train, test, "yolox_nano", "fine-tune", args.budget)
        trained["yolox_nano (COCO)"] = est
        rows.append(row)
        est, row = fit(
            train, test, "efficientnet_lite0", "fine-tune", args.fcos_budget or args.budget
        )
        trained["fcos on efficientnet_lite0"] = est
        rows.append(row)
        rows.append(fit(train, test, "yolox_nano", "from-scratch", args.budget)[1])
        table("Raccoon, 160 training images", rows)
    if "few" in parts:
        print(f"\nfew: 20 training images, {args.few_budget:.0f} s each")
        rows = [
            fit(few, test, "yolox_nano", s, args.few_budget)[1]
            for s in ("fine-tune", "from-scratch")
        ]
        table("Raccoon, 20 training images", rows)
    if "speed" in parts:
        if not trained:
            for model in ("yolox_nano", "efficientnet_lite0"):
                trained[model] = fit(few, test, model, "fine-tune", 20)[0]
        speed(trained, test)
    if "strategies" in parts:
        print(f"\nstrategies on yolox_nano, {args.strategy_budget:.0f} s each")
        rows = [
            fit(train, test, "yolox_nano", s, args.strategy_budget)[1]
            for s in ("head-only", "freeze-unfreeze", "fine-tune")
        ]
        table("Raccoon, 160 training images, strategies", rows)


if __name__ == "__main__":
    main()
