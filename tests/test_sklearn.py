"""fastnn.sklearn: the estimators against scikit-learn's own MLPClassifier/MLPRegressor (the oracle).

Same data + random_state -> the same coefs_/intercepts_/loss_curve_/n_iter_ to float64 rounding (rtol 1e-9)
for sgd and adam, the same loss for lbfgs; scikit-learn's estimator checks; the meta-estimators and joblib.
"""

import os
import pickle
import signal
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

sklearn = pytest.importorskip("sklearn")

import scipy.sparse as sp  # noqa: E402
from joblib import Parallel, delayed, parallel_config  # noqa: E402
from sklearn import neural_network as sk_nn  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification, make_multilabel_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score, cross_validate  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastnn  # noqa: E402
import fastnn.sklearn as fsk  # noqa: E402
from fastnn import _config  # noqa: E402
from fastnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

# float64: the two implementations round differently (fastnn's GEMMs and kernels are not NumPy's); measured
# after 12 epochs: weights within 1e-13 relative, loss curves within 4e-15: these bounds leave a 100x margin
RTOL = 1e-11
ATOL = 1e-14


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _data(kind, n=90, seed=0):
    rng = np.random.RandomState(seed)
    if kind == "binary":
        X, y = make_classification(n, 6, n_informative=4, n_classes=2, random_state=seed)
    elif kind == "multiclass":
        X, y = make_classification(n, 6, n_informative=4, n_classes=3, random_state=seed)
    elif kind == "multilabel":
        X, y = make_multilabel_classification(n, 6, n_classes=3, random_state=seed)
        X = X / X.max()
    elif kind == "regression":
        X, y = make_regression(n, 6, noise=0.1, random_state=seed)
        y = y / y.std()
    elif kind == "multioutput":
        X, y = make_regression(n, 6, n_targets=2, noise=0.1, random_state=seed)
        y = y / y.std(axis=0)
    elif kind == "poisson":
        X = rng.normal(size=(n, 6)) * 0.5
        y = rng.poisson(np.exp(X @ rng.normal(size=6) * 0.3)).astype(float)
    else:
        raise AssertionError(kind)
    return X, y


def _pair(cls_name, **params):
    return getattr(sk_nn, cls_name)(**params), getattr(fsk, cls_name)(**params)


def _assert_same_fit(ref, est, rtol=RTOL, atol=ATOL):
    assert est.n_iter_ == ref.n_iter_
    assert est.t_ == ref.t_
    assert est.out_activation_ == ref.out_activation_
    assert est.n_layers_ == ref.n_layers_ and est.n_outputs_ == ref.n_outputs_
    assert len(est.coefs_) == len(ref.coefs_)
    for a, b in zip(est.coefs_ + est.intercepts_, ref.coefs_ + ref.intercepts_):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert_allclose(a, b, rtol=rtol, atol=atol)
    assert_allclose(est.loss_, ref.loss_, rtol=rtol)
    if hasattr(ref, "loss_curve_"):
        assert_allclose(est.loss_curve_, ref.loss_curve_, rtol=rtol)
        if ref.validation_scores_ is None:
            assert est.validation_scores_ is None
            assert_allclose(est.best_loss_, ref.best_loss_, rtol=rtol)
        else:
            assert_allclose(est.validation_scores_, ref.validation_scores_, rtol=rtol)
            assert est.best_validation_score_ == pytest.approx(ref.best_validation_score_, rel=rtol)
            assert est.best_loss_ is None and ref.best_loss_ is None


