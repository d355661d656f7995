"""fastnn.datasets: splits, scaling, one-hot, generators and file loaders (scikit-learn as the oracle)."""

import numpy as np
import pytest

from fastnn.datasets import (
    StandardScaler,
    from_one_hot,
    load_csv,
    load_digits,
    load_npz,
    make_moons,
    make_spirals,
    one_hot,
    standardize,
    train_test_split,
)

sk_split = pytest.importorskip("sklearn.model_selection")
sk_pre = pytest.importorskip("sklearn.preprocessing")
sk_data = pytest.importorskip("sklearn.datasets")


# ---------------------------------------------------------------- train_test_split
SIZES = [
    (None, None), (0.25, None), (0.3, None), (None, 0.6), (0.2, 0.5), (7, None), (None, 11), (5, 20),
    (0.1, 30), (13, 0.5), (0.999, None), (1, None),
]


@pytest.mark.parametrize("n", [17, 50, 101])
@pytest.mark.parametrize("test_size,train_size", SIZES, ids=str)
def test_split_sizes_and_indices_match_sklearn(n, test_size, train_size):
    X = np.arange(n * 3).reshape(n, 3)
    y = np.arange(n)
    kw = {"test_size": test_size, "train_size": train_size, "random_state": 7}
    try:
        want = sk_split.train_test_split(X, y, **kw)
    except ValueError:
        with pytest.raises(ValueError):
            train_test_split(X, y, **kw)
        return
    got = train_test_split(X, y, **kw)
    assert len(got) == 4
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)   # same sizes and the same rows (same random stream)
    # shuffle=False: first rows for training, the next ones for testing
    got = train_test_split(X, y, test_size=test_size, train_size=train_size, shuffle=False)
    want = sk_split.train_test_split(X, y, test_size=test_size, train_size=train_size, shuffle=False)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("test_size", [0.2, 0.25, 0.5, 9])
def test_stratified_split_matches_sklearn(seed, test_size):
    r = np.random.default_rng(seed)
    y = r.choice(np.array(["cat", "dog", "emu"]), size=61, p=[0.6, 0.3, 0.1])
    X = r.standard_normal((61, 2))
    got = train_test_split(X, y, test_size=test_size, stratify=y, random_state=seed)
    want = sk_split.train_test_split(X, y, test_size=test_size, stratify=y, random_state=seed)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    # class proportions are kept: each class's test count is within one of its share
    _, _, y_train, y_test = got
    for c in np.unique(y):
        share = (y == c).mean() * len(y_test)
        assert abs((y_test == c).sum() - share) <= 1


