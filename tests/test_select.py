"""Choosing before training: transferability scores against known answers, ranking of candidate
backbones and cut layers, the no-transfer control (and the `pixels` strategy behind it), and
`model="auto"` / layer advice in the estimator.

Real data is made at test time: scikit-learn's 8x8 digits and scikit-image's lfw_subset, written
as PNG files. Few items each, so the whole file stays well under a minute on one core.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.optimize import minimize

from headstart.data.sources import read_source
from headstart.errors import HeadstartError
from headstart.select import scores
from headstart.select.layers import rank_layers, recommend_unfreeze
from headstart.select.rank import Candidate, parse_candidates, rank_models

LITE0 = "efficientnet_lite0"


# ---- data written at test time -----------------------------------------------------------------


def write_digits(folder: Path, per_class: int, seed: int = 0) -> Path:
    """folder/<digit>/<n>.png: `per_class` of scikit-learn's 8x8 digits per class, 0-255 grey."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    for label in range(10):
        chosen = rng.permutation(np.flatnonzero(digits.target == label))[:per_class]
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        for index in chosen:
            pixels = (digits.images[index] * 255 / 16).round().astype(np.uint8)
            Image.fromarray(pixels).save(folder / str(label) / f"{index}.png")
    return folder


@pytest.fixture(scope="module")
def lfw(tmp_path_factory) -> Path:
    """12 faces and 12 non-faces of scikit-image's lfw_subset (25 x 25 grey), as PNG files."""
    from skimage import data

    images = (data.lfw_subset() * 255).round().astype(np.uint8)
    folder = tmp_path_factory.mktemp("lfw")
    for label, start in (("face", 0), ("not-face", 100)):
        (folder / label).mkdir()
        for index in range(12):
            Image.fromarray(images[start + index]).save(folder / label / f"{index:02d}.png")
    return folder


# ---- LogME --------------------------------------------------------------------------------------


def direct_log_evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """log N(y; 0, I/beta + f f^T/alpha) / N, with a dense covariance and determinant."""
    n = len(y)
    cov = np.eye(n) / beta + f @ f.T / alpha
    sign, log_det = np.linalg.slogdet(cov)
    assert sign > 0
    quad = y @ np.linalg.solve(cov, y)
    return float(-(n * np.log(2 * np.pi) + log_det + quad) / 2 / n)


@pytest.mark.parametrize("n, d", [(60, 6), (12, 30)], ids=["tall", "wide"])
def test_logme_is_the_maximised_evidence(n, d):
    rng = np.random.default_rng(n)
    f = rng.normal(size=(n, d))
    y = f[:, :3] @ np.array([1.0, -0.5, 0.25]) + 0.5 * rng.normal(size=n)
    fit = scores.SpectralBasis(f).fit(y)
    # the evidence at the fixed point is the Gaussian marginal likelihood, computed naively
    assert fit.evidence == pytest.approx(direct_log_evidence(f, y, fit.alpha, fit.beta), abs=1e-9)
    # and no other (alpha, beta) gives a visibly higher one
    best = minimize(lambda p: -direct_log_evidence(f, y, *np.exp(p)), np.zeros(2), method="BFGS")
    assert -best.fun - fit.evidence < 1e-4
    assert fit.evidence > direct_log_evidence(f, y, fit.alpha * 3, fit.beta) + 1e-4
    assert fit.evidence > direct_log_evidence(f, y, fit.alpha, fit.beta / 3) + 1e-4


def test_logme_averages_one_hot_columns_and_orders_features():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    informative = np.eye(3)[y] * 2 + rng.normal(size=(90, 3))
    noise = rng.normal(size=(90, 3))
    basis = scores.SpectralBasis(informative)
    per_class = [basis.fit((y == c).astype(float)).evidence for c in range(3)]
    assert scores.logme(informative, y) == pytest.approx(np.mean(per_class))
    assert scores.logme(informative, y) > scores.logme(noise, y) + 0.1


def test_logme_of_sparse_wide_features_equals_dense():
    from scipy import sparse

    rng = np.random.default_rng(2)
    dense = rng.random((30, 200)) * (rng.random((30, 200)) < 0.05)
    y = rng.integers(0, 2, 30)
    assert scores.logme(sparse.csr_matrix(dense), y) == pytest.approx(scores.logme(dense, y))


# ---- H-score, NCE, LEEP: known answers -----------------------------------------------------------