CASES = [   # (class, data kind, parameters)
    ("MLPClassifier", "multiclass", dict(solver="sgd", learning_rate_init=0.05)),
    ("MLPClassifier", "multiclass", dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.2)),
    ("MLPClassifier", "multiclass", dict(solver="sgd", learning_rate="adaptive", tol=0.05, n_iter_no_change=2,
                                         max_iter=25, learning_rate_init=0.05)),
    ("MLPClassifier", "multiclass", dict(solver="sgd", nesterovs_momentum=False, momentum=0.5)),
    ("MLPClassifier", "multiclass", dict(solver="sgd", momentum=0.0)),
    ("MLPClassifier", "multiclass", dict(solver="adam", learning_rate_init=0.01)),
    ("MLPClassifier", "multiclass", dict(solver="adam", activation="logistic", alpha=0.1)),
    ("MLPClassifier", "multiclass", dict(solver="adam", activation="tanh", shuffle=False)),
    ("MLPClassifier", "multiclass", dict(solver="adam", activation="identity", hidden_layer_sizes=(4, 3))),
    ("MLPClassifier", "binary", dict(solver="adam", learning_rate_init=0.01)),
    ("MLPClassifier", "multilabel", dict(solver="sgd", learning_rate_init=0.1)),
    ("MLPClassifier", "multiclass", dict(solver="adam", early_stopping=True, validation_fraction=0.2,
                                         n_iter_no_change=3, learning_rate_init=0.02)),
    ("MLPClassifier", "multilabel", dict(solver="adam", early_stopping=True, validation_fraction=0.2)),
    ("MLPClassifier", "multiclass", dict(solver="adam", tol=0.05, n_iter_no_change=2, max_iter=30)),
    ("MLPRegressor", "regression", dict(solver="adam", learning_rate_init=0.01)),
    ("MLPRegressor", "regression", dict(solver="sgd", learning_rate_init=0.01, batch_size=16)),
    ("MLPRegressor", "multioutput", dict(solver="adam", learning_rate_init=0.01)),
    ("MLPRegressor", "poisson", dict(solver="adam", loss="poisson", learning_rate_init=0.01)),
    ("MLPRegressor", "regression", dict(solver="adam", early_stopping=True, validation_fraction=0.2)),
]


@pytest.mark.parametrize("cls_name, kind, params", CASES, ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
def test_stochastic_fit_equals_sklearn(cls_name, kind, params, weighted):
    X, y = _data(kind)
    sw = np.random.RandomState(3).uniform(0.2, 2.0, len(X)) if weighted else None
    params = {"hidden_layer_sizes": (7, 5), "max_iter": 12, "random_state": 1, "batch_size": 20, **params}
    ref, est = _pair(cls_name, **params)
    ref.fit(X, y, sample_weight=sw)
    assert est.fit(X, y, sample_weight=sw) is est
    _assert_same_fit(ref, est)
    if cls_name == "MLPClassifier":
        assert_array_equal(est.predict(X), ref.predict(X))
        assert_allclose(est.predict_proba(X), ref.predict_proba(X), rtol=RTOL, atol=ATOL)
    else:
        assert_allclose(est.predict(X), ref.predict(X), rtol=RTOL, atol=ATOL)
    assert est.score(X, y) == pytest.approx(ref.score(X, y), rel=RTOL)


@pytest.mark.parametrize("cls_name, kind", [("MLPClassifier", "multiclass"), ("MLPClassifier", "binary"),
                                            ("MLPRegressor", "multioutput")])
def test_partial_fit_and_warm_start_equal_sklearn(cls_name, kind):
    X, y = _data(kind)
    params = dict(hidden_layer_sizes=(6,), random_state=0, batch_size=16, solver="sgd", learning_rate_init=0.05,
                  learning_rate="invscaling")
    ref, est = _pair(cls_name, **params)
    extra = {"classes": np.unique(y)} if cls_name == "MLPClassifier" else {}
    for i in range(4):
        rows = slice(20 * i, 20 * i + 40)
        ref.partial_fit(X[rows], y[rows], **(extra if i == 0 else {}))
        est.partial_fit(X[rows], y[rows], **(extra if i == 0 else {}))
        _assert_same_fit(ref, est)
    ref, est = _pair(cls_name, warm_start=True, max_iter=3, **params)
    for _ in range(3):
        ref.fit(X, y)
        est.fit(X, y)
        _assert_same_fit(ref, est)


def test_partial_fit_rules():
    X, y = _data("multiclass")
    with pytest.raises(ValueError, match="classes must be passed on the first call to partial_fit"):
        MLPClassifier(solver="sgd").partial_fit(X, y)
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    assert not hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=np.unique(y))
    est = MLPClassifier(hidden_layer_sizes=(3,), max_iter=2).partial_fit(X, y, classes=[0, 1, 2, 3])
    assert_array_equal(est.classes_, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="`y` has classes not in `self.classes_`"):
        est.partial_fit(X, np.full(len(y), 7))
    est = MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, warm_start=True).fit(X, y)
    with pytest.raises(ValueError, match="warm_start can only be used where `y` has the same classes"):
        est.fit(X, y % 2)


@pytest.mark.parametrize("cls_name, kind", [("MLPClassifier", "multiclass"), ("MLPClassifier", "binary"),
                                            ("MLPClassifier", "multilabel"), ("MLPRegressor", "multioutput"),
                                            ("MLPRegressor", "poisson")])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