def test_split_partitions_rows_and_accepts_lists_and_generators():
    X = np.arange(40).reshape(20, 2)
    y = list(range(20))
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=np.random.default_rng(0))
    assert len(X_te) == 5 and len(X_tr) == 15
    np.testing.assert_array_equal(np.sort(np.concatenate([y_tr, y_te])), np.arange(20))
    np.testing.assert_array_equal(X_tr[:, 0] // 2, y_tr)   # rows stay aligned across arrays
    a = train_test_split(X, random_state=3)
    b = train_test_split(X, random_state=3)
    np.testing.assert_array_equal(a[0], b[0])   # an int seed is reproducible


@pytest.mark.parametrize("args,kw,exc,match", [
    ((), {}, ValueError, "at least one array"),
    ((np.zeros(5), np.zeros(4)), {}, ValueError, r"same number of rows, got lengths \[5, 4\]"),
    ((np.zeros(10),), {"test_size": 1.0}, ValueError, r"test_size must be .* float in \(0, 1\), got 1.0"),
    ((np.zeros(10),), {"test_size": 10}, ValueError, r"test_size must be an int in \[1, n_samples - 1\]"),
    ((np.zeros(10),), {"train_size": 0}, ValueError, "train_size must be"),
    ((np.zeros(10),), {"test_size": "0.2"}, TypeError, "test_size must be None, an int or a float, got '0.2'"),
    ((np.zeros(10),), {"test_size": True}, TypeError, "test_size must be None, an int or a float"),
    ((np.zeros(10),), {"test_size": 0.6, "train_size": 0.6}, ValueError, "test_size \\+ train_size must be at most 1"),
    ((np.zeros(10),), {"test_size": 6, "train_size": 6}, ValueError, "6 \\+ 6 = 12 rows, more than the 10 samples"),
    ((np.zeros(10),), {"test_size": 0.99}, ValueError, "the train set would be empty"),
    ((np.zeros(10),), {"shuffle": False, "stratify": np.zeros(10)}, ValueError, "stratify needs shuffle=True"),
    ((np.zeros(10),), {"shuffle": 1}, TypeError, "shuffle must be a bool"),
    ((np.zeros(6),), {"stratify": [0, 0, 0, 1, 1, 2]}, ValueError, r"only 1 member: \[2\]"),
    ((np.zeros(6),), {"stratify": [0, 1, 2, 0, 1, 2], "test_size": 2}, ValueError,
     "test set has 2 rows, y has 3 classes"),
    ((np.zeros(6),), {"stratify": [0, 1]}, ValueError, r"stratify must hold one label per row: shape \(6,\)"),
    ((np.zeros(6),), {"random_state": -1}, ValueError, r"random_state must be an int in \[0, 2\*\*32 - 1\]"),
    ((np.zeros(6),), {"random_state": "seed"}, TypeError, "random_state must be None, an int"),
    ((3.0,), {}, ValueError, "array 0 must have at least one dimension"),
])
def test_split_bad_inputs(args, kw, exc, match):
    with pytest.raises(exc, match=match):
        train_test_split(*args, **kw)


# ---------------------------------------------------------------- scaling
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_standard_scaler_matches_sklearn(dtype):
    r = np.random.default_rng(0)
    X = (r.standard_normal((37, 6)) * [1, 10, 1e-3, 5, 1, 1] + [0, 3, -2, 1e3, 0, 0]).astype(dtype)
    X[:, 4] = 2.5 if dtype != np.int64 else 2      # constant column: scale 1, maps to 0
    X[:, 5] = 0
    X_new = (r.standard_normal((9, 6)) * 3).astype(dtype)
    ours, theirs = StandardScaler().fit(X), sk_pre.StandardScaler().fit(X)
    np.testing.assert_allclose(ours.mean_, theirs.mean_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.var_, theirs.var_, rtol=1e-10, atol=1e-15)
    np.testing.assert_array_equal(ours.scale_[4:], [1.0, 1.0])
    np.testing.assert_allclose(ours.scale_, theirs.scale_, rtol=1e-12)
    assert ours.n_features_in_ == 6 and ours.n_samples_seen_ == 37
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for A in (X, X_new):
        got, want = ours.transform(A), theirs.transform(A)
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(ours.inverse_transform(got), theirs.inverse_transform(want), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(ours.fit_transform(X), theirs.fit_transform(X), rtol=rtol, atol=rtol)
    np.testing.assert_array_equal(ours.transform(X)[:, 4:], 0)


def test_standard_scaler_options_and_standardize():
    r = np.random.default_rng(1)
    X = r.standard_normal((20, 3)) * 4 + 2
    for kw in ({"with_mean": False}, {"with_std": False}, {"with_mean": False, "with_std": False}):
        np.testing.assert_allclose(StandardScaler(**kw).fit_transform(X), sk_pre.StandardScaler(**kw).fit_transform(X),
                                   rtol=1e-12)
    Z = standardize(X)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0), 1, rtol=1e-12)
    X2 = r.standard_normal((5, 3))
    Z1, Z2 = standardize(X, X2)
    np.testing.assert_allclose(Z2, sk_pre.StandardScaler().fit(X).transform(X2), rtol=1e-12)
    assert repr(StandardScaler(with_std=False)) == "StandardScaler(with_std=False)"