def test_h_score_of_one_feature_is_explained_variance():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 200)
    f = (np.where(y == 1, 1.0, -1.0) + 0.5 * rng.normal(size=400))[:, None]
    means = np.array([f[y == c].mean() for c in (0, 1)])
    expected = ((means - f.mean()) ** 2).mean() / f.var()  # balanced classes
    assert scores.h_score(f, y, shrink=False) == pytest.approx(expected, rel=1e-9)
    noisy = f + 3 * rng.normal(size=f.shape)
    assert scores.h_score(f, y) > scores.h_score(noisy, y)


@pytest.mark.parametrize(
    "z, expected",
    [
        (np.array([0, 0, 1, 1, 2, 2]), 0.0),  # source classes determine the label
        (np.array([5, 5, 5, 5, 5, 5]), -np.log(3)),  # one source class: -H(Y)
    ],
    ids=["determined", "uninformative"],
)
def test_nce_known_answers(z, expected):
    y = np.array([0, 0, 1, 1, 2, 2])
    assert scores.nce(z, y) == pytest.approx(expected)


def test_leep_known_answers_and_order():
    y = np.array([0, 1, 0, 1, 1, 0])
    sharp = np.eye(4)[[2, 3, 2, 3, 3, 2]]  # source class 2 <=> label 0, 3 <=> label 1
    assert scores.leep(sharp, y) == pytest.approx(0.0, abs=1e-12)
    uniform = np.full((6, 4), 0.25)  # P(y | z) = P(y): the log-likelihood of the label prior
    assert scores.leep(uniform, y) == pytest.approx(np.log(0.5))
    blurred = 0.6 * sharp + 0.1
    assert np.log(0.5) < scores.leep(blurred, y) < 0.0


# ---- ranking candidates and the no-transfer control ----------------------------------------------


def test_digits_no_pretrained_candidate_beats_raw_pixels(tmp_path):
    source = read_source(write_digits(tmp_path / "digits", per_class=10))
    ranking = rank_models(source, [Candidate(LITE0)], workers=0)
    rows = {r.kind: r for r in ranking.rows}
    raw, lite0 = rows["no-transfer"], rows["pre-trained"]
    assert raw.cv_accuracy > lite0.cv_accuracy
    assert ranking.transfer_helps is False
    assert ranking.verdict.startswith("NO pre-trained candidate beats raw input")
    assert lite0.leep is not None and lite0.nce is not None  # ImageNet head: LEEP and NCE apply
    assert raw.leep is None and raw.n == lite0.n == 100


def test_random_init_copy_ranks_below_pretrained(lfw):
    ranking = rank_models(read_source(lfw), [Candidate(LITE0, pretrained=False), Candidate(LITE0)])
    order = [r.candidate for r in ranking.rows if r.kind != "no-transfer"]
    assert order == [LITE0, f"random:{LITE0}"]
    assert ranking.top.candidate == LITE0
    logmes = [r["logme"] for r in ranking.to_json()]
    assert logmes == sorted(logmes, reverse=True)
    assert {"candidate", "logme", "cv_accuracy", "seconds", "rank"} <= set(ranking.to_json()[0])


def test_ranking_takes_a_stratified_sample(lfw):
    ranking = rank_models(read_source(lfw), [Candidate(LITE0)], max_items=16)
    assert {r.n for r in ranking.rows} == {16}


def test_candidates_parse_and_check(tmp_path):
    found = parse_candidates("efficientnet_lite0, random:efficientnet_lite1", "image")
    assert found == [Candidate(LITE0), Candidate("efficientnet_lite1", pretrained=False)]
    assert {c.model for c in parse_candidates("", "image")} >= {LITE0}
    with pytest.raises(HeadstartError, match="takes text input"):
        parse_candidates("minilm_l6", "image")
    with pytest.raises(HeadstartError, match="does not exist"):
        parse_candidates("", "image", LITE0, tmp_path / "missing.pth")


@pytest.mark.parametrize(
    "labels, needle",
    [
        ({"only": 3}, "at least two classes"),
        ({"1.5": 2, "2.25": 2}, "regression"),
    ],
    ids=["one-class", "regression"],
)
def test_bad_input_is_one_line_error(tmp_path, labels, needle):
    rng = np.random.default_rng(0)
    for label, count in labels.items():
        (tmp_path / label).mkdir()
        for i in range(count):
            pixels = rng.integers(0, 255, (8, 8), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / label / f"{i}.png")
    with pytest.raises(HeadstartError) as caught:
        rank_models(read_source(tmp_path))
    assert needle in str(caught.value) and "\n" not in str(caught.value)


# ---- cut layers -------------------------------------------------------------------------------