def test_lbfgs_reaches_sklearns_loss(cls_name, kind, weighted):
    X, y = _data(kind)
    sw = np.random.RandomState(3).uniform(0.2, 2.0, len(X)) if weighted else None
    params = dict(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=40, random_state=0, alpha=1e-3)
    if kind == "poisson":
        params["loss"] = "poisson"
    ref, est = _pair(cls_name, **params)
    ref.fit(X, y, sample_weight=sw)
    est.fit(X, y, sample_weight=sw)
    # the same L-BFGS-B run on gradients that differ in the last bits (measured over these 40 iterations:
    # losses within 4e-11, weights within 2e-9 relative)
    assert est.loss_ == pytest.approx(ref.loss_, rel=1e-8)
    assert est.n_iter_ == ref.n_iter_
    assert not hasattr(est, "loss_curve_") and not hasattr(ref, "loss_curve_")
    for a, b in zip(est.coefs_ + est.intercepts_, ref.coefs_ + ref.intercepts_):
        assert_allclose(a, b, rtol=1e-6, atol=1e-9)


def test_lbfgs_float32_stays_float32():
    # scikit-learn's float32 lbfgs turns its weights into float64 after the first iteration (its _unpack of
    # SciPy's float64 vector), fastnn's stays in float32: the same optimisation, float32 rounding, so only
    # the loss reached is compared (within 2%: 40 iterations of float32 vs float64 line searches)
    X, y = _data("multiclass")
    params = dict(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=40, random_state=0)
    ref, est = _pair("MLPClassifier", **params)
    ref.fit(X.astype(np.float32), y)
    est.fit(X.astype(np.float32), y)
    assert ref.coefs_[0].dtype == np.float64 and est.coefs_[0].dtype == np.float32
    assert est.loss_ == pytest.approx(ref.loss_, rel=0.02)
    assert est.score(X, y) == pytest.approx(ref.score(X, y), abs=0.05)


def test_runs_of_one_batch_give_the_same_fit(monkeypatch):
    # the compiled runs end after _CHUNK_SECONDS (for Ctrl-C); cut after every batch, the numbers are the same
    X, y = _data("multiclass")
    params = dict(hidden_layer_sizes=(5,), max_iter=4, random_state=0, batch_size=8, solver="sgd")
    whole = MLPClassifier(**params).fit(X, y)
    monkeypatch.setattr(fsk, "_CHUNK_SECONDS", 1e-12)
    cut = MLPClassifier(**params).fit(X, y)
    assert_array_equal(cut.loss_curve_, whole.loss_curve_)
    for a, b in zip(cut.coefs_ + cut.intercepts_, whole.coefs_ + whole.intercepts_):
        assert_array_equal(a, b)


def test_non_finite_weights_raise_as_sklearn():
    X, y = _data("regression", n=60)
    params = dict(hidden_layer_sizes=(3,), solver="sgd", max_iter=5, random_state=0, learning_rate_init=0.5)
    with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"), np.errstate(all="ignore"):
        sk_nn.MLPRegressor(**params).fit(X * 1e150, y)
    with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
        MLPRegressor(**params).fit(X * 1e150, y)


def test_lbfgs_max_iter_warns_as_sklearn():
    X, y = _data("multiclass")
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        MLPClassifier(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=3, random_state=0).fit(X, y)
    with pytest.warns(ConvergenceWarning, match=r"Stochastic Optimizer: Maximum iterations \(3\) reached"):
        MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit(X, y)


@pytest.mark.parametrize("params", [dict(solver="sgd", learning_rate="adaptive", tol=0.05, n_iter_no_change=1),
                                    dict(solver="adam", early_stopping=True, n_iter_no_change=2)])
def test_verbose_prints_what_sklearn_prints(params, capsys):
    X, y = _data("multiclass")
    params = dict(hidden_layer_sizes=(5,), max_iter=8, random_state=0, verbose=True, **params)
    ref, est = _pair("MLPClassifier", **params)
    ref.fit(X, y)
    expected = capsys.readouterr().out
    est.fit(X, y)
    got = capsys.readouterr().out
    assert got.count("Iteration") == expected.count("Iteration") > 0
    # the same lines, the numbers to the printed precision (%.8f of values equal to 1e-11)
    assert got.splitlines() == expected.splitlines()


