"""The estimator shared by every modality: data in, transfer strategy, head, metrics, run dir."""

from __future__ import annotations

import inspect
import shutil
import sys
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..data.images import is_image_path
from ..data.sources import Item, Skip, Source, read_source, source_from_paths, source_from_texts
from ..data.split import per_class as take_per_class
from ..data.split import split
from ..errors import HeadstartError, check_choice, did_you_mean
from ..features.extract import Extractor
from ..features.speed import DEVICES, PRECISION_CHOICES, resolve_device
from ..heads import Head, Task, detect_task
from ..strategies import STRATEGIES, get_strategy
from ..strategies.base import check_strategy, parse_strategy
from ..zoo import load_backbone
from ..zoo.entry import materialize
from .auto import choose_strategy

LAYER_SCAN_MAX_ITEMS = 2000  # above this, the extra pass over the data is no longer cheap


class NotFittedError(HeadstartError):
    pass


class TransferEstimator:
    modality: ClassVar[str] = ""

    def __init__(
        self,
        model: str = "",
        strategy: str = "auto",
        *,
        task: str = "auto",
        epochs: int = 5,
        lr: float | None = None,
        lr_decay: float | None = None,
        batch_size: int | None = None,
        seed: int = 0,
        label_smoothing: float = 0.1,
        l2sp: float = 0.0,
        patience: int = 3,
        val_fraction: float = 0.2,
        per_class: int | None = None,
        text_col: str | None = None,
        label_col: str | None = None,
        precision: str = "auto",
        device: str = "auto",
        weights: str | None = None,
        augment: bool = True,
        workers: int | None = None,
        run_dir: str | None = None,
        resume: bool = False,
        verbose: bool = True,
        **unknown,
    ):
        if unknown:
            name = next(iter(unknown))
            raise HeadstartError(
                f"{type(self).__name__} got an unknown parameter {name!r}."
                f"{did_you_mean(name, self._param_names())} Allowed: "
                f"{', '.join(self._param_names())}."
            )
        self.model, self.strategy, self.task = model, strategy, task
        self.epochs, self.lr, self.lr_decay, self.batch_size = epochs, lr, lr_decay, batch_size
        self.seed, self.label_smoothing, self.l2sp, self.patience = (
            seed,
            label_smoothing,
            l2sp,
            patience,
        )
        self.val_fraction, self.per_class = val_fraction, per_class
        self.text_col, self.label_col = text_col, label_col
        self.precision, self.device, self.weights = precision, device, weights
        self.augment, self.workers, self.run_dir = augment, workers, run_dir
        self.resume, self.verbose = resume, verbose

    # -- scikit-learn protocol --------------------------------------------------------------

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(TransferEstimator.__init__)
        return [p for p in sig.parameters if p not in ("self", "unknown")]

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> TransferEstimator:
        for name, value in params.items():
            if name not in self._param_names():
                raise HeadstartError(
                    f"{type(self).__name__} has no parameter {name!r}."
                    f"{did_you_mean(name, self._param_names())} Allowed: "
                    f"{', '.join(self._param_names())}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if v != _DEFAULTS.get(k)}
        args = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"{type(self).__name__}({args})"

    # -- fit ----------------------------------------------------------------------------------

    def fit(self, train, val=None, y=None) -> TransferEstimator:
        started = time.perf_counter()
        self.val_embed_seconds_ = 0.0
        self._check_values()
        train_src, val_src = self._split(self._as_source(train, y, one_text=False), val)
        self.task_ = Task.from_labels([i.label for i in train_src.items], self.task)
        if val_src is not None:
            self.task_.targets([i.label for i in val_src.items])  # unseen labels fail now
        self.strategy_name_, self.strategy_reason_ = self.strategy, ""
        self.model_selection_ = None
        if _is_classic(self.strategy):  # tfidf: its own features and model, no backbone
            strategy, train_emb, val_emb, probe_info = self._fit_classic(train_src, val_src)
            return self._finish_fit(strategy, train_emb, val_emb, probe_info, started)
        self.backbone_ = load_backbone(self._pick_model(train_src), self.modality, self.weights)
        self.pretrained_weight_id_ = self.backbone_.weight_id
        train_emb = self._embed(train_src, cached=True)
        val_emb = self._val_embeddings(val_src)
        self.skipped_ = train_emb.skipped + (val_emb.skipped if val_emb else [])
        probe, probe_info = self._probe(train_emb, val_emb)
        if self.strategy == "auto":
            self._choose(train_emb, probe_info)
        strategy = get_strategy(self.strategy_name_, lr=self.lr, lr_decay=self.lr_decay)
        self.strategy_ = strategy
        self.history_ = []
        if strategy.frozen:
            self.head_ = (
                probe
                if strategy.name == "linear-probe"
                else self._fit_frozen(strategy, train_emb, val_emb)
            )
            self.backbone_trained_ = False
        else:
            if strategy.head_first:
                head = probe
            elif strategy.pretrained:
                head = self._new_head(train_emb.features)
            else:  # the control: same architecture, random weights, nothing from the probe
                torch.manual_seed(self.seed)  # the random init is part of what the seed fixes
                self.backbone_ = load_backbone_random(self.backbone_.name, self.modality)
                self.pretrained_weight_id_ = self.backbone_.weight_id
                head = self._new_head(None)
            self._train(strategy, head, train_emb, val_emb)
            if val_emb is not None:  # the cached features are the pre-training backbone's
                embedding = time.perf_counter()
                val_emb = self.transform(Source(self.modality, val_emb.items, origin="validation"))
                self.val_embed_seconds_ = time.perf_counter() - embedding
        return self._finish_fit(strategy, train_emb, val_emb, probe_info, started)

    def _finish_fit(self, strategy, train_emb, val_emb, probe_info, started) -> TransferEstimator:
        extras = self._fit_extras(train_emb, val_emb)
        self.fit_info_ = {
            "probe": probe_info,
            "n_train": len(train_emb.items),
            "n_val": len(val_emb.items) if val_emb else 0,
            "fit_seconds": time.perf_counter() - started,
            "train_fingerprint": fingerprint(train_emb.items),
            "class_counts": _counts(train_emb.items),
            **strategy.fit_info(),  # e.g. lora: adapter_bytes; contrastive: pairs
            **({"model_selection": self.model_selection_} if self.model_selection_ else {}),
            **({"layer_scan": self.layer_scan_} if getattr(self, "layer_scan_", None) else {}),
            **extras,
        }
        self.thresholds_ = None
        if val_emb is not None:
            predicting = time.perf_counter()
            self.val_outputs_ = self._outputs_for(val_emb)
            # the trained model's pass over the validation data: what predicting it costs
            self.fit_info_["val_predict_seconds"] = (
                getattr(self, "val_embed_seconds_", 0.0) + time.perf_counter() - predicting
            )
            self.val_items_ = val_emb.items
            if self.task_.kind == "multilabel":
                from ..report.metrics import best_thresholds

                targets = self.task_.targets([i.label for i in val_emb.items])
                self.thresholds_ = best_thresholds(targets, self.val_outputs_)
            self.metrics_ = self._metrics(val_emb.items, self.val_outputs_)
        else:
            self.val_items_, self.val_outputs_, self.metrics_ = [], None, {}
        self.fit_info_["total_seconds"] = time.perf_counter() - started
        if self.run_dir:
            self.save(self.run_dir)
        return self

    def _check_values(self) -> None:
        check_strategy(self.strategy, self.modality, type(self).__name__)  # name[:options]
        check_choice("task", self.task, ("auto", "classification", "multilabel", "regression"))
        check_choice("precision", self.precision, PRECISION_CHOICES)
        check_choice("device", str(self.device).split(":")[0], DEVICES)
        if self.epochs < 1:
            raise HeadstartError(f"epochs must be at least 1; got {self.epochs}.")

    def _as_source(self, data, y=None, labels: bool = True, one_text: bool = True) -> Source:
        """one_text: a str given to a text estimator may be one text (predict), not only a path
        (fit, where a single text makes no training set)."""
        if isinstance(data, Source):
            return self._check_modality(data)
        text = one_text and _is_text(data, self.modality)
        if isinstance(data, str | Path) and y is None and not text:
            path = Path(data)
            if self.modality == "image" and path.is_file() and is_image_path(path):
                return source_from_paths([path])
            found = read_source(
                path, text_col=self.text_col, label_col=self.label_col, labels=labels
            )
            return self._check_modality(found)
        values = [data] if isinstance(data, str | Path) else list(data)
        if self.modality == "text":
            return source_from_texts(values, y)
        return source_from_paths(values, y)

    def _check_modality(self, source: Source) -> Source:
        if source.modality != self.modality and source.items:
            other = "TextClassifier" if source.modality == "text" else "ImageClassifier"
            raise HeadstartError(
                f"{type(self).__name__} takes {self.modality} data, but "
                f"{source.origin or 'the data'!r} holds {source.modality}s. Use {other}."
            )
        return source

    def _split(self, train: Source, val) -> tuple[Source, Source | None]:
        self._say_skips(train.skipped, "training data")
        _check_usable(train, "Training data")
        if any(i.label is None for i in train.items):
            raise HeadstartError(
                "Training data has no labels. Use a folder with one subfolder per class, or a "
                "table with a label column (--label-col), or pass y= with one label per item."
            )
        if val is not None:
            pair = isinstance(val, tuple) and len(val) == 2 and not isinstance(val[0], str | Path)
            # a path, a Source, or an (items, labels) pair
            val_src = self._as_source(*val) if pair else self._as_source(val, one_text=False)
            self._say_skips(val_src.skipped, "validation data")
            _check_usable(val_src, "Validation data")
            if any(i.label is None for i in val_src.items):
                raise HeadstartError(
                    "Validation data has no labels: pass labelled data (a label column, class "
                    "folders, or a (items, labels) pair)."
                )
        else:
            kind = self.task
            if kind == "auto":
                kind = detect_task([i.label for i in train.items])
            stratify = kind == "classification"
            train, val_src = split(train, self.val_fraction, self.seed, stratify=stratify)
        if self.per_class:
            train = take_per_class(train, self.per_class, self.seed)
        return train, val_src

    def _embed(self, source: Source, cached: bool):
        extractor = Extractor(
            self.backbone_,
            precision=self.precision,
            device=self.device,
            workers=self.workers,
            cache=True if cached else None,
        )
        result = extractor.run(source)
        self._say_skips(result.skipped[len(source.skipped) :], "decoding")
        if not result.items:
            raise HeadstartError(f"No usable items in {source.origin or 'the data'}.")
        return result

    def _val_embeddings(self, val_src: Source | None):
        """Pre-trained features of the validation data, where something reads them: frozen heads,
        `auto`, and images (decoding them finds unreadable files before training). A strategy
        that tunes a text encoder only needs the texts: they are embedded after tuning."""
        if val_src is None:
            return None
        name, _ = parse_strategy(self.strategy)
        if self.modality == "text" and name != "auto" and not STRATEGIES[name].frozen:
            return _unembedded(val_src)
        return self._embed(val_src, cached=True)

    def _probe(self, train_emb, val_emb):
        """A linear probe on cached features: the head for linear-probe, the head-first start for
        freeze-unfreeze and gradual, and evidence for `auto`."""
        targets = self.task_.targets([i.label for i in train_emb.items])
        head, info = STRATEGIES["linear-probe"]().fit_head(
            train_emb.features, targets, self.task_, self.seed
        )
        if (
            val_emb is not None
            and val_emb.features.shape[1]
            and self.task_.kind == "classification"
        ):
            val_t = self.task_.targets([i.label for i in val_emb.items])
            with torch.no_grad():
                pred = head(torch.from_numpy(val_emb.features)).argmax(-1).numpy()
            info["val_accuracy"] = float((pred == val_t).mean())
        return head, info

    def _pick_model(self, train_src: Source) -> str:
        """`model="auto"`: rank the bundled backbones on the training split, take LogME's top."""
        if self.model != "auto":
            return self.model
        if self.weights:
            raise HeadstartError("--weights belongs to a named --model; it cannot go with auto.")
        from ..select.rank import rank_models

        say = (lambda line: print(f"rank: {line}", file=sys.stderr)) if self.verbose else None
        extract = {"precision": self.precision, "device": self.device, "workers": self.workers}
        ranking = rank_models(train_src, seed=self.seed, say=say, **extract)
        top = ranking.top
        self.model_selection_ = {
            "chosen": top.candidate,
            "reason": f"highest LogME ({top.logme:.4f}) of {len(ranking.rows) - 1} candidates",
            "verdict": ranking.verdict,
            "ranking": ranking.to_json(),
        }
        if self.verbose:
            reason = self.model_selection_["reason"]
            print(f"model auto -> {top.candidate}: {reason}", file=sys.stderr)
            print(ranking.verdict, file=sys.stderr)
        return top.candidate

    def _choose(self, train_emb, probe_info) -> None:
        device_type = resolve_device(self.device).type
        self.layer_scan_ = None
        name, reason = choose_strategy(
            self.task_.kind,
            _counts(train_emb.items),
            probe_info.get("cv_accuracy"),
            device_type,
            modality=self.modality,
            layer_scan=self._layer_scan(train_emb.items),
        )
        self.strategy_name_, self.strategy_reason_ = name, reason
        if self.verbose:
            print(f"strategy auto -> {name}: {reason}", file=sys.stderr)

    def _layer_scan(self, items: list[Item]):
        """Cut-layer advice for `auto`, where cheap: one more pass over few training items."""
        if len(items) > LAYER_SCAN_MAX_ITEMS:
            return None

        def scan() -> dict:
            from ..select.layers import rank_layers
            from ..select.rank import Candidate

            weights = Path(self.weights).expanduser() if self.weights else None
            ranking = rank_layers(
                Source(self.modality, items, origin="training data"),
                Candidate(self.backbone_.name, weights),
                seed=self.seed,
                precision=self.precision,
                device=self.device,
                workers=self.workers,
            )
            layers = sorted((r for r in ranking.rows if r.kind == "layer"), key=lambda r: r.group)
            self.layer_scan_ = {**ranking.extra, "logme": [round(r.logme, 5) for r in layers]}
            return ranking.extra

        return scan

    def _fit_classic(self, train_src: Source, val_src: Source | None):
        """A strategy with its own features and model (tfidf, pixels): no backbone at all."""
        strategy = get_strategy(self.strategy, lr=self.lr, lr_decay=self.lr_decay)
        train_emb = _unembedded(train_src)
        val_emb = _unembedded(val_src) if val_src is not None else None
        self.skipped_ = train_emb.skipped + (val_emb.skipped if val_emb else [])
        self.backbone_, self.pretrained_weight_id_, self.backbone_trained_ = None, None, False
        self.strategy_, self.history_ = strategy, []
        targets = self.task_.targets([i.label for i in train_emb.items])
        inputs = [i.text if self.modality == "text" else i.path for i in train_emb.items]
        # what it measured comes with strategy.fit_info()
        self.head_, _ = strategy.fit_model(inputs, targets, self.task_, self.seed)
        return strategy, train_emb, val_emb, {}

    def _fit_extras(self, train_emb, val_emb) -> dict:
        """Modality-specific facts for fit_info_ (text: truncated rows)."""
        return {}

    def _fit_frozen(self, strategy, train_emb, val_emb) -> Head:
        targets = self.task_.targets([i.label for i in train_emb.items])
        val = None
        if val_emb is not None:
            val = (val_emb.features, self.task_.targets([i.label for i in val_emb.items]))
        head, _ = strategy.fit_head(train_emb.features, targets, self.task_, self.seed, val=val)
        return head

    def _new_head(self, features: np.ndarray | None) -> Head:
        torch.manual_seed(self.seed)
        head = Head(self.backbone_.feature_dim, self.task_.out_dim)
        if features is not None:
            head.fit_normaliser(torch.from_numpy(features))
        return head

    def _train(self, strategy, head, train_emb, val_emb) -> None:
        from ..engine.train import TrainConfig, TrainData, train

        cfg = TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size or 32,
            seed=self.seed,
            label_smoothing=self.label_smoothing,
            l2sp=self.l2sp,
            patience=self.patience,
            precision="bf16" if self.precision == "bf16" else "fp32",
            device=self.device,
            augment=self.augment,
            workers=self.workers if self.workers is not None else 1,
            workdir=Path(self.run_dir) / "checkpoints" if self.run_dir else None,
            resume=self.resume,
            progress=self.verbose,
        )
        data = TrainData(train_emb.items, self.task_.targets([i.label for i in train_emb.items]))
        val = None
        if val_emb is not None:
            val = TrainData(val_emb.items, self.task_.targets([i.label for i in val_emb.items]))
        self.backbone_ = materialize(self.backbone_)
        adapt = getattr(strategy, "adapt", None)  # lora, contrastive: their own training
        if adapt is not None:
            self.backbone_, head, self.history_ = adapt(self, self.backbone_, head, data, val, cfg)
        else:
            self.history_ = train(self.backbone_, head, self.task_, strategy, data, val, cfg)
        if cfg.workdir is not None:  # checkpoints (pickles) only serve to resume a broken fit
            shutil.rmtree(cfg.workdir, ignore_errors=True)
        self.backbone_.eval()
        self.head_ = head.eval()
        self.backbone_trained_ = True
        self.backbone_.weight_id = "tuned-" + _state_digest(self.backbone_)

    # -- predict ------------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "head_"):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet. Call fit(...) or "
                f"{type(self).__name__}.load(run_dir) first."
            )

    def _outputs_for(self, embeddings) -> np.ndarray:
        with torch.no_grad():
            if getattr(self.strategy_, "classic", False):
                logits = self.head_.logits(embeddings.items)
            else:
                logits = self.head_(torch.from_numpy(embeddings.features))
            return self.task_.probabilities(logits).numpy()

    def transform(self, data, *, labels: bool = True):
        """Features of `data` as the fitted model sees them (Embeddings with items, skipped).

        labels=False ignores a table's label column, so a row without a label is still used."""
        self._check_fitted()
        source = self._as_source(data, labels=labels)
        if getattr(self.strategy_, "classic", False):  # reads the items themselves
            return _unembedded(source)
        extractor = Extractor(
            self.backbone_,
            precision=self.precision,
            device=self.device,
            workers=self.workers,
            cache=not getattr(self, "backbone_trained_", False),
        )
        return extractor.run(source)

    def predict_proba(self, data) -> np.ndarray:
        """One row per input; an input that cannot be used is an error, not a missing row."""
        embeddings = self.transform(data, labels=False)
        if embeddings.skipped:
            first = embeddings.skipped[0]
            raise HeadstartError(
                f"{len(embeddings.skipped)} of {len(embeddings.items) + len(embeddings.skipped)} "
                f"inputs cannot be used (first: {first.id}: {first.reason}), so predictions "
                "would not line up with the inputs. Remove them, or call transform() to get "
                "the usable items with their ids."
            )
        return self._outputs_for(embeddings)

    def predict(self, data) -> list:
        return self.decode(self.predict_proba(data))

    def decode(self, outputs: np.ndarray) -> list:
        """Outputs to labels: class names, '|'-joined label sets, or numbers."""
        if self.task_.kind == "regression":
            return [float(v) for v in np.atleast_1d(outputs)]
        if self.task_.kind == "multilabel":
            thresholds = self.thresholds_ if self.thresholds_ is not None else 0.5
            on = outputs >= thresholds
            return [
                "|".join(c for c, flag in zip(self.task_.classes, row, strict=True) if flag)
                for row in on
            ]
        return [self.task_.classes[i] for i in outputs.argmax(axis=1)]

    def evaluate(self, data) -> dict:
        """Metrics on labelled data: accuracy, macro_f1, n (classification) and more."""
        embeddings = self.transform(data)
        if not embeddings.items:
            raise HeadstartError("Nothing usable to evaluate: every item was skipped.")
        if any(i.label is None for i in embeddings.items):
            raise HeadstartError(
                "Evaluation data needs labels (class subfolders or a label column)."
            )
        outputs = self._outputs_for(embeddings)
        metrics = self._metrics(embeddings.items, outputs)
        metrics["skipped"] = len(embeddings.skipped)
        self.last_eval_ = (embeddings.items, outputs, metrics)
        return metrics

    def _metrics(self, items: list[Item], outputs: np.ndarray) -> dict:
        from ..report.metrics import compute_metrics

        targets = self.task_.targets([i.label for i in items])
        return compute_metrics(self.task_, targets, outputs, self.thresholds_)

    # -- persistence --------------------------------------------------------------------------

    def save(self, run_dir) -> Path:
        from ..runs.store import save_run

        self._check_fitted()
        return save_run(self, Path(run_dir))

    @classmethod
    def load(cls, run_dir) -> TransferEstimator:
        from ..runs.store import load_run

        return load_run(cls, Path(run_dir))

    def _say_skips(self, skipped: list[Skip], where: str) -> None:
        if skipped and self.verbose:
            for skip in skipped[:10]:
                print(f"skipped ({where}): {skip.id}: {skip.reason}", file=sys.stderr)
            if len(skipped) > 10:
                print(f"... {len(skipped) - 10} more skipped ({where})", file=sys.stderr)


