"""Contrastive fine-tuning, SetFit-style: tune the encoder on pairs, then a linear probe on top.

Pairs of training texts with the same label (target cosine 1) and with different labels (target
0) are drawn with a seed. By default every unique pair is used once and the smaller kind is
oversampled to balance them (SetFit 1.x's default sampling); with `iterations=N`, N positive and
N negative pairs per example (SetFit 0.x's). Either way never more than `max_pairs` in all, and
pairs of large data are sampled without listing them all, so time and memory stay flat however
large the data. The whole encoder trains on them for one epoch (AdamW, lr 2e-5, batch 16, linear
warm-up then decay) with the cosine-similarity loss on its pooled (normalised) embeddings; then
the training texts are embedded with the tuned encoder and a linear probe is fitted on them, as
for linear-probe. The tuned encoder is saved like any trained backbone.

    TextClassifier("minilm_l6", strategy="contrastive:max_pairs=20000").fit(...)
"""

from __future__ import annotations

import math
import sys
import time
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import HeadstartError
from ..zoo.backbone import Backbone
from .base import Strategy
from .lora import check_text


class Contrastive(Strategy):
    name = "contrastive"
    summary = "SetFit: tune the encoder on same/different-label pairs, then a linear probe"
    modalities = ("text",)
    tasks = ("classification",)
    task_hint = "single-label classification: pairs of texts share a class or not"
    default_lr = 2e-5
    options: ClassVar[dict[str, type]] = {
        "iterations": int,
        "max_pairs": int,
        "epochs": int,
        "batch": int,
        "warmup": float,
    }
    aliases: ClassVar[dict[str, str]] = {
        "num_iterations": "iterations",
        "pairs": "max_pairs",
        "batch_size": "batch",
    }
    example = "contrastive:iterations=20,max_pairs=20000,epochs=1,batch=16"

    def __init__(
        self,
        lr: float | None = None,
        lr_decay: float | None = None,
        *,
        iterations: int | None = None,
        max_pairs: int = 20_000,
        epochs: int = 1,
        batch: int = 16,
        warmup: float = 0.1,
    ):
        super().__init__(lr, lr_decay)
        bad_iterations = iterations is not None and iterations < 1
        if bad_iterations or max_pairs < 2 or epochs < 1 or batch < 1 or not 0 <= warmup < 1:
            raise HeadstartError(
                "contrastive needs iterations >= 1, max_pairs >= 2, epochs >= 1, batch >= 1 and "
                f"0 <= warmup < 1; got iterations={iterations}, max_pairs={max_pairs}, "
                f"epochs={epochs}, batch={batch}, warmup={warmup}."
            )
        self.iterations, self.max_pairs, self.epochs = iterations, max_pairs, epochs
        self.batch, self.warmup = batch, warmup
        self.info_: dict = {}
        self.stopped_at_budget = False

    def describe(self) -> dict:
        return {
            **super().describe(),
            "iterations": self.iterations,
            "max_pairs": self.max_pairs,
            "epochs": self.epochs,
            "batch": self.batch,
            "warmup": self.warmup,
        }

    def fit_info(self) -> dict:
        return dict(self.info_)

    # -- the Strategy interface ------------------------------------------------------------

    def estimate_seconds(self, costs, targets, n_val: int, epochs: int) -> float | None:
        """Its own epochs over the pairs, then the training and validation texts embedded."""
        pairs = make_pairs(np.asarray(targets), self.iterations, self.max_pairs, 0)
        return self.epochs * costs.pairs(len(pairs), self.batch, len(targets) + n_val)

    def fit(self, backbone, head, task, train, val, cfg, *, progress=None):
        """Tune `backbone` on pairs, then fit a linear probe on its new embeddings; the `head`
        given is not used. Returns (backbone, head, history)."""
        from ..data.sources import Source
        from ..features.extract import Extractor
        from ..zoo.entry import materialize
        from .frozen import LinearProbe

        backbone = materialize(backbone)
        check_text(backbone, self.name)
        if not task.one_class_per_item:
            raise HeadstartError(
                f"contrastive needs single-label classification (pairs share a label or not); "
                f"this task is {task.kind}. Use fine-tune or linear-probe."
            )
        labels = np.asarray(train.targets, dtype=np.int64)
        started = time.perf_counter()
        pairs = make_pairs(labels, self.iterations, self.max_pairs, cfg.seed)
        if not (pairs[:, 2] == 0).any():
            raise HeadstartError("contrastive needs at least two classes in the training data.")
        texts = [item.text for item in train.items]
        losses = self.tune(backbone, texts, pairs, cfg, progress)
        tuned = time.perf_counter() - started
        backbone.weight_id = "tuned-contrastive"  # never read or write the embedding cache
        source = Source("text", list(train.items), origin="training data")
        extractor = Extractor(
            backbone, precision=cfg.precision, device=cfg.device, workers=0, cache=None
        )
        features = extractor.run(source).features
        backbone.cpu()
        head, probe = LinearProbe().fit_head(features, labels, task, cfg.seed)
        self.info_ = {
            "pairs": len(pairs),
            "positive_pairs": int(pairs[:, 2].sum()),
            "tune_seconds": tuned,
            "probe": probe,
            **({"stopped_at_budget": True} if self.stopped_at_budget else {}),
        }
        history = [
            {
                "epoch": epoch + 1,
                "train_loss": loss,
                "pairs": len(pairs),
                "seconds": tuned / len(losses),
            }
            for epoch, loss in enumerate(losses)
        ]
        return backbone.eval(), head, history

    def tune(
        self, backbone: Backbone, texts: list[str], pairs: np.ndarray, cfg, progress=None
    ) -> list:
        """Train every encoder weight on the pairs (cosine-similarity loss); mean loss per epoch.
        progress(done, total) hears of every step; without it, a bar where cfg.progress asks
        for one and stderr is a terminal."""
        from ..features.speed import resolve_device

        device = resolve_device(cfg.device)
        bf16 = cfg.precision == "bf16" and device.type == "cuda"
        ids = backbone.token_ids(texts)
        torch.manual_seed(cfg.seed)
        generator = np.random.default_rng(cfg.seed)
        flags = [p.requires_grad for p in backbone.parameters()]
        for param in backbone.parameters():
            param.requires_grad_(True)
        backbone.to(device).train()
        optimizer = torch.optim.AdamW(backbone.parameters(), lr=self.lr, weight_decay=0.01)
        steps_per_epoch = math.ceil(len(pairs) / self.batch)
        total = steps_per_epoch * self.epochs
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup(total, self.warmup))
        losses = []
        self.stopped_at_budget = False
        try:
            with _progress(progress, cfg.progress, total) as advance:
                for _ in range(self.epochs):
                    order = pairs[generator.permutation(len(pairs))]
                    loss_sum, seen = 0.0, 0
                    for start in range(0, len(order), self.batch):
                        if cfg.deadline is not None and time.monotonic() >= cfg.deadline:
                            self.stopped_at_budget = True  # the tuning so far is kept
                            break
                        chunk = order[start : start + self.batch]
                        # with few examples, pairs share texts: embed each text once per batch
                        texts_in, where = np.unique(chunk[:, :2], return_inverse=True)
                        where = torch.from_numpy(where.reshape(-1, 2)).to(device)
                        padded = backbone.pad([ids[i] for i in texts_in])
                        batch = {k: v.to(device) for k, v in padded.items()}
                        target = torch.from_numpy(chunk[:, 2]).float().to(device)
                        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
                            embedded = backbone(batch).float()
                        u, v = embedded[where[:, 0]], embedded[where[:, 1]]
                        loss = nn.functional.mse_loss(
                            nn.functional.cosine_similarity(u, v, dim=-1), target
                        )
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        optimizer.step()
                        schedule.step()
                        loss_sum += float(loss.detach()) * len(chunk)
                        seen += len(chunk)
                        advance(1)
                    losses.append(loss_sum / max(seen, 1))
                    if self.stopped_at_budget:
                        break
        finally:
            backbone.cpu().eval()
            for param, flag in zip(backbone.parameters(), flags, strict=True):
                param.requires_grad_(flag)
        return losses


