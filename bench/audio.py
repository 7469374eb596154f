"""Audio on FSDD (spoken digits, 6 speakers): headstart against its controls, side by side.

    python bench/audio.py                       # every part
    python bench/audio.py --parts digits,loso --seeds 5
    python bench/audio.py --parts speed         # cold / warm embedding, a 1-hour file's memory

Split: FSDD's standard one, recordings 0-4 of every speaker and digit are the test set (300
clips), 5-49 the training pool (2,700). Parts:
- digits: K clips per digit drawn (seeded) from the pool, test on the 300; headstart's
  linear probe on speech_embedding, the mfcc no-transfer control and a from-scratch CNN (the
  same network, random init, trained for --scratch-epochs within --scratch-budget) on the
  same draws. Frozen strategies choose C by cross-validation on the training clips alone.
- loso: leave one speaker out, all 500 clips of the other five speakers to train.
- speakers: who is speaking (6 classes), 5 clips per speaker from the pool, test on the 300:
  ge2e_speaker (after `headstart fetch ge2e_speaker`), speech_embedding and mfcc.
- rank: `headstart rank` on 10 clips per digit, every local audio backbone and the control.
- speed: `headstart embed` of all 3,000 clips with an empty cache, then again (warm); the mfcc
  features of the same clips as the baseline; a 1-hour file embedded with its peak memory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import DATA

FSDD = DATA / "fsdd" / "recordings"
HEADSTART = str(Path(sys.executable).with_name("headstart"))  # the installed command
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")


def clips() -> list[dict]:
    if not FSDD.is_dir():
        sys.exit(f"FSDD not found at {FSDD}: this benchmark needs ../shared/data/fsdd.")
    rows = []
    for path in sorted(FSDD.glob("*.wav")):
        digit, speaker, index = path.stem.split("_")
        rows.append({"path": path, "digit": digit, "speaker": speaker, "index": int(index)})
    return rows


def source(rows: list[dict], label: str):
    from headstart.data.sources import source_from_paths

    return source_from_paths([r["path"] for r in rows], [r[label] for r in rows], "audio")


def draw(pool: list[dict], label: str, k: int | None, seed: int) -> list[dict]:
    if k is None:
        return pool
    rng = np.random.default_rng(seed)
    picked = []
    for value in sorted({r[label] for r in pool}):
        rows = [r for r in pool if r[label] == value]
        picked += [rows[i] for i in rng.choice(len(rows), k, replace=False)]
    return picked


def fit_score(model: str, strategy: str, train, test, seed: int, **params) -> tuple[float, float]:
    from headstart.estimators import AudioClassifier

    start = time.perf_counter()
    clf = AudioClassifier(model, strategy, seed=seed, verbose=False, val_fraction=0.0, **params)
    clf.fit(train)
    accuracy = clf.evaluate(test)["accuracy"]
    return accuracy, time.perf_counter() - start


def summary(runs: list[tuple[float, float]]) -> str:
    acc = [a for a, _ in runs]
    spread = f" (worst {min(acc):.3f})" if len(acc) > 1 else ""
    return f"{statistics.mean(acc):.3f}{spread}, {statistics.mean(s for _, s in runs):.1f} s"


def digits(args, rows) -> None:
    pool = [r for r in rows if r["index"] >= 5]
    test = source([r for r in rows if r["index"] < 5], "digit")
    print("\n## Digits: K clips per digit, test on the 300 standard test clips")
    columns = "speech_embedding linear-probe | mfcc (no transfer) | from-scratch CNN"
    print(f"| clips/digit | draws | {columns} |")
    print("|---|---|---|---|---|")
    for k in args.sizes:
        draws = 1 if k is None else args.seeds
        found = {"probe": [], "mfcc": [], "scratch": []}
        for seed in range(draws):
            train = source(draw(pool, "digit", k, seed), "digit")
            found["probe"].append(fit_score("speech_embedding", "linear-probe", train, test, seed))
            found["mfcc"].append(fit_score("", "mfcc", train, test, seed))
            if seed < args.scratch_draws:
                found["scratch"].append(
                    fit_score(
                        "speech_embedding",
                        "from-scratch",
                        train,
                        test,
                        seed,
                        epochs=args.scratch_epochs,
                        budget=args.scratch_budget,
                    )
                )
        size = "all (2,700)" if k is None else str(k)
        cells = [summary(found[key]) if found[key] else "-" for key in ("probe", "mfcc", "scratch")]
        print(f"| {size} | {draws} | " + " | ".join(cells) + " |", flush=True)


def loso(args, rows) -> None:
    print("\n## Leave one speaker out (train on the other five speakers' 2,500 clips)")
    print("| held-out speaker | speech_embedding linear-probe | mfcc (no transfer) |")
    print("|---|---|---|")
    probe, mfcc = [], []
    for speaker in SPEAKERS:
        train = source([r for r in rows if r["speaker"] != speaker], "digit")
        test = source([r for r in rows if r["speaker"] == speaker], "digit")
        probe.append(fit_score("speech_embedding", "linear-probe", train, test, 0))
        mfcc.append(fit_score("", "mfcc", train, test, 0))
        print(f"| {speaker} | {probe[-1][0]:.3f} | {mfcc[-1][0]:.3f} |", flush=True)
    print(f"| **mean** | **{summary(probe)}** | {summary(mfcc)} |")


def speakers(args, rows) -> None:
    from headstart.zoo import get_entry

    pool = [r for r in rows if r["index"] >= 5]
    test = source([r for r in rows if r["index"] < 5], "speaker")
    models = ["speech_embedding"]
    if get_entry("ge2e_speaker").available_offline():
        models.insert(0, "ge2e_speaker")
    else:
        print("\n(ge2e_speaker is not fetched: run `headstart fetch ge2e_speaker` first)")
    print("\n## Who is speaking: 6 speakers, 5 clips per speaker, test on the 300")
    print("| backbone | linear-probe |")
    print("|---|---|")
    for model in [*models, "mfcc"]:
        runs = []
        for seed in range(args.seeds):
            train = source(draw(pool, "speaker", 5, seed), "speaker")
            if model == "mfcc":
                runs.append(fit_score("", "mfcc", train, test, seed))
            else:
                runs.append(fit_score(model, "linear-probe", train, test, seed))
        print(f"| {model} | {summary(runs)} |", flush=True)


def rank(args, rows, scratch: Path) -> None:
    pool = [r for r in rows if r["index"] >= 5]
    for label, per_class in (("digit", 10), ("speaker", 5)):
        folder = scratch / f"rank-{label}"
        for r in draw(pool, label, per_class, 0):
            link = folder / r[label] / r["path"].name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(r["path"])
        print(f"\n## `headstart rank` on {per_class} clips per {label}\n```")
        done = subprocess.run([HEADSTART, "rank", str(folder)], capture_output=True, text=True)
        print((done.stdout + done.stderr).strip())
        print("```", flush=True)


def speed(args, rows, scratch: Path) -> None:
    from headstart.featurisers.mfcc import MFCCFeaturiser

    seconds = sum(_duration(r["path"]) for r in rows)
    print(f"\n## Speed: all {len(rows)} clips, {seconds:.0f} s of audio, 2 cores")
    print("| what | wall s (whole command) | embedding s | x real time (embedding) | peak MB |")
    print("|---|---|---|---|---|")
    env = {**os.environ, "HEADSTART_CACHE": str(scratch / "cache")}
    for label in ("headstart embed, cold cache", "headstart embed, warm cache"):
        wall, inner, peak = _embed(FSDD, scratch / "fsdd.npz", env)
        print(f"| {label} | {wall:.2f} | {inner:.2f} | {seconds / inner:.0f} | {peak} |")
    start = time.perf_counter()
    MFCCFeaturiser(standardise=False).transform([r["path"] for r in rows])
    wall = time.perf_counter() - start
    print(
        f"| mfcc statistics (baseline, in process) | {wall:.2f} | {wall:.2f} | "
        f"{seconds / wall:.0f} | - |"
    )
    one = scratch / "one"
    one.mkdir()
    (one / rows[0]["path"].name).symlink_to(rows[0]["path"])
    wall, inner, peak = _embed(one, scratch / "one.npz", env, "--no-cache")
    print(
        f"| one clip (the process's floor: torch alone is ~500 MB) | {wall:.2f} | {inner:.2f} "
        f"| - | {peak} |"
    )
    long_file = _hour_file(scratch)
    wall, inner, peak = _embed(long_file.parent, scratch / "long.npz", env)
    print(
        f"| 1-hour file (48 kHz stereo, 691 MB), cold | {wall:.1f} | {inner:.1f} | "
        f"{3600 / inner:.0f} | {peak} |",
        flush=True,
    )


# runs `headstart embed` in a fresh process and reports that process's own peak memory
PEAK = """
import resource, sys
from headstart.cli import main
sys.argv = ["headstart", "embed", *sys.argv[1:]]
try:
    main()