@pytest.mark.parametrize("modality", ["image", "text"])
def test_layer_cuts_end_with_the_plain_embedding(modality, lfw, tmp_path):
    from headstart.api.embed import embed

    if modality == "image":
        source, model = read_source(lfw), LITE0
    else:
        table = tmp_path / "texts.csv"
        rows = ["text,label"] + [f"what a lovely film number {i},pos" for i in range(6)]
        rows += [f"a dull and tired film number {i},neg" for i in range(6)]
        table.write_text("\n".join(rows) + "\n")
        source, model = read_source(table), "minilm_l6"
    ranking = rank_layers(source, Candidate(model), workers=0)
    layers = sorted((r for r in ranking.rows if r.kind == "layer"), key=lambda r: r.group)
    groups = ranking.extra["groups"]
    assert [r.group for r in layers] == list(range(groups))
    assert 1 <= ranking.extra["unfreeze"] <= groups
    assert ranking.extra["reason"] in ranking.verdict
    # the top cut is the backbone's usual embedding: same scores as ranking the model itself
    plain = embed(source, model, workers=0)
    assert layers[-1].dim == plain.features.shape[1]
    y = np.unique([i.label for i in plain.items], return_inverse=True)[1]
    assert layers[-1].logme == pytest.approx(scores.logme(plain.features, y), abs=2e-3)


@pytest.mark.parametrize(
    "profile, unfreeze",
    [([0.1, 0.2, 0.3, 0.4], 1), ([0.1, 0.5, 0.3, 0.2], 2), ([0.4, 0.1, 0.1, 0.1], 3)],
    ids=["top", "middle", "bottom"],
)
def test_unfreeze_recommendation_follows_the_peak(profile, unfreeze):
    advice = recommend_unfreeze(profile, [f"g{i}" for i in range(4)])
    assert advice["unfreeze"] == unfreeze and advice["groups"] == 4


def test_freeze_unfreeze_trains_only_the_top_groups():
    from headstart.strategies import get_strategy

    assert get_strategy("freeze-unfreeze:groups=2").trainable_groups(0, 8) == 2
    assert get_strategy("freeze-unfreeze").trainable_groups(0, 8) == 8
    assert get_strategy("gradual:groups=2").trainable_groups(5, 8) == 2
    with pytest.raises(HeadstartError, match="at least 1"):
        get_strategy("freeze-unfreeze:groups=0")


# ---- the estimator: pixels strategy, model="auto" ---------------------------------------------


def test_pixels_strategy_round_trip(tmp_path):
    from headstart.estimators import ImageClassifier

    data = write_digits(tmp_path / "digits", per_class=15)
    clf = ImageClassifier(strategy="pixels:side=8,grey=true", verbose=False)
    clf.fit(data, run_dir=tmp_path / "r")
    assert clf.backbone_ is None and clf.metrics_["accuracy"] >= 0.8
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["head"]["kind"] == "pixels" and config["head"]["features"] == 64
    loaded = ImageClassifier.load(tmp_path / "r")
    files = sorted(str(p) for p in data.rglob("*.png"))[:20]
    np.testing.assert_array_equal(loaded.predict_proba(files), clf.predict_proba(files))
    assert list(tmp_path.joinpath("r").glob("*.pkl")) == []


def test_pixels_strategy_is_for_images_only():
    from headstart.estimators import TextClassifier

    with pytest.raises(HeadstartError, match="tfidf"):
        TextClassifier(strategy="pixels").fit(["a b", "c d", "e f", "g h"], y=[0, 1, 0, 1])


def test_fit_model_auto_records_the_ranking(lfw, tmp_path, capsys, monkeypatch):
    from headstart.estimators import ImageClassifier
    from headstart.select import rank

    # two candidates instead of every bundled one, to stay quick; the control must lose
    controls = [Candidate(LITE0, pretrained=False), Candidate(LITE0)]
    monkeypatch.setattr(rank, "default_candidates", lambda modality: controls)
    clf = ImageClassifier(model="auto", strategy="linear-probe")
    clf.fit(lfw, run_dir=tmp_path / "run")
    chosen = clf.fit_info_["model_selection"]["chosen"]
    assert chosen == LITE0 and clf.backbone_.name == chosen
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    ranking = config["fit"]["model_selection"]["ranking"]
    assert ranking[0]["logme"] >= ranking[-1]["logme"]
    assert config["backbone"]["name"] == chosen
    assert f"model auto -> {chosen}" in capsys.readouterr().err


def test_h_score_of_two_items_is_finite():
    """One item per class: Ledoit-Wolf cannot shrink a rank-one covariance into an invertible
    one, so h_score falls back to the pseudo-inverse (it used to crash `fit` with model auto)."""
    value = scores.h_score(np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 2.0]]), np.array([0, 1]))
    assert np.isfinite(value)