@pytest.mark.parametrize("labels", [[3, 1, 2], [0, 1], ["b", "a"], ["x", "y", "z", "w"], [2.0, -1.0],
                                    np.array(["p", "q"], dtype=object)], ids=str)
def test_targets_are_the_label_binarizers(labels):
    """The targets a fit trains on are scikit-learn's LabelBinarizer().fit(y).transform(y).astype(bool), whose
    transform fastnn computes directly for the y it has just fitted (multiclass and binary; multilabel goes
    through transform): any label type, 1-D or a column vector."""
    from sklearn.preprocessing import LabelBinarizer
    rng = np.random.RandomState(0)
    y = np.asarray(labels, dtype=getattr(labels, "dtype", None))[rng.randint(0, len(labels), 40)]
    X = rng.standard_normal((40, 3))
    want = LabelBinarizer().fit(y).transform(y).astype(bool)
    for target in (y, y.reshape(-1, 1)):
        est = MLPClassifier()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # a column vector y warns, as in scikit-learn
            _, got = est._validate_input(X, target, incremental=False, reset=True)
        assert got.dtype == bool
        assert_array_equal(got, want)
        assert_array_equal(est.classes_, np.unique(y))
    Y = rng.randint(0, 2, (40, 3))   # multilabel: through LabelBinarizer.transform
    assert_array_equal(MLPClassifier()._validate_input(X, Y, incremental=False, reset=True)[1], Y.astype(bool))


def test_sparse_input_equals_dense(monkeypatch):
    X, y = _data("multiclass")
    X[np.abs(X) < 0.7] = 0.0
    params = dict(hidden_layer_sizes=(5,), max_iter=5, random_state=0, batch_size=16)
    dense = MLPClassifier(**params).fit(X, y)
    monkeypatch.setattr(fsk, "SPARSE_CHUNK_BYTES", 3 * 16 * 6 * 8)   # chunks of 3 batches: several per epoch
    for fmt in (sp.csr_matrix, sp.csc_matrix):
        est = MLPClassifier(**params).fit(fmt(X), y)
        for a, b in zip(est.coefs_ + est.intercepts_, dense.coefs_ + dense.intercepts_):
            assert_allclose(a, b, rtol=1e-12, atol=1e-14)
        assert_allclose(est.predict_proba(fmt(X)), dense.predict_proba(X), rtol=1e-12)
    lb = dict(params, solver="lbfgs", max_iter=10)
    ref = MLPRegressor(**lb).fit(X, y.astype(float))
    est = MLPRegressor(**lb).fit(sp.csr_matrix(X), y.astype(float))   # 3 batches' rows per lbfgs chunk
    assert est.loss_ == pytest.approx(ref.loss_, rel=1e-9)
    sk = sk_nn.MLPClassifier(**params).fit(sp.csr_matrix(X), y)
    _assert_same_fit(sk, MLPClassifier(**params).fit(sp.csr_matrix(X), y))
    monkeypatch.setattr(fsk, "SPARSE_CHUNK_BYTES", 100)
    with pytest.raises(ValueError, match=r"sparse X: one batch of 16 rows x 6 features densified needs"):
        MLPClassifier(**params).fit(sp.csr_matrix(X), y)


def test_float32_path():
    X, y = _data("multiclass")
    X32 = X.astype(np.float32)
    params = dict(hidden_layer_sizes=(7,), max_iter=5, random_state=0, batch_size=20)
    ref = sk_nn.MLPClassifier(**params).fit(X32, y)
    est = MLPClassifier(**params).fit(X32, y)
    assert est.model_.dtype == np.float32 and all(c.dtype == np.float32 for c in est.coefs_)
    assert est.predict_proba(X32).dtype == np.float32
    # float32 rounding (measured after 5 epochs: weights within 3e-8 absolute, loss curve within 2e-8 relative)
    for a, b in zip(est.coefs_ + est.intercepts_, ref.coefs_ + ref.intercepts_):
        assert_allclose(a, b, rtol=2e-6, atol=3e-7)
    assert_allclose(est.loss_curve_, ref.loss_curve_, rtol=2e-7)
    # dtype= overrides X's dtype; integer X follows scikit-learn (float64)
    assert MLPClassifier(dtype="float32", **params).fit(X, y).coefs_[0].dtype == np.float32
    assert MLPClassifier(dtype=np.float64, **params).fit(X32, y).coefs_[0].dtype == np.float64
    assert MLPClassifier(**params).fit((X * 10).astype(int), y).coefs_[0].dtype == np.float64