def test_standard_scaler_bad_inputs():
    with pytest.raises(RuntimeError, match="not fitted yet: call fit"):
        StandardScaler().transform(np.zeros((2, 2)))
    sc = StandardScaler().fit(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"X must have 3 features .* got shape \(4, 2\)"):
        sc.transform(np.ones((4, 2)))
    with pytest.raises(ValueError, match="X must be 2-D, got 1-D"):
        StandardScaler().fit(np.ones(4))
    with pytest.raises(ValueError, match="X must be finite, got NaN or inf"):
        StandardScaler().fit(np.array([[1.0], [np.nan]]))
    with pytest.raises(ValueError, match="at least one row"):
        StandardScaler().fit(np.ones((0, 3)))
    with pytest.raises(TypeError, match="X must hold real numbers"):
        StandardScaler().fit(np.array([["a"]]))
    with pytest.raises(TypeError, match="with_mean must be a bool"):
        StandardScaler(with_mean="yes")


# ---------------------------------------------------------------- one-hot
def test_one_hot_round_trip():
    y = np.array([2, 0, 1, 2, 4])
    Y = one_hot(y)
    assert Y.shape == (5, 5) and Y.dtype == np.float32
    np.testing.assert_array_equal(Y, np.eye(5, dtype=np.float32)[y])
    np.testing.assert_array_equal(from_one_hot(Y), y)
    assert from_one_hot(Y).dtype == np.int64
    Y = one_hot([1, 0], num_classes=4, dtype="float64")
    assert Y.dtype == np.float64 and Y.shape == (2, 4)
    assert one_hot(np.zeros(0, int), num_classes=3).shape == (0, 3)
    np.testing.assert_array_equal(from_one_hot([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]]), [1, 0])   # probabilities too


@pytest.mark.parametrize("labels,kw,exc,match", [
    ([0.0, 1.0], {}, TypeError, "use .astype\\(int\\)"),
    (["a", "b"], {}, TypeError, "labels must be integer class indices"),
    ([[0, 1]], {}, ValueError, r"labels must be 1-D .* got shape \(1, 2\)"),
    ([0, 3], {"num_classes": 3}, ValueError, r"class indices in \[0, 2\] \(num_classes=3\), got 3"),
    ([-1, 0], {}, ValueError, "got -1"),
    ([0, 1], {"num_classes": 0}, ValueError, "num_classes must be in"),
    (np.zeros(0, int), {}, ValueError, "num_classes must be given when labels is empty"),
])
def test_one_hot_bad_inputs(labels, kw, exc, match):
    with pytest.raises(exc, match=match):
        one_hot(labels, **kw)


def test_from_one_hot_bad_inputs():
    with pytest.raises(ValueError, match="Y must be 2-D"):
        from_one_hot([0, 1])
    with pytest.raises(ValueError, match="at least one column"):
        from_one_hot(np.zeros((3, 0)))


