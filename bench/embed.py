"""Feature-extraction throughput: headstart cold and warm cache against a plain baseline.

    python bench/embed.py [--repeats 3] [--bf16-check]

Images: all 398 hymenoptera images (train + val). Baseline: timm tf_efficientnet_lite0 with the
same weights in fp32, default memory format, PIL decode in one process, batch 32.
Text: 4,000 SST-2 training sentences (seeded sample). Baseline: SentenceTransformer.encode.
Every figure includes building the model; each side is measured in this same run; medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import DATA, plain_lite0

HYMENOPTERA = DATA / "hymenoptera_data"
SST2 = DATA / "sst2" / "train.tsv"


def image_files() -> list[Path]:
    from headstart.data.images import is_image_path

    return sorted(p for p in HYMENOPTERA.rglob("*") if p.is_file() and is_image_path(p))


def baseline_images(files: list[Path]) -> float:
    """The plain recipe: items/s including model build."""
    import torch
    from PIL import Image

    start = time.perf_counter()
    model, transform = plain_lite0()
    with torch.inference_mode():
        for i in range(0, len(files), 32):
            batch = torch.stack(
                [transform(Image.open(f).convert("RGB")) for f in files[i : i + 32]]
            )
            model(batch)
    return len(files) / (time.perf_counter() - start)


def headstart_run(source, model: str, cache_dir: str, **options) -> tuple[float, object]:
    from headstart.features.cache import EmbeddingCache
    from headstart.features.extract import Extractor
    from headstart.zoo import load_backbone

    start = time.perf_counter()
    with EmbeddingCache(Path(cache_dir)) as cache:
        backbone = load_backbone(model, source.modality)  # built only on a cache miss
        result = Extractor(backbone, cache=cache, **options).run(source)
    return len(source.items) / (time.perf_counter() - start), result


def baseline_text(sentences: list[str]) -> float:
    from sentence_transformers import SentenceTransformer

    from headstart.zoo import get_entry

    start = time.perf_counter()
    model = SentenceTransformer(get_entry("minilm_l6").cfg.preprocess.tokenizer, device="cpu")
    model.encode(sentences, batch_size=32)
    return len(sentences) / (time.perf_counter() - start)


def sst2_sample(n: int = 4000, seed: int = 0) -> list[str]:
    import pandas as pd

    frame = pd.read_csv(SST2, sep="\t", quoting=3)
    return frame["sentence"].sample(n, random_state=seed).astype(str).tolist()


def measure(repeats: int, fn) -> float:
    return statistics.median(fn() for _ in range(repeats))


def cold_and_warm(source, model: str, repeats: int, **options) -> tuple[float, float]:
    colds, warms = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache_dir:
            rate, result = headstart_run(source, model, cache_dir, **options)
            assert result.stats.hits == 0, "cold run must start from an empty cache"
            colds.append(rate)
            rate, result = headstart_run(source, model, cache_dir, **options)
            assert result.stats.computed == 0, "warm run must be all cache hits"
            warms.append(rate)
    return statistics.median(colds), statistics.median(warms)


def bf16_check() -> tuple[float, float]:
    """Linear-probe val accuracy on hymenoptera with fp32 and with bf16 features."""
    from headstart.estimators import ImageClassifier

    scores = []
    for precision in ("fp32", "bf16"):
        clf = ImageClassifier(strategy="linear-probe", precision=precision, verbose=False)
        clf.fit(HYMENOPTERA / "train", val=HYMENOPTERA / "val")
        scores.append(clf.metrics_["accuracy"])
    return scores[0], scores[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--text-repeats",
        type=int,
        default=None,
        help="repeats for the text rows (default: --repeats)",
    )
    parser.add_argument(
        "--bf16-check",
        action="store_true",
        help="also compare linear-probe accuracy with fp32 and bf16 features",
    )
    args = parser.parse_args()
    if not HYMENOPTERA.exists():
        sys.exit(f"needs {DATA} (hymenoptera_data and sst2); not found")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from headstart.data.sources import source_from_paths, source_from_texts
    from headstart.features.speed import cpu_has_bf16, resolve_device, resolve_precision

    device = resolve_device("auto")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, native bf16 "
        f"{cpu_has_bf16()}, precision chosen: {resolve_precision('auto', device)}"
    )
    files = image_files()
    images = source_from_paths(files)
    rows = []
    base = measure(args.repeats, lambda: baseline_images(files))
    cold, warm = cold_and_warm(images, "efficientnet_lite0", args.repeats)
    rows += [
        (f"images ({len(files)} hymenoptera)", "baseline timm fp32 NCHW, 1 process", base, 1.0),
        ("", "headstart cold", cold, cold / base),
        ("", "headstart warm", warm, warm / base),
        ("", "warm / cold", None, warm / cold),
    ]
    texts = sst2_sample()
    text_source = source_from_texts(texts)
    text_repeats = args.text_repeats or args.repeats
    base_t = measure(text_repeats, lambda: baseline_text(texts))
    cold_t, warm_t = cold_and_warm(text_source, "minilm_l6", text_repeats)
    rows += [
        (f"text ({len(texts)} SST-2)", "baseline SentenceTransformer.encode", base_t, 1.0),
        ("", "headstart cold", cold_t, cold_t / base_t),
        ("", "headstart warm", warm_t, warm_t / base_t),
        ("", "warm / cold", None, warm_t / cold_t),
    ]
    print(f"\nmedians of {args.repeats} runs ({text_repeats} for text), model build included\n")
    print("| data | run | items/s | ratio |\n|---|---|---|---|")
    for data, run, rate, ratio in rows:
        shown = f"{rate:,.1f}" if rate is not None else ""
        print(f"| {data} | {run} | {shown} | {ratio:,.2f}x |")
    if args.bf16_check:
        fp32, bf16 = bf16_check()
        print(
            f"\nlinear probe, hymenoptera val accuracy: fp32 {fp32:.4f}, bf16 {bf16:.4f}, "
            f"difference {abs(fp32 - bf16) * 100:.2f} points"
        )


if __name__ == "__main__":
    main()