finally:
    print("peak_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, file=sys.stderr)
"""


def _embed(folder: Path, out: Path, env: dict, *extra: str) -> tuple[float, float, int]:
    """(wall seconds of the command, seconds its embedding took, its peak MB)."""
    import re

    command = [sys.executable, "-c", PEAK, str(folder), "-o", str(out), *extra]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"embed failed: {done.stderr[-2000:]}")
    inner = float(re.search(r"items in ([0-9.]+) s", done.stderr + done.stdout).group(1))
    peak = int(re.search(r"peak_mb (\d+)", done.stderr).group(1))
    return wall, inner, peak


def _duration(path: Path) -> float:
    import soundfile as sf

    return sf.info(str(path)).duration


def _hour_file(scratch: Path) -> Path:
    """One hour of 48 kHz stereo 16-bit (FSDD digits with pauses), written block by block."""
    import soundfile as sf
    import soxr

    path = scratch / "long" / "hour.wav"
    path.parent.mkdir(parents=True)
    digits = [sf.read(str(p), dtype="float32")[0] for p in sorted(FSDD.glob("*_theo_1.wav"))]
    digits = [soxr.resample(d, 8000, 48000) for d in digits]
    with sf.SoundFile(str(path), "w", 48000, 2, "PCM_16") as out:
        written, index = 0, 0
        while written < 3600 * 48000:
            block = np.concatenate([digits[index % 10], np.zeros(24000, np.float32)])
            out.write(np.stack([block, 0.5 * block], axis=1))
            written, index = written + len(block), index + 1
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="speed,digits,loso,speakers,rank")
    parser.add_argument("--sizes", default="1,3,5,10,all")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--scratch-draws", type=int, default=1)
    parser.add_argument("--scratch-epochs", type=int, default=30)
    parser.add_argument("--scratch-budget", default="2m")
    args = parser.parse_args()
    args.sizes = [None if s == "all" else int(s) for s in args.sizes.split(",")]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = clips()
    with tempfile.TemporaryDirectory(prefix="headstart-bench-audio-") as scratch:
        scratch = Path(scratch)
        os.environ["HEADSTART_CACHE"] = str(scratch / "cache")
        parts = args.parts.split(",")
        for part, run in (("speed", speed), ("rank", rank)):
            if part in parts:
                run(args, rows, scratch)
        for part, run in (("digits", digits), ("loso", loso), ("speakers", speakers)):
            if part in parts:
                run(args, rows)


if __name__ == "__main__":
    main()
