"""The estimator's side of `auto`: plan within the budget, train, and keep the trained model only
where it beats the probe on held-out data (auto/plan.py chooses, auto/check.py decides)."""

from __future__ import annotations

import copy
import sys

import numpy as np
import torch

from ..auto.budget import format_seconds
from ..auto.check import Check, cross_validated, head_outputs, on_validation
from ..auto.plan import CV_FOLDS, MIN_VAL, Plan, Situation, choose
from ..data.sources import Source
from ..data.split import class_counts
from ..strategies.frozen import LinearProbe


class AutoFit:
    """Mixed into TransferEstimator: the parts of fit that only `auto` runs."""

    def _holds_out(self, n_items: int) -> bool:
        """Whether fit splits off validation data: always, except for `auto` on data so small
        that the split would be too small to decide with (it cross-validates instead)."""
        return self.strategy != "auto" or round(n_items * self.val_fraction) >= MIN_VAL

    def _default_or_auto(self) -> str:
        """No model given, strategy auto: 'auto' where more than one backbone of this modality
        is on this machine (rank picks by LogME), else '' (the modality's default), saying once
        where a stronger one can be fetched."""
        from ..select.rank import default_candidates

        if len(default_candidates(self.modality)) > 1:
            return "auto"
        self._offer_fetch()
        return ""

    def _offer_fetch(self) -> None:
        """One line, once per machine (a marker in the cache folder): which registered model of
        this modality `headstart fetch` would bring. Nothing is ever downloaded unasked."""
        from ..features.cache import cache_root
        from ..zoo import get_entry, registered_names

        for name in registered_names(self.modality):
            entry = get_entry(name)
            if entry.fetch is None or entry.available_offline():
                continue
            marker = cache_root() / f"said-fetch-{name}"
            if marker.exists():
                continue
            self._say(
                f"tip: a stronger {self.modality} model is one command away: `headstart fetch "
                f"{name}` ({entry.fetch.size_mb} MB, once; then offline), and `auto` ranks it "
                "beside the bundled ones. headstart never downloads without being asked."
            )
            try:
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
            except OSError:
                pass  # a read-only cache: the tip comes again, nothing worse

    def _plan(self, train_emb, val_emb) -> Plan:
        from ..features.speed import resolve_device
        from ..strategies.contrastive import make_pairs

        probe_cv = self.probe_info_.get("cv_accuracy")
        items = train_emb.items
        targets = self.task_.targets(items)
        situation = Situation(
            task_kind=self.task_.kind,
            one_class_per_item=self.task_.one_class_per_item,
            modality=self.modality,
            counts=class_counts(items),
            probe_cv=probe_cv,
            device_type=resolve_device(self.device).type,
            n_val=len(val_emb.items) if val_emb is not None else 0,
            epochs=self.epochs,
            remaining=self.deadline_.remaining(),
        )

        def costs():
            from ..auto.cost import measure

            return measure(self.backbone_, items, targets, self._batch(), self.device)

        def pairs(cap: int) -> int:
            return len(make_pairs(targets, None, cap, self.seed))

        plan = choose(situation, costs, self._layer_scan(items), pairs)
        self.plan_ = plan
        self.strategy_name_, self.strategy_reason_ = plan.strategy, plan.reason
        self._say(f"strategy auto -> {plan.strategy}: {plan.reason}")
        if plan.long:
            self._say(
                f"note: {plan.strategy} is estimated to take about "
                f"{format_seconds(plan.seconds)} on this machine (progress lines follow; --budget "
                "caps it)"
            )
        return plan

    def _warn_if_long(self, strategy, train_emb, val_emb) -> None:
        """A strategy named by the user that trains the backbone: say up front when this machine
        needs more than a few minutes for it (measured, as auto measures)."""
        from ..auto.cost import measure
        from ..auto.plan import LONG_SECONDS

        if not self.verbose or strategy.frozen or self.backbone_ is None:
            return
        items = train_emb.items
        costs = measure(
            self.backbone_, items, self.task_.targets(items), self._batch(), self.device
        )
        n_val = len(val_emb.items) if val_emb is not None else 0
        seconds = strategy.estimate_seconds(costs, self.task_.targets(items), n_val, self.epochs)
        if seconds is not None and seconds > LONG_SECONDS:
            self._say(
                f"note: {strategy.name} is estimated to take about {format_seconds(seconds)} on "
                "this machine (progress lines follow; --budget caps it)"
            )

    def _fit_auto(self, strategy, plan: Plan, probe, train_emb, val_emb):
        """Train the planned strategy and check it against the probe. Returns (strategy kept,
        validation embeddings, out-of-fold (items, outputs) or None)."""
        if not plan.check and val_emb is not None:  # the probe, with validation data
            self._train(strategy, probe, train_emb, val_emb)
            return strategy, val_emb, None
        if plan.check == "validation" and val_emb is not None:
            strategy, val_emb = self._checked_on_validation(strategy, probe, train_emb, val_emb)
            return strategy, val_emb, None
        # small data: cross-validated; without validation data, fitted on every item after
        return self._cross_checked(strategy, plan, probe, train_emb, val_emb)

    def _checked_on_validation(self, strategy, probe, train_emb, val_emb):
        probe_outputs = head_outputs(self.task_, probe, val_emb.features)
        pretrained = self.backbone_
        self._train(strategy, probe if strategy.head_first else None, train_emb, val_emb)
        self.strategy_ = strategy
        tuned = self._fitted_val_embeddings(strategy, val_emb)
        trained = self._outputs_for(tuned)
        same = [i.id for i in tuned.items] == [i.id for i in val_emb.items]
        targets = self.task_.targets(val_emb.items)
        check = on_validation(self.task_, trained if same else None, probe_outputs, targets)
        self._record(check, strategy.name)
        if check.keep_trained:
            return strategy, tuned
        self._back_to_probe(pretrained, probe)
        return self.strategy_, val_emb

    def _cross_checked(self, strategy, plan: Plan, probe, train_emb, val_emb):
        """The check by cross-validation on the training items; then the model kept is fitted
        on them, with the validation data where there is some (else its out-of-fold outputs
        stand as the validation)."""
        targets = self.task_.targets(train_emb.items)
        trains = bool(plan.check)  # the plan is a trained strategy, not the probe
        folds = min(plan.folds or CV_FOLDS[0], int(np.bincount(targets).min()))
        if folds < 2:  # a class with a single item: nothing to cross-validate
            self._train(strategy, probe if strategy.head_first else None, train_emb, val_emb)
            return strategy, self._fitted_val_embeddings(strategy, val_emb), None
        pretrained = self.backbone_
        check = cross_validated(
            self.task_,
            train_emb.features,
            targets,
            folds,
            self.seed,
            self._fold_fitter(plan.strategy, train_emb) if trains else None,
            self.deadline_,
            say=self._say if self.verbose else None,
        )
        if trains:
            self._record(check, strategy.name)
        else:
            self.check_ = check
        if check.keep_trained:
            self._train(strategy, probe if strategy.head_first else None, train_emb, val_emb)
            self.strategy_ = strategy
            outputs = check.trained_outputs
        else:
            self._back_to_probe(pretrained, probe)
            self._train(self.strategy_, probe, train_emb, val_emb)
            outputs = check.probe_outputs
        if val_emb is not None:
            return self.strategy_, self._fitted_val_embeddings(self.strategy_, val_emb), None
        return self.strategy_, None, (train_emb.items, outputs)

    def _fold_fitter(self, spec: str, emb):
        """fit_fold(train idx, test idx) -> the held-out items' outputs, for the check: the
        strategy fitted from a fresh copy of the pre-trained backbone on the fold."""
        from ..engine.train import TrainData
        from ..zoo.entry import materialize

        original = materialize(self.backbone_)

        def fit_fold(train_idx: np.ndarray, test_idx: np.ndarray) -> np.ndarray:
            strategy = self._new_strategy(spec)
            part = [emb.items[i] for i in train_idx]
            targets = self.task_.targets(part)
            head = None
            if strategy.head_first:
                head, _ = LinearProbe().fit_head(
                    emb.features[train_idx], targets, self.task_, self.seed
                )
            data = TrainData(part, targets, emb.features[train_idx])
            cfg = self._train_config(progress=False, workdir=None)
            backbone, head, _ = strategy.fit(
                copy.deepcopy(original), head, self.task_, data, None, cfg
            )
            held = Source(self.modality, [emb.items[i] for i in test_idx], origin="check")
            found = strategy.features(backbone, held, self._extract_fresh)
            if len(found.items) != len(test_idx):
                raise RuntimeError("the check lost held-out items")
            with torch.no_grad():
                return self.task_.probabilities(
                    strategy.logits(head.eval(), found.features)
                ).numpy()

        return fit_fold

    def _extract_fresh(self, backbone, source: Source):
        from ..features.extract import Extractor

        return Extractor(backbone, precision=self.precision, device=self.device, cache=False).run(
            source
        )

    def _back_to_probe(self, pretrained, probe) -> None:
        """The probe on the pre-trained backbone, as linear-probe would have left it."""
        from ..zoo import load_backbone

        self.strategy_ = LinearProbe()
        self.strategy_name_ = "linear-probe"
        self.head_ = probe.eval()
        self.history_ = []
        self.backbone_trained_ = False
        weights = self.weights or None
        self.backbone_ = load_backbone(pretrained.name, self.modality, weights, self.preprocess)

    def _record(self, check: Check, name: str) -> None:
        self.check_ = check
        line = check.sentence(name)
        self.strategy_reason_ = f"{self.strategy_reason_}; {line}"
        self._say(f"auto check: {line}")

    def _say(self, line: str) -> None:
        if self.verbose:
            print(line, file=sys.stderr, flush=True)
