"""The estimator shared by every modality: data in, transfer strategy, head, metrics, run dir."""

from __future__ import annotations

import inspect
import shutil
import sys
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import scipy.sparse
import sklearn.exceptions
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from ..auto.budget import Deadline, parse_budget
from ..data.sources import Item, Skip, Source, read_source
from ..data.split import class_counts, split
from ..data.split import per_class as take_per_class
from ..errors import HeadstartError, check_choice, did_you_mean
from ..features.extract import Embeddings, Extractor
from ..features.speed import DEVICES, PRECISION_CHOICES
from ..heads import TASKS, Task, detect_task, get_task
from ..modalities import get_modality
from ..progress import line_progress
from ..strategies import STRATEGIES, get_strategy
from ..strategies.base import check_strategy, parse_strategy
from ..strategies.frozen import LinearProbe
from ..tasks import pooled_tasks
from .auto import AutoFit

LAYER_SCAN_MAX_ITEMS = 2000  # above this, the extra pass over the data is no longer cheap


class NotFittedError(HeadstartError, sklearn.exceptions.NotFittedError):
    """Used before fit: headstart's one-line error, and scikit-learn's NotFittedError (so also a
    ValueError and an AttributeError), which model-selection tools and checks catch."""


class TransferEstimator(AutoFit, ClassifierMixin, BaseEstimator):
    """Transfer from a pre-trained backbone: fit(X, y) with scikit-learn's contract.

    Constructor arguments are the hyper-parameters (what clone, get_params and GridSearchCV
    handle). Where the data's columns are (text_col, label_col), where the run is written
    (run_dir) and resume are facts about one fit's input and output, not about the model: they
    are keyword arguments of fit. verbose, device, precision and workers stay in the constructor,
    as scikit-learn keeps verbose and n_jobs there: they choose how the work runs, not what is
    learnt, and a clone must run the same way.
    """

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
        precision: str = "auto",
        device: str = "auto",
        weights: str | None = None,
        augment: bool = True,
        workers: int | None = None,
        verbose: bool = True,
        budget: str | float | None = None,
        preprocess: dict | None = None,
        **unknown,
    ):
        if unknown:
            name = next(iter(unknown))
            moved = _MOVED_TO_FIT.get(name, "")
            raise HeadstartError(
                f"{type(self).__name__} got an unknown parameter {name!r}.{moved}"
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
        self.precision, self.device, self.weights = precision, device, weights
        self.augment, self.workers, self.verbose = augment, workers, verbose
        self.budget, self.preprocess = budget, preprocess

    # -- scikit-learn protocol --------------------------------------------------------------

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(TransferEstimator.__init__)
        return [p for p in sig.parameters if p not in ("self", "unknown")]

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's arguments (no nested estimators, so deep changes nothing)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> TransferEstimator:
        for name, value in params.items():
            if name not in self._param_names():
                moved = _MOVED_TO_FIT.get(name, "")
                raise HeadstartError(
                    f"{type(self).__name__} has no parameter {name!r}.{moved}"
                    f"{did_you_mean(name, self._param_names())} Allowed: "
                    f"{', '.join(self._param_names())}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:
        changed = {k: v for k, v in self.get_params().items() if v != _DEFAULTS.get(k)}
        args = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"{type(self).__name__}({args})"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # inputs are texts or image paths (or a table / folder path), never numeric matrices
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.non_deterministic = False
        return tags

    @property
    def classes_(self) -> np.ndarray:
        """The class (or label) names after fit, as predict returns them; empty for regression."""
        self._check_fitted()
        return np.array([self._as_given(c) for c in self.task_.classes])

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy (classification), R^2 (regression) or, for multi-label, subset accuracy: the
        share of items whose predicted label set is exactly the true one (as scikit-learn's
        accuracy_score on indicator matrices). Labels are compared as fit reads them (text)."""
        return self.task_.score(y, self.predict(X), sample_weight)

    # -- fit ----------------------------------------------------------------------------------

    def fit(
        self,
        X,
        y=None,
        *,
        val=None,
        text_col: str | None = None,
        label_col: str | None = None,
        run_dir: str | Path | None = None,
        resume: bool = False,
    ) -> TransferEstimator:
        """Fit on X: a folder, a table, a Source, or a list of texts / image paths with y.

        val: validation data (a path, a Source or an (X, y) pair); without it a val_fraction
        split of X. text_col / label_col: a table's columns (remembered as text_col_ /
        label_col_ for predict and evaluate). run_dir: write the run there; resume: continue an
        interrupted fit in run_dir."""
        started = time.perf_counter()
        self._check_values()
        self.deadline_ = Deadline(parse_budget(self.budget))
        self.val_embed_seconds_ = 0.0
        self.text_col_, self.label_col_ = text_col, label_col
        self._run_dir, self._resume = run_dir, resume
        train_src, val_src = self._split(self._as_source(X, y, one_input=False), val)
        self.label_type_ = _label_type(y)
        self.task_ = Task.from_labels([i.label for i in train_src.items], self.task)
        # the task is known now (task="auto" detects it): refuse before any backbone is loaded
        check_strategy(self.strategy, self.modality, type(self).__name__, self.task_.name)
        train_src = self.task_.attach(train_src)  # items carry their typed target
        if val_src is not None:
            val_src = self.task_.attach(val_src)  # unseen labels fail now
        self.strategy_name_, self.strategy_reason_ = self.strategy, ""
        self.model_selection_, self.plan_, self.check_, self._epochs = None, None, None, None
        auto = self.strategy == "auto"
        # auto starts as linear-probe does: the pre-trained backbone, its cached features, a probe
        strategy = self._new_strategy("linear-probe" if auto else self.strategy)
        model = self._pick_model(train_src) if strategy.needs_backbone else ""
        self.backbone_ = strategy.build(
            model, self.modality, self.weights, self.seed, self.preprocess
        )
        self.pretrained_weight_id_ = None if self.backbone_ is None else self.backbone_.weight_id
        if strategy.needs_probe:  # what it reads of the pre-trained backbone: cached features
            train_emb = self._embed(train_src, cached=True)
            val_emb = self._val_embeddings(val_src)
            probe, probe_info = self._probe(train_emb, val_emb)
        else:  # nothing pre-trained is read (from-scratch, featurisers): the items only
            train_emb = _unembedded(train_src)
            val_emb = _unembedded(val_src) if val_src is not None else None
            probe, probe_info = None, {}
        self.probe_info_ = probe_info
        self.n_items_ = len(train_emb.items) + (len(val_emb.items) if val_emb else 0)
        self.skipped_ = train_emb.skipped + (val_emb.skipped if val_emb else [])
        out_of_fold = None
        if auto:
            plan = self._plan(train_emb, val_emb)
            self._epochs = plan.epochs
            strategy = self.strategy_ = self._new_strategy(plan.strategy)
            strategy, val_emb, out_of_fold = self._fit_auto(
                strategy, plan, probe, train_emb, val_emb
            )
        else:
            self.strategy_ = strategy
            self._warn_if_long(strategy, train_emb, val_emb)
            self._train(strategy, probe if strategy.head_first else None, train_emb, val_emb)
            val_emb = self._fitted_val_embeddings(strategy, val_emb)
        return self._finish_fit(
            self.strategy_, train_emb, val_emb, probe_info, started, out_of_fold
        )

    def _new_strategy(self, spec: str):
        return get_strategy(spec, lr=self.lr, lr_decay=self.lr_decay)

    def _fitted_val_embeddings(self, strategy, val_emb):
        """The validation rows the fitted model reads: the cached ones where the backbone stayed
        as it was, else those of the trained backbone (or of the fitted featuriser)."""
        if val_emb is None or (strategy.frozen and val_emb.features.shape[1]):
            return val_emb
        embedding = time.perf_counter()
        tuned = self.embeddings(Source(self.modality, val_emb.items, origin="validation"))
        self.val_embed_seconds_ = time.perf_counter() - embedding
        self.skipped_ = self.skipped_ + tuned.skipped  # from-scratch decodes images only now
        return tuned

    def _finish_fit(
        self, strategy, train_emb, val_emb, probe_info, started, out_of_fold=None
    ) -> TransferEstimator:
        """fit_info_, metrics on the validation data (or, where `auto` cross-validated small
        data, on the out-of-fold outputs of every item), and the run written."""
        extras = self._fit_extras(train_emb, val_emb)
        self.fit_info_ = {
            "probe": probe_info,
            "n_train": len(train_emb.items),
            "n_val": len(val_emb.items) if val_emb else 0,
            "fit_seconds": time.perf_counter() - started,
            "train_fingerprint": fingerprint(train_emb.items),
            "class_counts": class_counts(train_emb.items),
            **strategy.fit_info(),  # e.g. lora: adapter_bytes; contrastive: pairs
            **({"model_selection": self.model_selection_} if self.model_selection_ else {}),
            **({"layer_scan": self.layer_scan_} if getattr(self, "layer_scan_", None) else {}),
            **self._auto_info(),
            **extras,
        }
        self.thresholds_ = None
        if out_of_fold is not None:
            self.val_items_, self.val_outputs_ = out_of_fold
            self.fit_info_["validation"] = self.check_.how
            self.metrics_ = self._metrics(self.val_items_, self.val_outputs_)
        elif val_emb is not None:
            predicting = time.perf_counter()
            self.val_outputs_ = self._outputs_for(val_emb)
            # the trained model's pass over the validation data: what predicting it costs
            self.fit_info_["val_predict_seconds"] = (
                getattr(self, "val_embed_seconds_", 0.0) + time.perf_counter() - predicting
            )
            self.val_items_ = val_emb.items
            targets = self.task_.targets(val_emb.items)
            self.thresholds_ = self.task_.tune_thresholds(targets, self.val_outputs_)
            self.metrics_ = self._metrics(val_emb.items, self.val_outputs_)
        else:
            self.val_items_, self.val_outputs_, self.metrics_ = [], None, {}
        self.fit_info_["total_seconds"] = time.perf_counter() - started
        if self._run_dir:
            self.save(self._run_dir)
        return self

    def _check_values(self) -> None:
        if self.task in TASKS and TASKS[self.task].estimator:
            raise HeadstartError(
                f"{type(self).__name__} trains a head on one vector per item; task "
                f"{self.task!r} has its own estimator: use {TASKS[self.task].estimator}."
            )
        check_choice("task", self.task, ("auto", *pooled_tasks()))
        # name[:options], and whether it applies to this modality and task (unless "auto")
        check_strategy(self.strategy, self.modality, type(self).__name__, self.task)
        check_choice("precision", self.precision, PRECISION_CHOICES)
        check_choice("device", str(self.device).split(":")[0], DEVICES)
        if self.epochs < 1:
            raise HeadstartError(f"epochs must be at least 1; got {self.epochs}.")

    def _as_source(
        self,
        data,
        y=None,
        labels: bool = True,
        one_input: bool = True,
        text_col: str | None = None,
        label_col: str | None = None,
    ) -> Source:
        """one_input: a str or path given alone may be one input (an image file; for a text
        estimator, one text) rather than a folder or table to read; not so in fit, where one
        input makes no training set. Columns default to fit's."""
        if isinstance(data, Source):
            return self._check_modality(data)
        modality = get_modality(self.modality)
        alone = isinstance(data, str | Path)
        if alone and y is None and not (one_input and modality.is_one_input(data)):
            found = read_source(
                Path(data),
                text_col=text_col or getattr(self, "text_col_", None),
                label_col=label_col or getattr(self, "label_col_", None),
                labels=labels,
            )
            return self._check_modality(found)
        return modality.source_from_values([data] if alone else list(data), y)

    def _check_modality(self, source: Source) -> Source:
        if source.modality != self.modality and source.items:
            other = get_modality(source.modality)
            raise HeadstartError(
                f"{type(self).__name__} takes {self.modality} data, but "
                f"{source.origin or 'the data'!r} holds {other.plural}. Use {other.estimator}."
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
            val_src = self._as_source(*val) if pair else self._as_source(val, one_input=False)
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
            stratify = TASKS[kind].stratify
            kept = take_per_class(train, self.per_class, self.seed) if self.per_class else train
            if not self.val_fraction or not self._holds_out(len(kept.items)):
                return kept, None  # asked for no hold-out, or auto cross-validates instead
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
        what = f"embedding {source.origin or 'the data'}"
        result = extractor.run(source, line_progress(what, "items", self.verbose))
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
        checks = get_modality(self.modality).decoding_can_fail
        if not checks and name != "auto" and not STRATEGIES[name].frozen:
            return _unembedded(val_src)
        return self._embed(val_src, cached=True)

    def _probe(self, train_emb, val_emb):
        """A linear probe on cached features: the head for linear-probe, the head-first start for
        freeze-unfreeze and gradual, and evidence for `auto`."""
        targets = self.task_.targets(train_emb.items)
        head, info = LinearProbe().fit_head(train_emb.features, targets, self.task_, self.seed)
        if val_emb is not None and val_emb.features.shape[1]:  # its val_accuracy, val_f1..
            with torch.no_grad():
                outputs = self.task_.probabilities(head(torch.from_numpy(val_emb.features)))
            info.update(self.task_.headline(outputs, self.task_.targets(val_emb.items)))
        return head, info

    def _pick_model(self, train_src: Source) -> str:
        """`model="auto"`: rank the local backbones on the training split, take LogME's top.
        No model given and strategy="auto": the same, where more than one is local."""
        model = self.model
        if not model and self.strategy == "auto" and self.weights is None:
            model = self._default_or_auto()
        if model != "auto":
            return model
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

    def _auto_info(self) -> dict:
        """What `auto` planned and checked, and the budget, for fit_info_ and the report."""
        info: dict = {}
        if self.budget is not None:
            info["budget_seconds"] = self.deadline_.seconds
        if self.plan_ is not None:
            info["auto"] = {
                "plan": self.plan_.strategy,
                "estimated_seconds": round(self.plan_.seconds, 1),
                "check": self.check_.to_json() if self.check_ is not None else None,
                "options": [
                    {"strategy": o.strategy, "gain": o.gain, "seconds": round(o.seconds, 1)}
                    for o in self.plan_.options
                ],
            }
        return info

    def _fit_extras(self, train_emb, val_emb) -> dict:
        """Modality-specific facts for fit_info_ (text: truncated rows)."""
        return {}

    def _train(self, strategy, head, train_emb, val_emb) -> None:
        """strategy.fit from `head` (the probe for head-first strategies, else None): sets
        backbone_, head_, history_ and backbone_trained_."""
        from ..engine.train import TrainData

        cfg = self._train_config()
        data, val = (
            None
            if emb is None
            else TrainData(emb.items, self.task_.targets(emb.items), _cached_features(emb))
            for emb in (train_emb, val_emb)
        )
        self.backbone_, head, self.history_ = strategy.fit(
            self.backbone_, head, self.task_, data, val, cfg
        )
        if cfg.workdir is not None:  # checkpoints (pickles) only serve to resume a broken fit
            shutil.rmtree(cfg.workdir, ignore_errors=True)
        self.head_ = head.eval()
        self.backbone_trained_ = not strategy.frozen
        if self.backbone_trained_:
            self.backbone_.eval()
            self.backbone_.weight_id = "tuned-" + _state_digest(self.backbone_)

    def _training_deadline(self) -> float | None:
        """When training must stop so that the fit ends within the budget: the passes that
        follow it (embedding with the tuned backbone, scoring, saving) are kept time for."""
        if self.deadline_.at is None:
            return None
        reserve = 0.05 * self.deadline_.seconds
        plan = getattr(self, "plan_", None)
        if plan is not None and plan.costs is not None:
            items = getattr(self, "n_items_", 0)
            reserve = max(reserve, 1.2 * items * plan.costs.embed_item)
        return self.deadline_.at - min(reserve, 0.25 * self.deadline_.seconds)

    def _batch(self) -> int:
        return self.batch_size or 32

    def _train_config(self, progress: bool | None = None, workdir: str | Path | None = ""):
        """The engine's settings for this fit (workdir "": the run's checkpoints folder)."""
        from ..engine.train import TrainConfig

        if workdir == "":
            workdir = Path(self._run_dir) / "checkpoints" if self._run_dir else None
        return TrainConfig(
            epochs=getattr(self, "_epochs", None) or self.epochs,
            batch_size=self._batch(),
            seed=self.seed,
            label_smoothing=self.label_smoothing,
            l2sp=self.l2sp,
            patience=self.patience,
            precision="bf16" if self.precision == "bf16" else "fp32",
            device=self.device,
            augment=self.augment,
            workers=self.workers if self.workers is not None else 1,
            workdir=workdir,
            resume=self._resume and workdir is not None,
            progress=self.verbose if progress is None else progress,
            deadline=self._training_deadline(),
        )

    # -- predict ------------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "head_"):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet. Call fit(...) or "
                f"{type(self).__name__}.load(run_dir) first."
            )

    def _outputs_for(self, embeddings) -> np.ndarray:
        with torch.no_grad():
            logits = self.strategy_.logits(self.head_, embeddings.features)
            return self.task_.probabilities(logits).numpy()

    def embeddings(
        self, X, *, labels: bool = True, text_col: str | None = None, label_col: str | None = None
    ) -> Embeddings:
        """The usable items of X with the fitted backbone's features, and the skipped ones with
        their reasons (tfidf, pixels: their featuriser's rows).

        labels=False ignores a table's label column, so a row without a label is still used.
        text_col / label_col: a table's columns (default: those fit used)."""
        self._check_fitted()
        source = self._as_source(X, labels=labels, text_col=text_col, label_col=label_col)
        return self.strategy_.features(self.backbone_, source, self._extract)

    def _extract(self, backbone, source: Source) -> Embeddings:
        extractor = Extractor(
            backbone,
            precision=self.precision,
            device=self.device,
            workers=self.workers,
            cache=not getattr(self, "backbone_trained_", False),
        )
        return extractor.run(source)

    def transform(self, X) -> np.ndarray:
        """(N, D) features of X as the fitted model sees them: the backbone's pooled features,
        or a featuriser's (TF-IDF rows, standardised pixels). One row per input: an input that
        cannot be used is an error naming it."""
        rows = self._usable(self.embeddings(X, labels=False)).features
        dense = rows.toarray() if scipy.sparse.issparse(rows) else rows
        return np.asarray(dense, dtype=np.float32)

    def predict_proba(self, X) -> np.ndarray:
        """One row per input; an input that cannot be used is an error, not a missing row.

        X may also be what embeddings() returned: its usable items are scored as they are."""
        self._check_fitted()
        found = X if isinstance(X, Embeddings) else self._usable(self.embeddings(X, labels=False))
        return self._outputs_for(found)

    def predict(self, X) -> list:
        """Class names (as given to fit: y=[0, 1] predicts ints), '|'-joined label sets, or
        numbers."""
        labels = self.decode(self.predict_proba(X))
        return [self._as_given(v) for v in labels]

    def _usable(self, found: Embeddings) -> Embeddings:
        if found.skipped:
            first = found.skipped[0]
            raise HeadstartError(
                f"{len(found.skipped)} of {len(found.items) + len(found.skipped)} "
                f"inputs cannot be used (first: {first.id}: {first.reason}), so predictions "
                "would not line up with the inputs. Remove them, or call embeddings() to get "
                "the usable items with their ids."
            )
        return found

    def _as_given(self, label):
        """A class name back in the type fit's y had (ints stay ints)."""
        if getattr(self, "label_type_", "str") == "int" and self.task_.one_class_per_item:
            return int(label)
        return label

    def decode(self, outputs: np.ndarray) -> list:
        """Outputs to labels: class names, '|'-joined label sets, or numbers."""
        return self.task_.decode(outputs, self.thresholds_)

    def evaluate(self, X, *, text_col: str | None = None, label_col: str | None = None) -> dict:
        """Metrics on labelled data: accuracy, macro_f1, n (classification) and more.

        text_col / label_col: a table's columns (default: those fit used)."""
        embeddings = self.embeddings(X, text_col=text_col, label_col=label_col)
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

        targets = self.task_.targets(items)
        return compute_metrics(self.task_, targets, outputs, self.thresholds_)

    # -- persistence --------------------------------------------------------------------------

    def to_spec(self):
        """The fitted model's RunSpec: everything config.json holds (files: filled on save)."""
        from ..runs.spec import spec_of

        self._check_fitted()
        return spec_of(self)

    def tensors(self) -> dict[str, torch.Tensor]:
        """What model.safetensors holds: head.* and what the strategy saves of the backbone side
        (strategy.saved_tensors: backbone.* when it trained, lora's adapter.*, a featuriser's
        featuriser.*)."""
        self._check_fitted()
        tensors = {
            f"head.{k}": v.detach().cpu().contiguous() for k, v in self.head_.state_dict().items()
        }
        tensors.update(self.strategy_.saved_tensors(self.backbone_))
        return tensors

    @classmethod
    def from_spec(cls, spec, state: dict, run_dir: Path | None = None) -> TransferEstimator:
        """The fitted estimator a RunSpec and its tensors describe (no code is unpickled)."""
        from ..runs.spec import restore_parts

        est = cls(**{k: v for k, v in spec.params.items() if k in cls._param_names()})
        parts = restore_parts(spec, state, run_dir)
        est.backbone_, est.head_, est.strategy_ = parts.backbone, parts.head, parts.strategy
        est.backbone_trained_ = bool(spec.backbone and spec.backbone.trained)
        est.task_ = get_task(spec.task["kind"], list(spec.task["classes"]))
        est.label_type_ = spec.task.get("label_type", "str")
        est.thresholds_ = (
            None if spec.thresholds is None else np.array(spec.thresholds, dtype=np.float32)
        )
        est.strategy_name_, est.strategy_reason_ = spec.strategy["name"], spec.strategy["reason"]
        est.history_, est.fit_info_ = list(spec.history), dict(spec.fit)
        est.text_col_, est.label_col_ = spec.columns.get("text_col"), spec.columns.get("label_col")
        if est.backbone_ is not None:
            est.pretrained_weight_id_ = spec.backbone.pretrained_weight_id
        est.model_selection_ = spec.fit.get("model_selection")
        est.skipped_, est.val_items_, est.val_outputs_ = [], [], None
        return est

    def save(self, run_dir) -> Path:
        from ..runs.store import save_run

        self._check_fitted()
        return save_run(self, Path(run_dir))

    def write_artifacts(self, run_dir: Path) -> None:
        from ..runs.artifacts import write_artifacts

        write_artifacts(self, run_dir)

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
_MOVED_TO_FIT = {
    name: f" {name} is an argument of fit(), not of the constructor."
    for name in ("text_col", "label_col", "run_dir", "resume")
}


def _label_type(y) -> str:
    """'int' when every label given to fit is an integer (then predict gives ints back)."""
    if y is None:
        return "str"
    values = list(y)
    ints = all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values)
    return "int" if values and ints else "str"


def _check_usable(source: Source, what: str) -> None:
    if not source.items:
        first = f" (first: {source.skipped[0].id}: {source.skipped[0].reason})"
        raise HeadstartError(
            f"{what} has nothing usable: all {len(source.skipped)} items were skipped"
            f"{first if source.skipped else ''}."
        )


def _unembedded(source: Source):
    """Items without features, for strategies that read the items themselves."""
    from ..features.extract import Embeddings, Stats

    stats = Stats(items=len(source.items) + len(source.skipped), skipped=len(source.skipped))
    return Embeddings(
        np.zeros((len(source.items), 0), np.float32), source.items, list(source.skipped), stats
    )


def _cached_features(emb) -> np.ndarray | None:
    """The pre-trained features read before fitting; None where only the items were kept."""
    return emb.features if emb.features.shape[1] else None


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