_DEFAULTS = {
    name: p.default for name, p in inspect.signature(TransferEstimator.__init__).parameters.items()
}


def _check_usable(source: Source, what: str) -> None:
    if not source.items:
        first = f" (first: {source.skipped[0].id}: {source.skipped[0].reason})"
        raise HeadstartError(
            f"{what} has nothing usable: all {len(source.skipped)} items were skipped"
            f"{first if source.skipped else ''}."
        )


def _is_classic(strategy: str) -> bool:
    name, _ = parse_strategy(strategy)
    return bool(getattr(STRATEGIES.get(name), "classic", False))


def _is_text(data, modality: str) -> bool:
    """A str given to a text estimator is a text unless it names a path or looks like a table."""
    if modality != "text" or not isinstance(data, str):
        return False
    from ..data.sources import TABLE_SUFFIXES

    looks_like_table = data.lower().endswith(TABLE_SUFFIXES) and not any(c.isspace() for c in data)
    return not looks_like_table and not Path(data).exists()


def _unembedded(source: Source):
    """Items without features, for strategies that read the items themselves."""
    from ..features.extract import Embeddings, Stats

    stats = Stats(items=len(source.items) + len(source.skipped), skipped=len(source.skipped))
    return Embeddings(
        np.zeros((len(source.items), 0), np.float32), source.items, list(source.skipped), stats
    )


def load_backbone_random(model: str, modality: str):
    from ..zoo import DEFAULT_MODEL, get_entry

    return get_entry(model or DEFAULT_MODEL[modality]).build(pretrained=False)


def _counts(items: list[Item]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item.label] = counts.get(item.label, 0) + 1
    return dict(sorted(counts.items()))


def fingerprint(items: list[Item]) -> str:
    """Identifies the training data: ids, labels and file sizes (text: the text itself)."""
    import hashlib

    digest = hashlib.sha256()
    for item in sorted(items, key=lambda i: i.id):
        size = item.path.stat().st_size if item.path is not None and item.path.exists() else 0
        digest.update(f"{item.id}\t{item.label}\t{size}\t{item.text or ''}\n".encode())
    return digest.hexdigest()[:16]


def _state_digest(module: torch.nn.Module) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes()[:4096])
    return digest.hexdigest()[:16]