def test_string_labels_and_pandas_feature_names():
    pd = pytest.importorskip("pandas")
    X, y = _data("multiclass")
    labels = np.array(["cat", "dog", "emu"], dtype=object)[y]
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    params = dict(hidden_layer_sizes=(5,), max_iter=5, random_state=0)
    ref = sk_nn.MLPClassifier(**params).fit(frame, labels)
    est = MLPClassifier(**params).fit(frame, labels)
    assert_array_equal(est.classes_, ["cat", "dog", "emu"])
    assert_array_equal(est.feature_names_in_, ref.feature_names_in_)
    assert est.n_features_in_ == 6
    assert_array_equal(est.predict(frame), ref.predict(frame))
    assert set(est.predict(frame)) <= {"cat", "dog", "emu"}
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        est.predict(X)
    est2 = MLPClassifier(**params).fit(X, labels.astype(str))
    assert est2.predict(X).dtype.kind == "U"


def test_coefs_are_views_of_the_model():
    X, y = _data("multiclass")
    est = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit(X, y)
    dense = [layer for layer in est.model_.layers if isinstance(layer, fastnn.Dense)]
    assert all(np.shares_memory(c, layer.weight.data) for c, layer in zip(est.coefs_, dense))
    before = est.predict_proba(X)
    est.coefs_[0][...] *= 0.5
    assert not np.allclose(est.predict_proba(X), before)
    est.coefs_ = [c * 2 for c in est.coefs_]
    est.coefs_[0][...] = est.coefs_[0] * 0.5
    with pytest.raises(ValueError, match="coefs_ must be 2 arrays of shapes"):
        est.coefs_ = [np.zeros(3)]
    with pytest.raises(AttributeError):
        MLPClassifier().coefs_   # noqa: B018


def test_pickle_clone_and_continue():
    X, y = _data("multiclass")
    params = dict(hidden_layer_sizes=(5,), max_iter=4, random_state=0, solver="adam")
    est = MLPClassifier(**params).fit(X, y)
    copy = pickle.loads(pickle.dumps(est))
    assert_array_equal(copy.predict_proba(X), est.predict_proba(X))
    dense = [layer for layer in copy.model_.layers if isinstance(layer, fastnn.Dense)]
    assert np.shares_memory(copy.coefs_[0], dense[0].weight.data)
    # the optimizer state travels: one more partial_fit gives the same weights on both
    est.partial_fit(X, y)
    copy.partial_fit(X, y)
    for a, b in zip(copy.coefs_ + copy.intercepts_, est.coefs_ + est.intercepts_):
        assert_array_equal(a, b)
    fresh = clone(est)
    assert fresh.get_params() == est.get_params() and not hasattr(fresh, "coefs_")


def test_meta_estimators_and_joblib():
    X, y = _data("multiclass", n=60)
    params = dict(hidden_layer_sizes=(5,), max_iter=5, random_state=0)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(**params)).fit(X, y)
    ref = make_pipeline(StandardScaler(), sk_nn.MLPClassifier(**params)).fit(X, y)
    assert_allclose(pipe.predict_proba(X), ref.predict_proba(X), rtol=1e-9)
    grid = GridSearchCV(MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0),
                        {"alpha": [1e-4, 1e-1], "dropout": [0.0, 0.2]}, cv=2, n_jobs=2)
    grid.fit(X, y)
    local = GridSearchCV(MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0),
                         {"alpha": [1e-4, 1e-1], "dropout": [0.0, 0.2]}, cv=2, n_jobs=1).fit(X, y)
    assert_allclose(grid.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"])
    scores = cross_val_score(MLPRegressor(hidden_layer_sizes=(4,), max_iter=5, random_state=0), X, y.astype(float),
                             cv=2, n_jobs=2)
    assert scores.shape == (2,) and np.isfinite(scores).all()
    # fitted estimators come back from the loky workers (pickled there, unpickled here) and predict as fitted here
    params = dict(hidden_layer_sizes=(4,), max_iter=5, random_state=0)
    out = cross_validate(MLPClassifier(**params), X, y, cv=StratifiedKFold(2), n_jobs=2, return_estimator=True)
    for est, (train, _) in zip(out["estimator"], StratifiedKFold(2).split(X, y)):
        assert np.shares_memory(est.coefs_[0], est.model_.layers[0].weight.data)
        assert_allclose(est.predict_proba(X), MLPClassifier(**params).fit(X[train], y[train]).predict_proba(X))


def _threads_in_worker(X, y):
    est = MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=0).fit(X, y)
    return os.environ.get("OMP_NUM_THREADS"), fastnn.get_num_threads(), est.n_iter_


