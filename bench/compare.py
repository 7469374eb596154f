"""`headstart compare` on real data: what transfer buys against training from scratch.

    python bench/compare.py [--part hymenoptera|sst2|all] [--per-class 1,5] [--seeds 1]
                            [--strategies linear-probe] [--epochs 3] [--out DIR] [--keep-cache]

hymenoptera: train/ -> val/ (153 images, the test set), labels per class 1, 5, 10, all, 3 seeds;
linear-probe, freeze-unfreeze and from-scratch with the same 3-epoch budget, plus pixels (raw
pixels + logistic regression, the no-transfer baseline) where this version has it.
sst2: train.tsv -> dev.tsv (872 rows, the test set), 16 and 64 labels per class drawn from all
67,349 rows by each seed, 3 seeds; linear-probe, tfidf, freeze-unfreeze and from-scratch (3
epochs).

Each part starts with an empty embedding cache (unless --keep-cache), so its wall time includes
reading the data, building the backbones and embedding everything once. A part interrupted with
Ctrl+C resumes from its results.csv when run again with the same --out: the lead can run it in
pieces. Prints each cell, the total wall time, the mean accuracies and the report's sentences.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from common import DATA

PARTS = {
    "hymenoptera": {
        "data": DATA / "hymenoptera_data" / "train",
        "val": DATA / "hymenoptera_data" / "val",
        "per_class": "1,5,10,all",
        "strategies": ["linear-probe", "freeze-unfreeze", "from-scratch", "pixels"],
    },
    "sst2": {
        "data": DATA / "sst2" / "train.tsv",
        "val": DATA / "sst2" / "dev.tsv",
        "per_class": "16,64",
        "strategies": ["linear-probe", "tfidf", "freeze-unfreeze", "from-scratch"],
    },
}


def run_part(name: str, args, out: Path) -> None:
    from headstart.compare import compare
    from headstart.strategies import STRATEGIES

    part = PARTS[name]
    strategies = args.strategies.split(",") if args.strategies else part["strategies"]
    missing = [s for s in strategies if s not in STRATEGIES]
    if missing and not args.strategies:  # pixels arrives with the ranking work
        print(f"{name}: {', '.join(missing)} not in this version; left out", flush=True)
        strategies = [s for s in strategies if s in STRATEGIES]
    per_class = args.per_class or part["per_class"]
    print(f"\n## {name}: {', '.join(strategies)}; per class {per_class}; {args.seeds} seeds")
    print(f"out: {out}", flush=True)

    def say(done, total, cell, row):
        if row is None:
            return
        shown = row["status"] if row["status"] != "ok" else f"accuracy {row['accuracy']:.3f}"
        seconds = f", {row['train_seconds']:.1f} s" if row["status"] == "ok" else ""
        print(f"[{done}/{total}] {cell.label}: {shown}{seconds}", flush=True)

    started = time.perf_counter()
    result = compare(
        part["data"],
        out,
        val=part["val"],
        strategies=strategies,
        per_class=per_class,
        seeds=args.seeds,
        epochs=args.epochs,
        progress=say,
    )
    wall = time.perf_counter() - started
    print(
        f"{name}: total wall time {wall:.0f} s ({wall / 60:.1f} min) for {result.ran} cells "
        f"run now, {result.reused} reused from {out / 'results.csv'}"
    )
    print_means(out / "report.md")
    print("Findings:")
    for sentence in result.findings:
        print(f"- {sentence}")


def print_means(report: Path) -> None:
    """The report's accuracy table: the learning-curve figure's numbers."""
    lines = report.read_text().splitlines()
    after = lines[lines.index("## Test accuracy") + 1 :]
    first = next(i for i, line in enumerate(after) if line.startswith("|"))
    table = []
    for line in after[first:]:
        if not line.startswith("|"):
            break
        table.append(line)
    print("Mean test accuracy (lowest-highest over seeds):")
    print("\n".join(table))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=[*PARTS, "all"], default="all")
    parser.add_argument("--per-class", default="", help="override, e.g. 1,5")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--strategies", default="", help="override, comma-separated")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "bench-compare")
    parser.add_argument("--keep-cache", action="store_true", help="use HEADSTART_CACHE as is")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    names = list(PARTS) if args.part == "all" else [args.part]
    for name in names:
        if not PARTS[name]["data"].exists():
            sys.exit(f"needs {PARTS[name]['data']}; not found")
    import headstart.compare  # noqa: F401  (imports are not part of any timing)

    started = time.perf_counter()
    for name in names:
        if args.keep_cache:
            run_part(name, args, args.out / name)
            continue
        with tempfile.TemporaryDirectory(prefix="headstart-bench-cache-") as cache:
            os.environ["HEADSTART_CACHE"] = cache
            run_part(name, args, args.out / name)
    print(f"\nbench/compare.py total wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
