"""`auto` within a budget: budgets, the plan from measured costs, the check against the probe, the
stop at the deadline, and progress lines where no terminal is attached."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from test_layer_scan import tiny_text_folder, write_texts

from headstart.auto.budget import Deadline, format_seconds, parse_budget
from headstart.auto.check import cross_validated
from headstart.auto.cost import Costs
from headstart.auto.plan import MIN_VAL, Situation, choose
from headstart.errors import HeadstartError
from headstart.estimators import TextClassifier
from headstart.modalities.text import TextModality
from headstart.progress import Heartbeat
from headstart.tasks import Classification

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster

FAST = {"epochs": 1, "batch_size": 8, "precision": "fp32", "device": "cpu", "verbose": True}


# ---- budgets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("2.5m", 150), ("90", 90), (45, 45), (None, None)],
)
def test_budget_parses_durations(given, seconds):
    assert parse_budget(given) == seconds


@pytest.mark.parametrize("given", ["5 minutes", "m5", "-3s", "0", "1x"])
def test_budget_rejects_what_it_cannot_read_in_one_line(given):
    with pytest.raises(HeadstartError, match="budget") as caught:
        parse_budget(given)
    assert "\n" not in str(caught.value)


def test_deadline_counts_down_and_passes():
    assert Deadline(None).remaining() is None and not Deadline(None).passed()
    soon = Deadline(0.05)
    assert 0 < soon.remaining() <= 0.05 and not soon.passed()
    time.sleep(0.06)
    assert soon.passed() and soon.remaining() == 0
    assert format_seconds(45) == "45 s" and format_seconds(150) == "2.5 min"


# ---- the plan ----------------------------------------------------------------------------------


def situation(counts, *, modality="text", remaining=None, n_val=0, probe_cv=0.7, device="cpu"):
    return Situation(
        task_kind="classification",
        one_class_per_item=True,
        modality=modality,
        counts=counts,
        probe_cv=probe_cv,
        device_type=device,
        n_val=n_val,
        epochs=5,
        remaining=remaining,
    )


COSTS = Costs(step=1.0, batch=32, embed_item=0.01)  # one second a step of 32 items


def test_few_labelled_texts_get_contrastive_with_a_cross_validated_check():
    plan = choose(situation({"a": 16, "b": 16}), lambda: COSTS, None, lambda cap: 512)
    assert plan.strategy == "contrastive" and plan.check == "cross-validation"
    assert plan.folds == 3 and "3-fold cross-validation of the 32 labelled items" in plan.reason
    # 512 pairs = 32 steps of 16 pairs (each 32 texts: 1 s); a fold trains on 22 items, so
    # (22/32)^2 of the pairs: 16 steps, then embeds its 22 texts; the held-out texts are
    # embedded once (32), and the final fit is 32 steps and 32 texts
    assert plan.seconds == pytest.approx(3 * (16 + 0.22) + 0.32 + 32 + 0.32)


def test_a_short_budget_buys_fewer_folds_then_fewer_pairs_then_only_the_probe():
    counts = {"a": 16, "b": 16}
    two_folds = choose(situation(counts, remaining=70), lambda: COSTS, None, lambda cap: 512)
    assert two_folds.strategy == "contrastive" and two_folds.folds == 2
    cut = choose(situation(counts, remaining=40), lambda: COSTS, None, lambda cap: 512)
    assert cut.strategy.startswith("contrastive:max_pairs=") and cut.seconds <= 40 * 0.85
    probe = choose(situation(counts, remaining=2), lambda: COSTS, None, lambda cap: 512)
    assert probe.strategy == "linear-probe" and "fits the budget" in probe.reason


def test_the_cost_is_measured_only_where_something_would_train():
    measured = []

    def costs():
        measured.append(1)
        return COSTS

    few_images = choose(situation({"a": 5, "b": 5}, modality="image"), costs)
    assert few_images.strategy == "linear-probe" and "few labels" in few_images.reason
    good_probe = choose(situation({"a": 50, "b": 50}, probe_cv=0.99), costs)
    assert good_probe.strategy == "linear-probe" and "already separate" in good_probe.reason
    assert not measured


def test_layer_advice_is_read_only_when_freeze_unfreeze_is_chosen():
    calls = []

    def scan():
        calls.append(1)
        return {"unfreeze": 2, "groups": 8, "reason": "LogME peaks at group 5."}

    images = situation({"a": 50, "b": 50}, modality="image")
    plan = choose(images, lambda: COSTS, scan)
    assert plan.strategy == "freeze-unfreeze:groups=2" and "layer scan: LogME peaks" in plan.reason
    choose(situation({"a": 16, "b": 16}), lambda: COSTS, scan, lambda cap: 512)  # contrastive
    assert len(calls) == 1


def test_epochs_are_cut_to_the_budget():
    many = situation({"a": 400, "b": 400}, modality="image", remaining=100, n_val=MIN_VAL)
    plan = choose(many, lambda: COSTS)  # an epoch: 25 steps + 2 s of validation, + 2 s check
    assert plan.strategy == "freeze-unfreeze" and plan.epochs == 3 and plan.seconds == 83
    assert plan.check == "validation" and f"the {MIN_VAL} validation items" in plan.reason


def test_gpu_fine_tunes_many_texts_and_a_cpu_without_budget_never_trains_on_huge_data():
    many = {"neg": 600, "pos": 600}
    gpu = choose(situation(many, device="cuda", n_val=300), lambda: COSTS, None, lambda c: 20000)
    assert gpu.strategy == "fine-tune" and "1200 labelled texts and a GPU" in gpu.reason
    huge = situation({"neg": 3000, "pos": 3000}, n_val=1500)
    assert choose(huge, lambda: COSTS).strategy == "linear-probe"


# ---- the check ----------------------------------------------------------------------------------


def separable(n=30, seed=0):
    rng = np.random.default_rng(seed)
    targets = np.arange(n) % 2
    features = rng.normal(size=(n, 4)).astype(np.float32)
    features[:, 0] += 0.6 * (2 * targets - 1)  # a weak signal: the probe is far from perfect
    return features, targets


def test_check_keeps_the_trained_model_only_when_it_beats_the_probe_out_of_fold():
    task = Classification(["a", "b"])
    features, targets = separable()

    def perfect(train_idx, test_idx):
        return np.eye(2, dtype=np.float32)[targets[test_idx]]

    def useless(train_idx, test_idx):
        return np.full((len(test_idx), 2), 0.5, np.float32)

    won = cross_validated(task, features, targets, 3, 0, perfect, Deadline(None))
    assert won.keep_trained and won.trained == 1.0 and won.probe < 1.0
    assert won.trained_outputs.shape == (30, 2) and won.probe_outputs.shape == (30, 2)
    lost = cross_validated(task, features, targets, 3, 0, useless, Deadline(None))
    assert not lost.keep_trained and "kept the probe instead of" in lost.sentence("contrastive")


def test_check_keeps_the_probe_when_the_budget_runs_out():
    task = Classification(["a", "b"])
    features, targets = separable()
    spent = Deadline(0.0001)
    time.sleep(0.001)
    check = cross_validated(task, features, targets, 3, 0, lambda a, b: 1 / 0, spent)
    assert check.trained is None and not check.keep_trained
    assert "budget ran out" in check.sentence("contrastive")


# ---- progress lines ---------------------------------------------------------------------------


def test_heartbeat_speaks_at_its_interval_and_once_at_the_end():
    lines = []
    beat = Heartbeat("training", every=3600, write=lines.append)
    for done in range(1, 11):
        beat(done, 10)
    assert lines == [lines[0]] and lines[0].startswith("training: 10/10 steps")
    lines.clear()
    beat = Heartbeat("tuning", every=0, write=lines.append)
    beat(1, 4)
    assert "1/4 steps" in lines[0] and "left" in lines[0]


# ---- end to end, tiny models -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory) -> str:
    return tiny_text_folder(tmp_path_factory.mktemp("tiny_bert"), "bert")


def test_auto_on_few_texts_cross_validates_contrastive_and_reports_out_of_fold(
    tiny_text, tmp_path, capsys
):
    data = write_texts(tmp_path / "train.csv", 24)
    clf = TextClassifier(tiny_text, "auto", **FAST).fit(data, run_dir=str(tmp_path / "run"))
    err = capsys.readouterr().err
    assert "strategy auto -> contrastive" in err and "auto check:" in err
    info = json.loads((tmp_path / "run" / "config.json").read_text())["fit"]
    check = info["auto"]["check"]
    assert check["n"] == 24 and check["how"].startswith("3-fold cross-validation")
    assert clf.strategy_name_ == ("contrastive" if check["kept"] == "trained" else "linear-probe")
    # every labelled item trains the model kept; its out-of-fold outputs are the validation
    assert info["n_train"] == 24 and clf.metrics_["n"] == 24
    assert clf.predict(["the cat sat"])[0] in ("pets", "money")


def test_auto_reverts_to_the_probe_when_training_loses_on_validation(
    tiny_text, tmp_path, monkeypatch
):
    """A validation split large enough to decide on: the trained model is scored against the
    probe there, and a trained model that loses is thrown away."""
    import headstart.auto.check as check_module

    monkeypatch.setattr("headstart.auto.plan.MIN_VAL", 10)
    monkeypatch.setattr("headstart.estimators.auto.MIN_VAL", 10)
    real = check_module.score
    calls = []

    def probe_always_wins(task, outputs, targets):
        calls.append(1)
        return real(task, outputs, targets) - (1.0 if len(calls) == 1 else 0.0)  # trained first

    monkeypatch.setattr(check_module, "score", probe_always_wins)
    data = write_texts(tmp_path / "train.csv", 60)
    clf = TextClassifier(tiny_text, "auto", **FAST).fit(data)
    assert clf.plan_.check == "validation" and clf.plan_.strategy == "contrastive"
    assert clf.strategy_name_ == "linear-probe" and not clf.backbone_trained_
    assert "kept the probe instead of contrastive" in clf.strategy_reason_
    assert clf.fit_info_["auto"]["check"]["kept"] == "probe"
    pretrained = TextClassifier(tiny_text, "linear-probe", **FAST).fit(data)
    texts = ["the cat sat on the mat", "stock price fell today"]
    assert np.allclose(clf.predict_proba(texts), pretrained.predict_proba(texts), atol=1e-5)


def test_a_budget_stops_training_with_the_best_so_far(tiny_text, tmp_path):
    data = write_texts(tmp_path / "train.csv", 40)
    clf = TextClassifier(tiny_text, "fine-tune", **{**FAST, "epochs": 50}, budget="1s")
    started = time.perf_counter()
    clf.fit(data)
    assert time.perf_counter() - started < 30  # 50 epochs would take far longer
    assert len(clf.history_) < 50 and clf.fit_info_["budget_seconds"] == 1.0


def test_contrastive_stops_at_the_deadline(tiny_text, tmp_path):
    from headstart.engine.train import TrainConfig
    from headstart.strategies import get_strategy
    from headstart.zoo import load_backbone
    from headstart.zoo.entry import materialize

    backbone = materialize(load_backbone(tiny_text, "text"))
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    strategy = get_strategy("contrastive")
    texts = ["the cat sat", "stock fell", "dog ran", "price rose"]
    cfg = TrainConfig(device="cpu", progress=False, deadline=time.monotonic() - 1)
    losses = strategy.tune(backbone, texts, np.array([[0, 2, 1], [1, 3, 1], [0, 1, 0]]), cfg)
    assert strategy.stopped_at_budget and losses == [0.0]
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())


def test_cli_fit_takes_a_budget_and_reads_it(tmp_path, monkeypatch, capsys, tiny_text):
    from test_layer_scan import run_cli

    data = write_texts(tmp_path / "train.csv", 24)
    code, _, err = run_cli(
        monkeypatch, capsys, "fit", data, "--model", tiny_text, "--budget", "soon",
        "--out", tmp_path / "run",
    )  # fmt: skip
    assert code == 2 and "Cannot read the budget 'soon'" in err


def test_text_modality_declares_its_auto_options():
    assert ("contrastive", "few") in TextModality.auto_gains


def test_compare_with_a_budget_puts_auto_beside_the_strategies(tiny_text, tmp_path):
    from headstart.compare import compare

    data = write_texts(tmp_path / "train.csv", 30)
    test = write_texts(tmp_path / "test.csv", 10, seed=1)
    result = compare(
        data, tmp_path / "grid", val=test, model=tiny_text, strategies="linear-probe,auto",
        per_class="all", seeds=1, epochs=1, budget="2m",
    )  # fmt: skip
    rows = {row["strategy"]: row for row in result.rows}
    assert set(rows) == {"linear-probe", "auto"} and rows["auto"]["status"] == "ok"
    assert "| budget per fit | 2.0 min |" in (tmp_path / "grid" / "report.md").read_text()


def test_cli_fit_with_one_image_per_class_says_there_is_no_validation(
    tmp_path, monkeypatch, capsys
):
    from conftest import write_noise_images
    from test_layer_scan import run_cli

    write_noise_images(tmp_path / "data" / "a", 1, side=32, seed=0)
    write_noise_images(tmp_path / "data" / "b", 1, side=32, seed=1)
    code, out, err = run_cli(
        monkeypatch, capsys, "fit", tmp_path / "data", "--out", tmp_path / "run", "--device", "cpu"
    )
    assert code == 0, err
    assert "validation: none (a class has a single item" in out
    assert "model auto ->" in err  # several bundled image models: auto ranks them