# ---------------------------------------------------------------- generators
@pytest.mark.parametrize("n", [1, 2, 99, 100])
def test_make_moons_matches_sklearn(n):
    X, y = make_moons(n, noise=0.15, random_state=4, dtype="float64")
    Xs, ys = sk_data.make_moons(n, noise=0.15, random_state=4)
    np.testing.assert_array_equal(X, Xs)
    np.testing.assert_array_equal(y, ys)
    assert X.shape == (n, 2) and y.dtype == np.int64
    assert np.bincount(y, minlength=2).tolist() == [n // 2, n - n // 2]   # balanced classes
    Xs, ys = sk_data.make_moons((3, 5), shuffle=False)
    X, y = make_moons((3, 5), shuffle=False, dtype="float64")
    np.testing.assert_allclose(X, Xs, rtol=1e-15)
    np.testing.assert_array_equal(y, ys)
    assert make_moons(10)[0].dtype == np.float32


def test_make_spirals_shape_balance_and_geometry():
    X, y = make_spirals(301, n_classes=3, random_state=0)
    assert X.shape == (301, 2) and X.dtype == np.float32 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [101, 100, 100]
    r = np.hypot(X[:, 0], X[:, 1])
    assert r.max() <= 1 + 1e-6 and r.min() >= 0
    Xa, ya = make_spirals(60, 4, noise=0.1, random_state=5)
    Xb, yb = make_spirals(60, 4, noise=0.1, random_state=5)
    np.testing.assert_array_equal(Xa, Xb)
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(Xa, make_spirals(60, 4, noise=0.1, random_state=6)[0])
    # unshuffled, noiseless: arm k's outermost point sits at angle 4 + 2 pi k / K
    X, y = make_spirals(40, 4, shuffle=False, dtype="float64")
    for k in range(4):
        end = X[y == k][-1]
        want = 4.0 + 2 * np.pi * k / 4
        np.testing.assert_allclose(end, [np.sin(want), np.cos(want)], atol=1e-12)


@pytest.mark.parametrize("fn,kw,exc,match", [
    (make_moons, {"n_samples": 0}, ValueError, r"n_samples must be in \[1, inf\]"),
    (make_moons, {"n_samples": (3,)}, TypeError, "pair of ints"),
    (make_moons, {"n_samples": 2.5}, TypeError, "n_samples must be an int or a pair"),
    (make_moons, {"noise": -0.1}, ValueError, r"noise must be a finite number in \[0, inf\)"),
    (make_moons, {"dtype": "int32"}, TypeError, "dtype must be 'float32' or 'float64'"),
    (make_spirals, {"n_samples": 2, "n_classes": 3}, ValueError, "n_samples must be at least n_classes=3"),
    (make_spirals, {"n_classes": 0}, ValueError, "n_classes must be in"),
    (make_spirals, {"shuffle": "no"}, TypeError, "shuffle must be a bool"),
])
def test_generator_bad_inputs(fn, kw, exc, match):
    with pytest.raises(exc, match=match):
        fn(**kw)


# ---------------------------------------------------------------- files
def _write(tmp_path, text, name="data.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_load_csv_string_labels(tmp_path):
    p = _write(tmp_path, "a,species, b\n1,dog,2.5\n\n3, cat ,-4e-1\n5,emu,6\n7,dog,8\n")
    X, y, classes = load_csv(p, target="species")
    assert X.dtype == np.float32
    np.testing.assert_array_equal(X, np.array([[1, 2.5], [3, -0.4], [5, 6], [7, 8]], np.float32))
    assert classes.tolist() == ["cat", "dog", "emu"]
    np.testing.assert_array_equal(y, [1, 0, 2, 1])
    assert y.dtype == np.int64
    assert classes[y].tolist() == ["dog", "cat", "emu", "dog"]


def test_load_csv_numeric_targets_and_options(tmp_path):
    p = _write(tmp_path, "x1;x2;label\n0.5;1;3\n1.5;2;1\n")
    X, y, classes = load_csv(p, target="label", delimiter=";", dtype="float64")
    assert classes is None and y.dtype == np.int64 and X.dtype == np.float64
    np.testing.assert_array_equal(y, [3, 1])
    p = _write(tmp_path, "\ufeffx,price\n1,2.5\n2,3.25\n")   # a BOM and a real-valued target
    X, y, classes = load_csv(p, target="price")
    assert classes is None and y.dtype == np.float32
    np.testing.assert_array_equal(y, [2.5, 3.25])
    p = _write(tmp_path, 'x,"name, quoted"\n"1_000",a\n2,b\n')
    X, y, classes = load_csv(p, target="name, quoted")
    np.testing.assert_array_equal(X[:, 0], [1000, 2])


@pytest.mark.parametrize("text,target,match", [
    ("a,b\n1,2\n", "c", r"data.csv, line 1: no column named 'c' in the header; columns are \['a', 'b'\]"),
    ("a,a\n1,2\n", "a", "the target column 'a' appears 2 times"),
    ("a,b,y\n1,2,0\n3,x,1\n", "y", r"data.csv, line 3, column 'b': value 'x' is not a number"),
    ("a,b,y\n1,2,0\n\n3,,1\n", "y", r"line 4, column 'b': value '' is empty \(missing values"),
    ("a,b,y\n1,nan,0\n", "y", r"line 2, column 'b': value 'nan' is not a finite number"),
    ("a,b,y\n1,2,0\n3,4\n", "y", "line 3: expected 3 fields like the header, got 2"),
    ("a,y\n1,inf\n", "y", r"line 2, column 'y': value 'inf' is not a finite number"),
    ("a,y\n1,dog\n2,\n", "y", "line 3, column 'y': the target value is empty"),
    ("", "y", "the file is empty"),
    ("a,y\n", "y", "no data rows after the header"),
    ("y\n1\n", "y", "no feature columns besides the target 'y'"),
])
def test_load_csv_bad_files(tmp_path, text, target, match):
    p = _write(tmp_path, text)
    with pytest.raises(ValueError, match=match):
        load_csv(p, target=target)


def test_load_csv_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_csv(tmp_path / "missing.csv", target="y")
    p = _write(tmp_path, "a,y\n1,2\n")
    with pytest.raises(TypeError, match="target must be the name of a column"):
        load_csv(p, target=1)
    with pytest.raises(ValueError, match="delimiter must be a single character"):
        load_csv(p, target="y", delimiter=";;")
    (tmp_path / "bin.csv").write_bytes(b"a,y\n\xff\xfe,1\n")
    with pytest.raises(ValueError, match="not a UTF-8 text file"):
        load_csv(tmp_path / "bin.csv", target="y")


def test_load_npz(tmp_path):
    r = np.random.default_rng(0)
    X, y = r.standard_normal((10, 2, 3)), r.integers(0, 3, 10)
    np.savez(tmp_path / "a.npz", X=X, y=y)
    Xl, yl = load_npz(tmp_path / "a.npz")
    assert Xl.shape == (10, 6) and Xl.dtype == np.float32
    np.testing.assert_allclose(Xl, X.reshape(10, 6).astype(np.float32))
    np.testing.assert_array_equal(yl, y)
    np.savez(tmp_path / "b.npz", x=X[:, 0], target=y.astype(float))
    Xl, yl = load_npz(tmp_path / "b.npz", y_key="target", dtype="float64")
    np.testing.assert_array_equal(Xl, X[:, 0])
    np.savez(tmp_path / "c.npz", feats=X[:, 0], y=y)
    assert load_npz(tmp_path / "c.npz", x_key="feats")[0].shape == (10, 3)


def test_load_npz_bad_files(tmp_path):
    X = np.zeros((4, 2))
    np.savez(tmp_path / "nokey.npz", data=X, y=np.zeros(4))
    with pytest.raises(ValueError, match=r"nokey.npz: no array named 'X' or 'x' \(pass x_key=\); arrays are \['data'"):
        load_npz(tmp_path / "nokey.npz")
    with pytest.raises(ValueError, match=r"no array named 'label' \(y_key\)"):
        load_npz(tmp_path / "nokey.npz", x_key="data", y_key="label")
    np.savez(tmp_path / "obj.npz", X=np.array([{"a": 1}] * 4, dtype=object), y=np.zeros(4))
    with pytest.raises(ValueError, match="obj.npz: cannot load arrays without pickle"):
        load_npz(tmp_path / "obj.npz")
    np.savez(tmp_path / "len.npz", X=X, y=np.zeros(3))
    with pytest.raises(ValueError, match=r"'y' must have one entry per row of 'X' \(4\), got shape \(3,\)"):
        load_npz(tmp_path / "len.npz")
    np.savez(tmp_path / "str.npz", X=np.array([["a"]] * 4), y=np.zeros(4))
    with pytest.raises(ValueError, match="features 'X' must be numbers, got dtype <U1"):
        load_npz(tmp_path / "str.npz")
    np.savez(tmp_path / "nan.npz", X=np.full((4, 2), np.nan), y=np.zeros(4))
    with pytest.raises(ValueError, match="contain NaN or inf"):
        load_npz(tmp_path / "nan.npz")
    np.savez(tmp_path / "flat.npz", X=np.zeros(4), y=np.zeros(4))
    with pytest.raises(ValueError, match=r"must have one row per sample \(2-D\)"):
        load_npz(tmp_path / "flat.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="junk.npz: not a readable .npz file"):
        load_npz(tmp_path / "junk.npz")
    np.save(tmp_path / "single.npy", X)
    with pytest.raises(ValueError, match="got a single .npy array"):
        load_npz(tmp_path / "single.npy")
    with pytest.raises(FileNotFoundError):
        load_npz(tmp_path / "missing.npz")


def test_load_digits_unchanged():
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32 and X.max() == 1.0
    assert np.bincount(y).min() >= 170
    X, _ = load_digits(dtype="float64", scale=False)
    assert X.dtype == np.float64 and X.max() == 16.0
