"""`auto` against the best strategy of the compare grid, and the issue's targets, on 2 CPU cores.

    python bench/auto.py [--part hymenoptera|sst2|all] [--seeds 3] [--grid-out DIR]
                         [--budget-image 2m] [--budget-text 5m] [--rows 4000 --rows-budget 10m]

For every shared data set at every labels-per-class size of bench/compare.py's grid, and every
seed: `auto` (model and strategy, `fit --per-class K --seed S --budget B` with no validation
data: its own split or cross-validation, as a user's fit runs) is fitted on the training data
and scored once on the test set. Beside it, the grid: every strategy of bench/compare.py at the
same sizes and seeds, measured on this machine (run now, or reused from --grid-out's
results.csv when bench/compare.py already ran there with this code). Each auto fit starts with
an empty embedding cache, so its wall time includes building every candidate backbone and
embedding the data with each.

--rows N: N random training rows of SST-2 (seeded) with --rows-budget, the issue's 4,000-row
target. Prints a table per part and a table of auto's choices with their times.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA  # noqa: E402
from compare import PARTS  # noqa: E402

FIELDS = ["part", "size", "seed", "budget_s", "accuracy", "wall_s", "model", "strategy", "kept"]


def grid_means(results: Path) -> dict:
    """{(strategy, size): [accuracy per seed]} from a compare results.csv."""
    found: dict = {}
    with results.open() as handle:
        for row in csv.DictReader(handle):
            if row["status"] == "ok":
                key = (row["strategy"], str(row["per_class"]))
                found.setdefault(key, []).append(float(row["accuracy"]))
    return found


def run_grid(name: str, out: Path, seeds: int) -> dict:
    """bench/compare.py's part (resumes from out/results.csv), then its accuracies."""
    from compare import run_part

    args = argparse.Namespace(strategies="", per_class="", seeds=seeds, epochs=3, keep_cache=False)
    folder = out / name
    if not (folder / "report.md").exists():
        run_part(name, args, folder)
    return grid_means(folder / "results.csv")


def fit_auto(train, test, size, seed: int, budget: str, model: str = "") -> dict:
    from headstart.compare.grid import estimator_for

    cls = estimator_for(train.modality)
    est = cls(model=model, strategy="auto", per_class=size, seed=seed, budget=budget, verbose=False)
    with tempfile.TemporaryDirectory(prefix="bench-auto-cache-") as cache:
        os.environ["HEADSTART_CACHE"] = cache  # a cold start: every backbone built, all embedded
        started = time.perf_counter()
        est.fit(train)
        wall = time.perf_counter() - started
        accuracy = est.evaluate(test)["accuracy"]
    check = (est.fit_info_.get("auto") or {}).get("check") or {}
    return {
        "accuracy": accuracy,
        "wall_s": round(wall, 1),
        "model": est.backbone_.name if est.backbone_ is not None else "-",
        "strategy": est.strategy_name_,
        "kept": check.get("kept", "-"),
        "plan": (est.fit_info_.get("auto") or {}).get("plan", "-"),
    }


def budget_for(modality: str, args) -> str:
    return args.budget_image if modality == "image" else args.budget_text


def run_part(name: str, args, writer, rows: list) -> None:
    from headstart.auto.budget import parse_budget
    from headstart.data.sources import read_source

    part = PARTS[name]
    grid = run_grid(name, args.grid_out, args.seeds)
    train = read_source(part["data"])
    test = read_source(part["val"])
    budget = budget_for(train.modality, args)
    sizes = part["per_class"].split(",")
    print(f"\n## {name}: auto with --budget {budget} against the grid ({args.seeds} seeds)")
    for size in sizes:
        for seed in range(args.seeds):
            per_class = None if size == "all" else int(size)
            found = fit_auto(train, test, per_class, seed, budget)
            row = {"part": name, "size": size, "seed": seed, "budget_s": parse_budget(budget)}
            row.update(found)
            writer.writerow({k: row[k] for k in FIELDS})
            rows.append(row)
            print(
                f"{name} {size}/class seed {seed}: {found['model']} + {found['strategy']} "
                f"(planned {found['plan']}, kept {found['kept']}): accuracy "
                f"{found['accuracy']:.3f} in {found['wall_s']:.0f} s",
                flush=True,
            )
    print_part(name, sizes, grid, [r for r in rows if r["part"] == name])


def print_part(name: str, sizes, grid: dict, rows: list) -> None:
    print(
        f"\n| {name} | best of the grid (mean) | auto (mean) | auto - best | "
        "auto wall max / budget |"
    )
    print("|---|---|---:|---:|---:|")
    for size in sizes:
        best = max(
            ((s, statistics.fmean(v)) for (s, k), v in grid.items() if k == size),
            key=lambda pair: pair[1],
        )
        mine = [r for r in rows if r["size"] == size]
        mean = statistics.fmean(r["accuracy"] for r in mine)
        wall = max(r["wall_s"] for r in mine)
        print(
            f"| {size}/class | {best[0]} {best[1]:.3f} | {mean:.3f} | {100 * (mean - best[1]):+.1f}"
            f" pts | {wall:.0f} s / {mine[0]['budget_s']:.0f} s |"
        )


def run_rows(args, writer, rows: list) -> None:
    """N random SST-2 rows with the rows budget: the issue's 4,000-row target."""
    from headstart.auto.budget import parse_budget
    from headstart.data.sources import Source, read_source

    full = read_source(DATA / "sst2" / "train.tsv")
    test = read_source(DATA / "sst2" / "dev.tsv")
    print(f"\n## sst2, {args.rows} random rows, --budget {args.rows_budget}")
    for seed in range(args.row_seeds):
        picked = random.Random(seed).sample(full.items, args.rows)
        train = Source(full.modality, picked, origin=f"{args.rows} random rows")
        found = fit_auto(train, test, None, seed, args.rows_budget)
        row = {"part": f"sst2-{args.rows}", "size": "rows", "seed": seed}
        row.update(found, budget_s=parse_budget(args.rows_budget))
        writer.writerow({k: row[k] for k in FIELDS})
        rows.append(row)
        print(
            f"sst2 {args.rows} rows seed {seed}: {found['model']} + {found['strategy']} "
            f"(planned {found['plan']}, kept {found['kept']}): accuracy {found['accuracy']:.3f} "
            f"in {found['wall_s']:.0f} s",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=[*PARTS, "all", "none"], default="all")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--grid-out", type=Path, default=Path(tempfile.gettempdir()) / "bench-compare"
    )
    parser.add_argument("--budget-image", default="2m")
    parser.add_argument("--budget-text", default="5m")
    parser.add_argument("--rows", type=int, default=0, help="N random SST-2 rows (0: skip)")
    parser.add_argument("--rows-budget", default="10m")
    parser.add_argument("--row-seeds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "bench-auto.csv")
    args = parser.parse_args()
    import torch

    print(f"{torch.get_num_threads()} threads; results also in {args.out}")
    rows: list = []
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        parts = list(PARTS) if args.part == "all" else ([] if args.part == "none" else [args.part])
        for name in parts:
            run_part(name, args, writer, rows)
        if args.rows:
            run_rows(args, writer, rows)
    print(
        "\n| data | size | seed | model | strategy (planned) | kept | accuracy | wall s | "
        "budget s |"
    )
    print("|---|---|---:|---|---|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['part']} | {r['size']} | {r['seed']} | {r['model']} | {r['strategy']} "
            f"({r['plan']}) | {r['kept']} | {r['accuracy']:.3f} | {r['wall_s']:.0f} | "
            f"{r['budget_s']:.0f} |"
        )


if __name__ == "__main__":
    main()
