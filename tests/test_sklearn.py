"""The scikit-learn contract: fit(X, y), score, classes_, clone, cross_val_score, GridSearchCV,
Pipeline with Embedder, NotFittedError, sklearn's estimator checks where they apply; the RunSpec;
prediction records; and from-scratch reading nothing pre-trained.

Texts use the no-backbone tfidf strategy, pictures the pixels one, except where a backbone is the
point (Embedder, linear-probe in a grid, from-scratch): then the bundled minilm_l6 and
efficientnet_lite0 on a dozen items.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import sklearn.exceptions
from conftest import write_pictures
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.utils import estimator_checks as checks

from headstart.errors import HeadstartError
from headstart.estimators import Embedder, ImageClassifier, NotFittedError, TextClassifier
from headstart.predict import records
from headstart.runs.spec import RunSpec
from headstart.runs.store import read_spec

GOOD = [
    "a wonderful warm film",
    "superb acting and a moving story",
    "I loved every minute",
    "a delightful charming comedy",
    "beautifully shot and acted",
    "one of the best films this year",
    "funny touching and full of life",
    "a joy from start to finish",
    "brilliant performances all around",
    "an uplifting story told with care",
    "lovely music and an excellent cast",
    "smart witty and heartfelt",
]
BAD = [
    "a dull lifeless film",
    "wooden acting and a messy plot",
    "I hated every minute",
    "a tedious unfunny comedy",
    "badly shot and poorly acted",
    "one of the worst films this year",
    "boring clumsy and far too long",
    "a chore from start to finish",
    "awful performances all around",
    "a depressing story told without care",
    "grating music and a terrible cast",
    "stupid lazy and cynical",
]
TEXTS = [t for pair in zip(GOOD, BAD, strict=True) for t in pair]  # alternating: folds mix
LABELS = ["pos", "neg"] * len(GOOD)
QUIET = dict(verbose=False, device="cpu", workers=0)


def tfidf(**changes) -> TextClassifier:
    return TextClassifier(strategy="tfidf", **{**QUIET, **changes})


# ---- fit(X, y), score, classes_ ----------------------------------------------------------------


def test_fit_x_y_with_lists_then_score_and_classes():
    clf = tfidf()
    assert clf.fit(TEXTS, LABELS) is clf  # y is the second positional argument
    assert list(clf.classes_) == ["neg", "pos"]
    predicted = clf.predict(TEXTS)
    expected = float(np.mean([p == t for p, t in zip(predicted, LABELS, strict=True)]))
    assert clf.score(TEXTS, LABELS) == pytest.approx(expected)
    assert clf.score(TEXTS, LABELS) > 0.5  # texts it trained on, mostly
    flipped = ["neg" if label == "pos" else "pos" for label in LABELS]
    assert clf.score(TEXTS, flipped) == pytest.approx(1.0 - expected)


def test_linear_probe_fit_x_y_reads_y_as_labels():
    """Before fit(X, y, *, val) the second argument was validation data."""
    clf = TextClassifier("minilm_l6", strategy="linear-probe", **QUIET).fit(TEXTS[:12], LABELS[:12])
    assert clf.fit_info_["n_train"] + clf.fit_info_["n_val"] == 12
    assert clf.score(TEXTS[12:], LABELS[12:]) >= 0.5


def test_integer_labels_come_back_as_integers():
    y = [1 if label == "pos" else 0 for label in LABELS]
    clf = tfidf().fit(TEXTS, y)
    assert clf.classes_.tolist() == [0, 1]
    assert set(clf.predict(TEXTS)) <= {0, 1}
    assert all(type(v) is int for v in clf.predict(TEXTS[:3]))
    assert clf.score(TEXTS, y) == pytest.approx(
        np.mean(np.array(clf.predict(TEXTS)) == np.array(y))
    )


def test_regression_score_is_r2(tmp_path):
    from sklearn.metrics import r2_score

    values = [float(i % 5) for i in range(len(TEXTS))]
    clf = tfidf(task="regression").fit(TEXTS, values)
    assert len(clf.classes_) == 0
    assert clf.score(TEXTS, values) == pytest.approx(r2_score(values, clf.predict(TEXTS)))


def test_multilabel_score_is_exact_set_match():
    y = [f"{label}|long" if len(t) > 25 else label for t, label in zip(TEXTS, LABELS, strict=True)]
    clf = tfidf(task="multilabel").fit(TEXTS, y)
    predicted = clf.predict(TEXTS)
    pairs = zip(predicted, y, strict=True)
    same = [set(p.split("|")) - {""} == set(t.split("|")) for p, t in pairs]
    assert clf.score(TEXTS, y) == pytest.approx(np.mean(same))


def test_transform_is_an_array_and_embeddings_keep_items():
    clf = tfidf().fit(TEXTS, LABELS)
    features = clf.transform(TEXTS[:4])
    assert isinstance(features, np.ndarray) and features.shape[0] == 4
    assert features.shape[1] == clf.fit_info_["tfidf"]["terms"]
    found = clf.embeddings(["a fine film", "  "])
    assert [i.id for i in found.items] == ["1"] and [s.id for s in found.skipped] == ["2"]
    with pytest.raises(HeadstartError, match=r"first: 2: empty text"):
        clf.transform(["a fine film", "  "])


def test_columns_and_run_dir_belong_to_fit(tmp_path):
    with pytest.raises(HeadstartError, match="text_col is an argument of fit"):
        TextClassifier(text_col="body")
    with pytest.raises(HeadstartError, match="run_dir is an argument of fit"):
        TextClassifier().set_params(run_dir="x")
    table = tmp_path / "t.csv"
    rows = zip(TEXTS, LABELS, strict=True)
    table.write_text("body,stars\n" + "".join(f'"{t}",{y}\n' for t, y in rows))
    clf = tfidf().fit(table, text_col="body", label_col="stars", run_dir=tmp_path / "run")
    assert (clf.text_col_, clf.label_col_) == ("body", "stars")
    assert clf.evaluate(table)["n"] == len(TEXTS)  # the columns fit used
    loaded = TextClassifier.load(tmp_path / "run")
    assert loaded.text_col_ == "body" and loaded.evaluate(table)["n"] == len(TEXTS)


# ---- scikit-learn's tools ----------------------------------------------------------------------


def test_clone_keeps_params_and_drops_fitted_state():
    clf = tfidf(seed=3, epochs=2).fit(TEXTS, LABELS)
    copy = clone(clf)
    assert copy.get_params() == clf.get_params()
    assert not hasattr(copy, "task_")
    with pytest.raises(NotFittedError):
        copy.predict(TEXTS[:1])


def test_cross_val_score_with_tfidf():
    scores = cross_val_score(tfidf(), TEXTS, LABELS, cv=3)
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))


def test_grid_search_over_strategy():
    grid = GridSearchCV(
        TextClassifier("minilm_l6", **QUIET),
        {"strategy": ["tfidf", "linear-probe"]},
        cv=2,
    )
    grid.fit(TEXTS, LABELS)
    assert grid.best_params_["strategy"] in ("tfidf", "linear-probe")
    assert len(grid.cv_results_["mean_test_score"]) == 2
    assert grid.best_estimator_.strategy_name_ == grid.best_params_["strategy"]
    assert grid.score(TEXTS, LABELS) == grid.best_estimator_.score(TEXTS, LABELS)


def test_pipeline_of_embedder_and_logistic_regression(minilm):
    pipe = Pipeline([("embed", Embedder("minilm_l6")), ("clf", LogisticRegression())])
    pipe.fit(TEXTS[:16], LABELS[:16])
    assert pipe.named_steps["embed"].n_features_out_ == minilm.feature_dim
    assert pipe.named_steps["embed"].modality_ == "text"
    assert pipe.score(TEXTS[16:], LABELS[16:]) >= 0.5
    features = pipe.named_steps["embed"].transform(TEXTS[:2])
    assert features.shape == (2, minilm.feature_dim)
    with pytest.raises(HeadstartError, match="first: 2: empty text"):
        pipe.predict(["fine", " "])


def test_embedder_on_pictures_guesses_images(image_folder, lite0):
    paths = sorted(image_folder.rglob("*.png"))[:3]
    embedder = Embedder().fit(paths)
    assert embedder.modality_ == "image" and embedder.model_ == "efficientnet_lite0"
    assert embedder.transform(paths).shape == (3, lite0.feature_dim)


def test_image_classifier_pixels_with_lists(tmp_path, sample_pictures):
    paths = write_pictures(tmp_path / "pics", sample_pictures)
    labels = [p.parent.name for p in paths]
    clf = ImageClassifier(strategy="pixels:side=8", **QUIET).fit([str(p) for p in paths], labels)
    assert list(clf.classes_) == ["colour", "grey"]
    assert 0.0 <= clf.score(paths, labels) <= 1.0
    assert clf.transform(paths[:2]).shape == (2, 8 * 8 * 3)


def test_not_fitted_error_is_sklearns_too():
    for est in (tfidf(), Embedder()):
        call = est.predict if hasattr(est, "predict") else est.transform
        with pytest.raises(NotFittedError) as caught:
            call(["a text"])
        assert isinstance(caught.value, sklearn.exceptions.NotFittedError)
        assert isinstance(caught.value, ValueError) and isinstance(caught.value, AttributeError)
        assert isinstance(caught.value, HeadstartError)
    from sklearn.utils.validation import check_is_fitted

    with pytest.raises(sklearn.exceptions.NotFittedError):
        check_is_fitted(tfidf())
    check_is_fitted(tfidf().fit(TEXTS, LABELS))


# ---- sklearn.utils.estimator_checks ------------------------------------------------------------

# Checks that apply: they need no data, or only call a method before fit.
APPLIED = [
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_no_attributes_set_in_init",
    "check_parameters_default_constructible",
    "check_get_params_invariance",
    "check_set_params",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_estimator_tags_renamed",
    "check_valid_tag_types",
    "check_mixin_order",
]
# Applied to Embedder only: the classifiers' __init__ takes **unknown so that a misspelt
# parameter is a one-line error with "Did you mean ...?"; this check passes every name in the
# signature, 'unknown' included, with odd values and so reaches that error.
EMBEDDER_ONLY = {"check_do_not_raise_errors_in_init_or_set_params"}
UNFITTED = {"classifier": "check_estimators_unfitted", "transformer": "check_transformers_unfitted"}
# Every other check fits on numeric matrices (make_blobs, random floats, sparse matrices, NaNs,
# dtypes, sample weights, pandas/polars frames...). These estimators read texts or image paths;
# a numeric row is neither, so those checks test nothing headstart has. What some of them
# check on numbers is tested above on texts: check_dont_overwrite_parameters and
# check_estimators_overwrite_params (test_fit_leaves_params_alone), check_fit_check_is_fitted
# (test_not_fitted_error_is_sklearns_too), check_estimators_fit_returns_self, and
# check_classifiers_classes (test_fit_x_y_with_lists_then_score_and_classes).
SKIPPED_NUMERIC_DATA = sorted(
    name
    for name in dir(checks)
    if name.startswith("check_")
    and name not in {*APPLIED, *UNFITTED.values(), "check_estimator", "check_is_fitted"}
)


@pytest.mark.parametrize("name", APPLIED)
@pytest.mark.parametrize("make", [tfidf, ImageClassifier, Embedder], ids=lambda m: m.__name__)
def test_estimator_checks_that_apply(name, make):
    est = make()
    if name in EMBEDDER_ONLY and not isinstance(est, Embedder):
        pytest.skip("the classifiers turn unknown parameters into one-line errors on purpose")
    getattr(checks, name)(type(est).__name__, est)


def test_estimator_checks_before_fit():
    checks.check_estimators_unfitted("TextClassifier", tfidf())
    checks.check_transformers_unfitted("Embedder", Embedder())


def test_skipped_checks_are_listed():
    assert "check_classifiers_train" in SKIPPED_NUMERIC_DATA  # the list is not empty by mistake
    assert not set(APPLIED) & set(SKIPPED_NUMERIC_DATA)


def test_fit_leaves_params_alone():
    clf = tfidf()
    before = {k: v for k, v in vars(clf).items() if not k.startswith("_")}
    clf.fit(TEXTS, LABELS)
    public = {k: v for k, v in vars(clf).items() if not k.startswith("_")}
    added = set(public) - set(before)
    assert all(k.endswith("_") for k in added), added
    assert {k: public[k] for k in before} == before


# ---- RunSpec, records --------------------------------------------------------------------------


def test_run_spec_round_trips_and_reads_the_old_layout(tmp_path):
    clf = tfidf().fit(TEXTS, LABELS, run_dir=tmp_path / "run")
    spec = read_spec(tmp_path / "run")
    assert spec == RunSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert spec.strategy["name"] == "tfidf" and spec.backbone is None
    assert spec.task == {"kind": "classification", "classes": ["neg", "pos"]}
    assert spec.columns == {"text_col": None, "label_col": None}
    assert set(spec.params) == set(TextClassifier._param_names())
    assert spec.fit["train_fingerprint"] == clf.fit_info_["train_fingerprint"]
    # a config.json of the first layout: table columns and run_dir among the params
    old = spec.to_json()
    del old["columns"]
    old["params"].update(text_col="body", label_col=None, run_dir="x", resume=False)
    (tmp_path / "run" / "config.json").write_text(json.dumps(old))
    loaded = TextClassifier.load(tmp_path / "run")
    assert loaded.text_col_ == "body" and "run_dir" not in loaded.get_params()
    np.testing.assert_allclose(loaded.predict_proba(TEXTS[:3]), clf.predict_proba(TEXTS[:3]))
    with pytest.raises(HeadstartError, match="not a headstart run config"):
        RunSpec.from_json({"format": "something-else"})


def test_records_are_what_predict_json_prints():
    clf = tfidf().fit(TEXTS, LABELS)
    rows = records(clf, ["a fine film", "  ", "a dull film"], top_k=2)
    assert [r["input"] for r in rows] == ["1", "2", "3"]
    assert rows[1] == {"input": "2", "error": "empty text"}
    proba = clf.predict_proba(["a fine film"])[0]
    first = rows[0]
    assert first["label"] == clf.predict(["a fine film"])[0]
    assert first["probability"] == round(float(proba.max()), 4)
    assert [t["label"] for t in first["top"]] == [clf.classes_[i] for i in proba.argsort()[::-1]]
    assert "top" not in records(clf, ["a fine film"])[0]
    json.dumps(rows)  # the server and --json print them as they are


def test_cli_predict_does_not_reach_into_the_estimator():
    from pathlib import Path

    import headstart.cli.train as train

    source = Path(train.__file__).read_text()
    assert "_outputs_for" not in source and "records(" in source


# ---- from-scratch reads nothing pre-trained ----------------------------------------------------


def _refuse(*args, **kwargs):
    raise AssertionError("from-scratch opened pre-trained weights or fitted a probe")


def test_from_scratch_never_opens_pretrained_weights(monkeypatch, isolated_cache):
    from headstart.strategies.frozen import LinearProbe
    from headstart.zoo import weights

    readers = (weights.load_state_dict, weights.sha256_file)
    for module in [m for n, m in sys.modules.items() if n.startswith("headstart")]:
        for attr, value in list(vars(module).items()):
            if any(value is reader for reader in readers):
                monkeypatch.setattr(module, attr, _refuse)
    monkeypatch.setattr("headstart.zoo.load_backbone", _refuse)  # strategies build through it
    monkeypatch.setattr(LinearProbe, "fit_head", _refuse)
    clf = TextClassifier("minilm_l6", "from-scratch", epochs=1, batch_size=8, **QUIET)
    clf.fit(TEXTS[:10], LABELS[:10])
    assert clf.backbone_.weight_id.startswith("tuned-") and clf.backbone_trained_
    assert clf.pretrained_weight_id_ == "random-init"
    assert clf.fit_info_["probe"] == {} and clf.metrics_["n"] == 2
    cached = [p for p in isolated_cache.rglob("*") if p.is_file()]
    assert cached == [], f"from-scratch wrote pre-trained embeddings to the cache: {cached}"
