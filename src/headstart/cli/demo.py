"""`headstart demo`: the main job on real data that ships with scikit-image, fully offline.

lfw_subset: 100 faces and 100 non-faces (25 x 25 grey). With 5 labels per class, a linear probe
on frozen EfficientNet-Lite0 features against the same network trained from scratch on the same
split: what transfer buys when labels are few.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from .console import err, out

PER_CLASS = 5


def write_lfw(root: Path) -> tuple[Path, Path, Path]:
    """Class folders for the 200 lfw_subset images: seeded train (5 per class), val (10 per
    class, for early stopping) and test (the other 170)."""
    from PIL import Image
    from skimage import data

    images = data.lfw_subset()
    labels = np.array(["face"] * 100 + ["not-face"] * 100)
    rng = np.random.default_rng(0)
    split_of = np.full(200, "test", dtype=object)
    for name in ("face", "not-face"):
        chosen = rng.permutation(np.flatnonzero(labels == name))
        split_of[chosen[:PER_CLASS]] = "train"
        split_of[chosen[PER_CLASS : 3 * PER_CLASS]] = "val"
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / split_of[index] / label
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255).astype(np.uint8)).save(folder / f"{index:03d}.png")
    return root / "train", root / "val", root / "test"


def run_demo(epochs: int = 10) -> dict:
    from ..estimators import ImageClassifier

    with tempfile.TemporaryDirectory(prefix="headstart-demo-") as tmp:
        train, val, test = write_lfw(Path(tmp))
        err.print(
            f"lfw_subset faces vs non-faces: {2 * PER_CLASS} labelled images to train on, "
            f"{4 * PER_CLASS} to validate, {200 - 6 * PER_CLASS} held out for the test",
            markup=False,
        )
        results = {}
        model = ""  # auto picks it; from-scratch then trains the same network from random weights
        for strategy in ("auto", "from-scratch"):
            start = time.perf_counter()
            clf = ImageClassifier(model, strategy, epochs=epochs, seed=0, verbose=False)
            clf.fit(train, val=val)
            metrics = clf.evaluate(test)
            results[strategy] = (
                clf.strategy_name_,
                metrics["accuracy"],
                time.perf_counter() - start,
                clf.strategy_reason_,
                clf.backbone_.name,
            )
            model = clf.backbone_.name
    return results


def demo(epochs: int = 10) -> None:
    """Fit a face / non-face classifier from 5 labels per class; compare with from-scratch."""
    results = run_demo(epochs)
    from rich.table import Table

    table = Table("strategy", "held-out accuracy", "seconds")
    for name, accuracy, seconds, *_ in results.values():
        table.add_row(name, f"{accuracy:.3f}", f"{seconds:.1f}")
    out.print(table)
    chosen, accuracy, _, reason, model = results["auto"]
    scratch = results["from-scratch"][1]
    out.print(f"auto chose {chosen} on {model}: {reason}.", markup=False)
    out.print(
        f"Transfer: {accuracy:.3f} vs {scratch:.3f} from scratch on the same "
        f"{2 * PER_CLASS} labels ({accuracy - scratch:+.3f}).",
        markup=False,
    )