def test_loky_workers_follow_joblibs_thread_limit():
    X, y = _data("binary", n=40)
    with parallel_config(backend="loky", inner_max_num_threads=1):
        out = Parallel(n_jobs=2)(delayed(_threads_in_worker)(X, y) for _ in range(2))
    assert out == [("1", 1, 2)] * 2


def test_n_threads_is_set_for_the_call_and_restored():
    X, y = _data("binary", n=40)
    before = fastnn.get_num_threads()
    seen = []
    est = MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=0, n_threads=1)
    real = fsk._BaseMLP._epoch

    def spy(self, *args):
        seen.append(fastnn.get_num_threads())
        return real(self, *args)

    fsk._BaseMLP._epoch = spy
    try:
        est.fit(X, y)
    finally:
        fsk._BaseMLP._epoch = real
    assert seen == [1, 1] and fastnn.get_num_threads() == before


def test_ctrl_c_stops_with_sklearns_warning_and_a_usable_model(monkeypatch):
    X, y = _data("multiclass")
    real = fsk._BaseMLP._iteration_ends

    def interrupt_after_third(self, time_step):
        real(self, time_step)
        if self.n_iter_ == 3:
            os.kill(os.getpid(), signal.SIGINT)   # held by fastnn until the next run of batches ends

    monkeypatch.setattr(fsk._BaseMLP, "_iteration_ends", interrupt_after_third)
    est = MLPClassifier(hidden_layer_sizes=(5,), max_iter=10, random_state=0, batch_size=10)
    with pytest.warns(UserWarning, match="Training interrupted by user."):
        est.fit(X, y)
    assert est.n_iter_ == 3 and len(est.loss_curve_) == 3
    assert np.isfinite(est.predict_proba(X)).all() and est.score(X, y) > 0


def test_dropout_is_reproducible_and_off_in_predict():
    X, y = _data("multiclass")
    params = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    a = MLPClassifier(dropout=0.3, **params).fit(X, y)
    b = MLPClassifier(dropout=0.3, **params).fit(X, y)
    plain = MLPClassifier(**params).fit(X, y)
    assert_array_equal(a.coefs_[0], b.coefs_[0])
    assert not np.allclose(a.coefs_[0], plain.coefs_[0])
    assert_array_equal(a.predict_proba(X), a.predict_proba(X))   # eval mode: deterministic
    assert any(isinstance(layer, fastnn.Dropout) for layer in a.model_.layers)


@pytest.mark.parametrize("param, value, message", [
    ("alpha", -1.0, r"The 'alpha' parameter of MLPClassifier must be a float in the range \[0.0, inf\)"),
    ("solver", "newton", r"The 'solver' parameter of MLPClassifier must be a str among"),
    ("hidden_layer_sizes", (0,), r"hidden_layer_sizes must be > 0, got \[0\]"),
    ("dropout", 1.0, r"The 'dropout' parameter of MLPClassifier must be a float in the range \[0.0, 1.0\)"),
    ("dtype", "int8", r"The 'dtype' parameter of MLPClassifier must be"),
    ("n_threads", 0, r"The 'n_threads' parameter of MLPClassifier must be"),
    ("batch_size", 0, r"The 'batch_size' parameter of MLPClassifier must be"),
    ("dropout", 0.5, r"dropout=0.5 needs solver='sgd' or 'adam': lbfgs needs a deterministic objective"),
    ("validation_fraction", 1.0, r"The 'validation_fraction' parameter of MLPClassifier must be"),
])
def test_bad_hyper_parameters_name_the_argument(param, value, message):
    X, y = _data("binary", n=20)
    extra = {"solver": "lbfgs"} if (param, value) == ("dropout", 0.5) else {}
    with pytest.raises(ValueError, match=message):
        MLPClassifier(**{param: value}, **extra).fit(X, y)