def make_pairs(
    labels: np.ndarray, per_example: int | None, max_pairs: int, seed: int
) -> np.ndarray:
    """(P, 3) int64 rows (i, j, same_label), as many positive as negative pairs, at most
    `max_pairs` in all. per_example=None: every unique pair once, the smaller kind oversampled
    (where there are too many pairs to list, a seeded sample of max_pairs); per_example=N: N of
    each kind per example (the anchors are then a seeded sample, each used as evenly as
    possible). Positive partners never are the anchor itself unless its class has a single
    example; with one class only there are no negative pairs."""
    labels = np.asarray(labels)
    n = len(labels)
    if n < 2:
        raise HeadstartError("contrastive needs at least two training examples.")
    rng = np.random.default_rng(seed)
    if per_example is None:
        if n * (n - 1) // 2 <= UNIQUE_PAIRS_LISTED * max_pairs:
            unique = _unique_pairs(labels, max_pairs, rng)
            if unique is not None:
                return unique
        # about as many pairs as there are unique ones, up to the cap
        per_example = min(math.ceil(max_pairs / (2 * n)), n - 1)
    per_kind = max(1, min(per_example * n, max_pairs // 2))
    rounds = math.ceil(per_kind / n)
    anchors = np.concatenate([rng.permutation(n) for _ in range(rounds)])[:per_kind]
    order = np.argsort(labels, kind="stable")  # indices grouped by class
    classes, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    klass = np.searchsorted(classes, labels[anchors])  # class index per anchor
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)  # position of each example within `order`
    start, count = starts[klass], counts[klass]
    # positive: another member of the anchor's class (itself only if it is alone there)
    offset = rng.integers(0, np.maximum(count - 1, 1))
    own = rank[anchors] - start
    offset = np.where((count > 1) & (offset >= own), offset + 1, offset)
    positive = order[start + offset]
    rows = [np.stack([anchors, positive, np.ones(per_kind, dtype=np.int64)], axis=1)]
    # negative: any example outside the anchor's class
    others = n - count
    if (others > 0).all():
        pick = rng.integers(0, others)
        pick = np.where(pick >= start, pick + count, pick)
        negative = order[pick]
        rows.append(np.stack([anchors, negative, np.zeros(per_kind, dtype=np.int64)], axis=1))
    pairs = np.concatenate(rows).astype(np.int64)
    return pairs[rng.permutation(len(pairs))]


UNIQUE_PAIRS_LISTED = 4  # list all unique pairs only while they number at most 4 x max_pairs


def _unique_pairs(labels: np.ndarray, max_pairs: int, rng) -> np.ndarray | None:
    """Every unique pair once, the smaller kind drawn again until both kinds are equal (SetFit's
    "oversampling"), then both kinds cut to max_pairs / 2; None without a positive pair."""
    first, second = np.triu_indices(len(labels), k=1)
    same = labels[first] == labels[second]
    kinds = [np.flatnonzero(same), np.flatnonzero(~same)]
    if not len(kinds[0]):
        return None  # one example per class: the per-example scheme pairs each with itself
    per_kind = min(max(len(k) for k in kinds), max(1, max_pairs // 2))
    rows = []
    for target, chosen in zip((1, 0), kinds, strict=True):
        if not len(chosen):
            continue
        picked = rng.permutation(chosen)[:per_kind]
        extra = rng.choice(chosen, per_kind - len(picked)) if len(picked) < per_kind else []
        picked = np.concatenate([picked, extra]).astype(np.int64)
        rows.append(np.stack([first[picked], second[picked], np.full(per_kind, target)], axis=1))
    pairs = np.concatenate(rows).astype(np.int64)
    return pairs[rng.permutation(len(pairs))]


def linear_warmup(total: int, warmup_fraction: float):
    """Learning-rate multiplier: linear warm-up, then linear decay to 0 (SetFit's schedule)."""
    warm = int(round(warmup_fraction * total))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total - step) / max(1, total - warm))

    return factor


class _progress:
    """advance(k) callback: the caller's progress(done, total), or a rich bar where `show` asks
    for one and stderr is a terminal, or nothing."""

    def __init__(self, report, show: bool, total: int):
        self.report, self.show, self.total, self.bar, self.done = report, show, total, None, 0

    def __enter__(self):
        import os

        from ..progress import line_progress

        if self.report is not None:
            return self._report
        beat = line_progress("contrastive tuning", "steps", self.show)
        if beat is not None:  # no terminal: a line now and then
            self.report = beat
            return self._report
        if not (self.show and sys.stderr.isatty()) or os.environ.get("HEADSTART_NO_PROGRESS"):
            return lambda k: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self.bar = Progress(
            "contrastive pairs",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
        )
        self.bar.start()
        task = self.bar.add_task("tune", total=self.total)
        return lambda k: self.bar.advance(task, k)

    def _report(self, k: int) -> None:
        self.done += k
        self.report(self.done, self.total)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False