def test_bad_input():
    X, y = _data("regression", n=20)
    X[3, 2] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        MLPRegressor(max_iter=2).fit(X, y)
    X[3, 2] = 0.0
    est = MLPRegressor(hidden_layer_sizes=(3,), max_iter=2).fit(X, y)
    with pytest.raises(ValueError, match="X has 5 features, but MLPRegressor is expecting 6 features"):
        est.predict(X[:, :5])
    with pytest.raises(ValueError, match="The validation set is too small"):
        MLPRegressor(early_stopping=True, validation_fraction=0.01).fit(X, y)


def test_import_fastnn_does_not_import_sklearn():
    code = "import sys, fastnn; assert 'sklearn' not in sys.modules, 'sklearn imported'"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(
        [os.path.dirname(os.path.dirname(fastnn.__file__)), os.environ.get("PYTHONPATH", "")])})


def test_docstrings_list_the_deviations():
    for cls in (MLPClassifier, MLPRegressor):
        assert "Deviations from scikit-learn" in cls.__doc__ and "lbfgs" in cls.__doc__


# ---------------------------------------------------------------------------- scikit-learn's estimator checks
def _expected_failures(estimator):
    return {}   # none: every check passes (no xfail)


@parametrize_with_checks([MLPClassifier(max_iter=100, random_state=0),
                          MLPRegressor(max_iter=100, random_state=0)],
                         expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_n_threads_restores_the_setting_as_it_was(monkeypatch):
    """n_threads=k holds for the call only: an explicit count comes back as it was, and the adaptive default
    stays the default (not the count it happened to report)."""
    X, y = make_classification(n_samples=120, n_features=6, random_state=0)
    fit = lambda: MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, n_threads=1, random_state=0).fit(X, y)  # noqa: E731
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    fastnn.set_num_threads(None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit()
        assert _config.given_num_threads() is None          # still the default
        fastnn.set_num_threads(2)
        fit()
        assert _config.given_num_threads() == 2


def test_n_threads_in_concurrent_fits_never_leaks(monkeypatch):
    """Fits with different n_threads overlapping in two Python threads (as a threading-backend grid search runs
    them): each gives the numbers of a fit alone, and the process's setting afterwards is the one from before."""
    X, y = make_classification(n_samples=150, n_features=6, random_state=0)

    def fit(k):
        return MLPClassifier(hidden_layer_sizes=(8,), max_iter=4, n_threads=k, random_state=0).fit(X, y)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        want = fit(1).coefs_[0].copy()
        fastnn.set_num_threads(2)
        results, errors = [], []

        def worker(k):
            try:
                for _ in range(15):
                    results.append(fit(k).coefs_[0].copy())
            except Exception as e:   # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(k,)) for k in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert not errors, errors
    assert len(results) == 30
    for r in results:   # this small network runs single-threaded kernels at any count: the same bits
        assert_array_equal(r, want)
    assert _config.given_num_threads() == 2


def test_assigning_one_coefs_element_reaches_the_model():
    """coefs_[i] = a takes effect as with scikit-learn's list (a plain list of views would silently ignore it)."""
    X, y = make_classification(n_samples=80, n_features=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
    before = est.predict_proba(X)
    coefs = est.coefs_
    coefs[0] = np.zeros((5, 4))
    est.intercepts_[1] = np.full(est.intercepts_[1].shape, 3.0)
    assert_array_equal(est.coefs_[0], 0.0)
    assert_array_equal(est.intercepts_[1], 3.0)
    assert not np.allclose(est.predict_proba(X), before)
    with pytest.raises(ValueError, match=r"coefs_\[1\] must have shape \(4, 1\)"):
        est.coefs_[1] = np.zeros((3, 1))
    with pytest.raises(TypeError, match="length cannot change"):
        est.coefs_.append(np.zeros(2))
    assert isinstance(pickle.loads(pickle.dumps(est.coefs_)), list)


def test_epoch_shuffle_draws_what_sklearns_shuffle_draws():
    """fastnn.sklearn._shuffle = sklearn.utils.shuffle on an index array: the same permutations, epoch after epoch,
    and the RandomState left in the same state (the next draws, e.g. early stopping's, stay scikit-learn's)."""
    from sklearn.utils import shuffle

    from fastnn.sklearn import _shuffle

    for n in (1, 2, 197, 1797):
        ours, theirs = np.random.RandomState(n), np.random.RandomState(n)
        a = b = np.arange(n)
        for _ in range(5):
            a, b = _shuffle(a, ours), shuffle(b, random_state=theirs)
            assert a.dtype == b.dtype and np.array_equal(a, b)
        assert ours.randint(2**31) == theirs.randint(2**31)
