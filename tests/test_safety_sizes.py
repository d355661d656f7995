"""Issue 9 items 7-9: sizes refused before allocating, every valid layout accepted bit-exactly, typed arguments.

Item 7: a size that comes from the caller (layer widths, a broadcast input, num_classes, n_samples)
is checked by one helper, _validation.check_nbytes, before anything is allocated: a ValueError
naming the argument and the bytes it would need. Tests use sizes no machine holds, or shrink the
machine's memory as fastnn sees it (the `small_memory` fixture) so nothing big is ever allocated.
Item 9: every valid NumPy layout gives the bits of a contiguous copy everywhere.
Item 8: labels range-checked in their own dtype; choice/str hyper-parameters type-checked first;
paths, thread counts, dataset dtypes and generator arguments refused with a clear error.
"""

import numpy as np
import pytest

import fastnn as fnn
from fastnn import _validation as V
from fastnn import datasets as D
from fastnn import losses as L

HUGE = 10**12   # rows: beyond any machine's memory at 2 bytes per row or more


def huge(cols, dtype=np.float64, value=0.5, rows=HUGE):
    """A read-only broadcast (rows, cols) array that occupies one row of memory."""
    return np.broadcast_to(np.full((1, cols), value, dtype), (rows, cols))


@pytest.fixture
def small_memory(monkeypatch):
    """fastnn sees a machine with 1 MiB of memory: anything above is refused, nothing big is allocated."""
    monkeypatch.setattr(V, "_physical_memory", 2**20)
    return 2**20


def _model(dtype="float32", dropout=False, out=2, seed=3):
    layers = [fnn.Dense(4, 6, "tanh")]
    if dropout:
        layers.append(fnn.Dropout(0.3))
    layers.append(fnn.Dense(6, out))
    return fnn.Sequential(layers, dtype=dtype, seed=seed)


# ------------------------------------------------------------------------------------------
# item 7: the one size check
# ------------------------------------------------------------------------------------------

def test_check_nbytes_message_and_no_overflow():
    with pytest.raises(ValueError, match=r"^X of shape \(1000000000000, 4\) would need 14\.6 TiB \(float32\), "
                                         r"more than this machine's .* of memory$"):
        V.check_nbytes("X", (HUGE, 4), np.float32)
    # Python ints: 2**64 * 2**64 elements do not wrap around to a small number
    with pytest.raises(ValueError, match=r"n: the buffer of shape \(18446744073709551616, 18446744073709551616\)"):
        V.check_nbytes("n", (2**64, 2**64), np.float64, what="the buffer")
    with pytest.raises(ValueError, match=r"\(3 arrays of float64\)"):
        V.check_nbytes("y_pred", HUGE, np.float64, arrays=3)
    assert V.check_nbytes("X", (10, 4), np.float32) == 160
    assert V.check_nbytes("X", np.int64(10), np.float64, arrays=2) == 160


def test_check_nbytes_against_physical_memory(small_memory):
    assert V.physical_memory() == small_memory
    assert V.check_nbytes("X", (2**20 // 8,), np.float64) == 2**20   # exactly the memory: allowed
    with pytest.raises(ValueError, match=r"X of shape \(131073,\) would need 1\.0 MiB \(float64\), more than this "
                                         r"machine's 1\.0 MiB of memory"):
        V.check_nbytes("X", (2**20 // 8 + 1,), np.float64)


def test_physical_memory_from_the_os_and_fallback(monkeypatch):
    monkeypatch.setattr(V, "_physical_memory", None)
    import os
    assert V.physical_memory() == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")

    def no_sysconf(name):
        raise ValueError(f"unknown {name}")

    monkeypatch.setattr(V, "_physical_memory", None)
    monkeypatch.setattr(V.os, "sysconf", no_sysconf)
    assert V.physical_memory() == V._FALLBACK_MEMORY


@pytest.mark.parametrize("build,match", [
    (lambda: fnn.Dense(10**6, 10**6),
     r"in_features=1000000, out_features=1000000: the weight of shape \(1000000, 1000000\) would need 3\.6 TiB"),
    (lambda: fnn.Dense(4, 2**62), r"out_features=4611686018427387904: the weight of shape \(4, 4611686018427387904\)"),
    (lambda: fnn.Dense(2**62, 4), r"in_features=4611686018427387904, out_features=4: the weight"),
])
def test_dense_too_big_names_the_widths(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_broadcast_input_to_the_model_is_refused_before_copying():
    model = _model()
    model.compile(optimizer="sgd", loss="mse")
    X, y = huge(4), huge(2)
    # the argument first; predict may also count its output (n, 4 + out_features) with X's copy
    msg = r"^{}( of|: .* of) shape \(1000000000000, \d+\) would need .* more than this machine's"
    for call, name in [(lambda: model.predict(X), "X"), (lambda: model.fit(X, y, verbose=0), "X"),
                       (lambda: model.evaluate(X, y), "X"), (lambda: model.train_step(X, y), "xb"),
                       (lambda: model(X), "x")]:
        with pytest.raises(ValueError, match=msg.format(name)):
            call()
    model.eval()
    with pytest.raises(ValueError, match=msg.format("x")):
        model(X)


def test_issue_sized_broadcast_input_is_refused(small_memory):
    """The issue's (10**9, 4) broadcast input, refused on a machine too small for its copy."""
    model = _model()
    model.compile(optimizer="sgd", loss="mse")
    X, y = huge(4, rows=10**9), huge(2, rows=10**9)
    for call in (lambda: model.predict(X), lambda: model.fit(X, y, verbose=0), lambda: model.evaluate(X, y)):
        with pytest.raises(ValueError, match=r"^X( of|: .* of) shape \(1000000000, \d+\) would need "):
            call()


def test_a_copy_that_fits_is_still_made(small_memory):
    X = huge(4, rows=1000)   # 16 kB as float32
    out = V.as_float_array(X, "X", np.float32)
    assert out.flags.c_contiguous and out.flags.writeable and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.full((1000, 4), 0.5, np.float32))


@pytest.mark.parametrize("loss,target", [
    (L.MSELoss(), huge(4)), (L.BCEWithLogitsLoss(), huge(4)), (L.BCELoss(weight=np.ones(4)), huge(4)),
    (L.CrossEntropyLoss(), np.broadcast_to(np.zeros(1, np.int64), (HUGE,))),
    (L.NLLLoss(reduction="none"), np.broadcast_to(np.zeros(1, np.int64), (HUGE,))),
])
def test_losses_refuse_a_huge_broadcast_input(loss, target):
    with pytest.raises(ValueError, match=r"y_pred: the loss's arrays of shape \(1000000000000, 4\) would need"):
        loss(huge(4), target)


def test_losses_count_every_array_of_the_call(small_memory):
    # 2**20 bytes hold 32768 float32 rows of width 8; the call holds y_pred and its gradient (2 arrays),
    # plus the loss per element for 'none' and each full-size weight
    y = np.zeros((16384, 8), np.float32)
    assert L.MSELoss()(y, y) == 0.0
    for loss in (L.MSELoss(reduction="none"), L.BCEWithLogitsLoss(weight=np.ones(8))):
        with pytest.raises(ValueError, match=r"y_pred: .* \(3 arrays of float32\), more than this machine's 1\.0 MiB"):
            loss(y, y)


@pytest.mark.parametrize("name", ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
                                  "torch_linear"])
def test_initializers_refuse_a_huge_shape(name):
    init = getattr(fnn.init, name)
    with pytest.raises(ValueError, match=r"shape: the initial values of shape "
                                         r"\(1000000, 1000000\) would need 7\.3 TiB"):
        init(np.random.default_rng(0), (10**6, 10**6))
    assert init(np.random.default_rng(0), (3, 2)).shape == (3, 2)


@pytest.mark.parametrize("call,match", [
    (lambda: D.one_hot([1, 2], num_classes=HUGE),
     r"num_classes=1000000000000: the one-hot rows of shape \(2, 1000000000000\) would need 7\.3 TiB"),
    (lambda: D.one_hot(np.array([2**64 - 1], np.uint64)), r"num_classes=max\(labels\) \+ 1=18446744073709551616"),
    (lambda: D.one_hot(np.broadcast_to(np.zeros(1, np.int64), (HUGE,)), num_classes=3),
     r"num_classes=3: the one-hot rows of shape \(1000000000000, 3\)"),
    (lambda: D.make_moons(HUGE), r"n_samples=1000000000000: the points of shape \(1000000000000, 2\) would need"),
    (lambda: D.make_moons(2**64), r"n_samples=18446744073709551616: the points"),
    (lambda: D.make_moons((2**63, 2**63)), r"n_samples=18446744073709551616: the points"),
    (lambda: D.make_spirals(HUGE), r"n_samples=1000000000000: the points"),
    (lambda: D.make_spirals(HUGE, n_classes=HUGE), r"n_samples=1000000000000: the points"),
    (lambda: D.train_test_split(huge(4)), r"array 0: its train and test parts of shape \(1000000000000, 4\)"),
    (lambda: D.StandardScaler().fit(huge(4)), r"X of shape \(1000000000000, 4\) would need"),
    (lambda: D.standardize(np.zeros((3, 4)), huge(4)), r"X of shape \(1000000000000, 4\) would need"),
    (lambda: D.from_one_hot(huge(4)), r"Y of shape \(1000000000000, 4\) would need"),
])
def test_datasets_refuse_sizes_no_machine_holds(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_datasets_sizes_against_memory(small_memory):
    with pytest.raises(ValueError, match=r"n_samples=20000: the points .* \(4 arrays of float64\), more than this "):
        D.make_moons(20_000)
    assert D.make_moons(1000)[0].shape == (1000, 2)
    with pytest.raises(ValueError, match=r"num_classes=300000: the one-hot rows of shape \(1, 300000\)"):
        D.one_hot([0], num_classes=300_000)
    with pytest.raises(ValueError, match=r"X: the float64 deviations from the mean of shape \(20000, 4\)"):
        D.StandardScaler().fit(np.zeros((20_000, 4), np.float32))   # 320 kB, fits; its float64 deviations don't
    labels = np.broadcast_to(np.zeros(1, np.int8), (100_000,))   # 100 kB as a copy
    with pytest.raises(ValueError, match=r"array 1: its train and test parts of shape \(100000, 4\) "
                                         r"would need 3\.1 MiB"):
        D.train_test_split(labels, huge(4, rows=100_000))
    with pytest.raises(ValueError, match=r"array 0 \(100000 rows\): the row indices of shape \(100000,\) would need "
                                         r"1\.5 MiB \(2 arrays of int64\)"):
        D.train_test_split(labels)


# ------------------------------------------------------------------------------------------
# item 9: every valid layout gives the bits of a contiguous copy
# ------------------------------------------------------------------------------------------

def _misaligned(a):
    buf = np.zeros(a.nbytes + 1, np.uint8)
    out = buf[1:].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned or a.dtype.itemsize == 1
    return out


def _reversed(a):
    return np.ascontiguousarray(a[::-1])[::-1]


def _strided(a):
    big = np.zeros((a.shape[0], 3) + a.shape[1:], a.dtype)
    big[:, 1] = a
    return big[:, 1]


def _readonly(a):
    a = a.copy()
    a.setflags(write=False)
    return a


def _broadcast(a):
    return np.broadcast_to(a[:1], a.shape)


def _byteswapped(a):
    return a.astype(a.dtype.newbyteorder(">" if a.dtype.byteorder in "=<" else "<"))


LAYOUTS = {
    "fortran": np.asfortranarray, "strided": _strided, "negative": _reversed, "readonly": _readonly,
    "misaligned": _misaligned, "broadcast": _broadcast, "byteswapped": _byteswapped,
    "misaligned_byteswapped": lambda a: _misaligned(_byteswapped(a)),
}


def _pair(a, layout):
    """(a in `layout`, the contiguous native copy of the same values)."""
    arr = LAYOUTS[layout](a)
    ref = np.array(arr, dtype=arr.dtype.newbyteorder("="), order="C")
    np.testing.assert_array_equal(arr, ref)
    return arr, ref


def _data(dtype, n=12):
    r = np.random.default_rng(11)
    X = r.standard_normal((n, 4)).astype(dtype)
    Y = r.standard_normal((n, 2)).astype(dtype)
    return X, Y


def _same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def _weights(model):
    return [p.data.copy() for p in model.parameters()]


def test_as_float_array_returns_what_the_kernels_need():
    X, _ = _data(np.float32)
    for layout in LAYOUTS:
        arr, ref = _pair(X, layout)
        out = V.as_float_array(arr, "X", np.float32)
        assert out.flags.c_contiguous and out.flags.aligned and out.dtype.isnative and out.dtype == np.float32
        _same_bits(out, ref)
    assert V.as_float_array(X, "X", np.float32) is X   # already right: no copy
    labels = np.arange(12, dtype=np.int64) % 3
    for layout in LAYOUTS:
        arr, ref = _pair(labels, layout)
        out = V.as_labels(arr, "y", 12, 3)
        assert out.flags.c_contiguous and out.flags.aligned and out.dtype.isnative and out.dtype == np.int64
        _same_bits(out, ref)
    assert V.as_labels(labels, "y", 12, 3) is labels


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("model_dtype,data_dtype", [("float32", np.float32), ("float64", np.float64),
                                                    ("float32", np.float64)])
def test_fit_train_step_predict_evaluate_any_layout(layout, model_dtype, data_dtype):
    X, Y = _data(data_dtype)
    (x, xref), (y, yref) = _pair(X, layout), _pair(Y, layout)
    runs = []
    for xs, ys in ((x, y), (xref, yref)):
        m = _model(model_dtype, dropout=True)
        m.compile(optimizer="adam", loss="mse", metrics=["mae"])
        hist = m.fit(xs, ys, epochs=2, batch_size=5, shuffle=True, verbose=0)
        step = m.train_step(xs, ys)
        runs.append((hist.history, step, m.predict(xs), m.predict(xs, batch_size=5), m.evaluate(xs, ys),
                     _weights(m)))
    (h1, s1, p1, pb1, e1, w1), (h2, s2, p2, pb2, e2, w2) = runs
    assert h1 == h2 and s1 == s2 and e1 == e2
    _same_bits(p1, p2)
    _same_bits(pb1, pb2)
    for a, b in zip(w1, w2):
        _same_bits(a, b)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_classifier_fit_any_layout(layout):
    X, _ = _data(np.float32)
    x, xref = _pair(X, layout)
    y, yref = _pair(np.arange(12, dtype=np.int64) % 3, layout)   # labels in the same layout
    outs = []
    for xs, ys in ((x, y), (xref, yref)):
        m = _model("float32", out=3)
        m.compile(optimizer="sgd", loss="cross_entropy", metrics=["accuracy"])
        m.fit(xs, ys, epochs=1, batch_size=4, verbose=0)
        outs.append((m.train_step(xs, ys), m.evaluate(xs, ys), m.predict(xs)))
    assert outs[0][:2] == outs[1][:2]
    _same_bits(outs[0][2], outs[1][2])


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_model_call_and_backward_any_layout(layout, dtype):
    X, Y = _data(dtype)
    x, xref = _pair(X, layout)
    g, gref = _pair(Y, layout)
    results = []
    for xs, gs in ((x, g), (xref, gref)):
        m = _model(dtype, dropout=True)
        train_out = m(xs)
        m.zero_grad()
        m.backward(gs)
        grads = [p.grad.copy() for p in m.parameters()]
        m.eval()
        eval_out = m(xs)
        results.append((train_out, eval_out, grads))
    for a, b in zip(results[0][:2], results[1][:2]):
        _same_bits(a, b)
    for a, b in zip(results[0][2], results[1][2]):
        _same_bits(a, b)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_any_layout(layout, dtype):
    r = np.random.default_rng(5)
    logits = r.standard_normal((9, 4)).astype(dtype)
    probs = r.uniform(0.05, 0.95, (9, 4)).astype(dtype)
    targets = r.uniform(0, 1, (9, 4)).astype(dtype)
    labels = np.arange(9, dtype=np.int64) % 4
    cases = [
        (lambda: L.MSELoss(), logits, targets), (lambda: L.MSELoss(reduction="none"), logits, targets),
        (lambda: L.BCELoss(), probs, targets), (lambda: L.BCEWithLogitsLoss(pos_weight=np.arange(1.0, 5.0)),
                                                 logits, targets),
        (lambda: L.CrossEntropyLoss(label_smoothing=0.1), logits, labels),
        (lambda: L.CrossEntropyLoss(), logits, targets / targets.sum(1, keepdims=True)),
        (lambda: L.NLLLoss(reduction="sum"), logits, labels),
    ]
    for make, pred, target in cases:
        p, pref = _pair(pred, layout)
        t, tref = _pair(target, layout)   # class indices in the layout too
        f1, f2 = make(), make()
        v1, v2 = f1(p, t), f2(pref, tref)
        _same_bits(v1, v2)
        _same_bits(f1.backward(), f2.backward())
        assert f1.backward().dtype == np.dtype(dtype)   # '>f4' computes in float32, like its native copy


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_loss_backward_grad_output_any_layout(layout):
    r = np.random.default_rng(8)
    pred, target, up = (r.standard_normal((6, 3)).astype(np.float32) for _ in range(3))
    g, gref = _pair(up, layout)
    f1, f2 = L.BCEWithLogitsLoss(reduction="none"), L.BCEWithLogitsLoss(reduction="none")
    f1(pred, target)
    f2(pred, target)
    _same_bits(f1.backward(g), f2.backward(gref))
    c1, c2 = L.CrossEntropyLoss(reduction="none"), L.CrossEntropyLoss(reduction="none")
    labels = np.arange(6) % 3
    c1(pred, labels)
    c2(pred, labels)
    _same_bits(c1.backward(_pair(up[:, 0], layout)[0]), c2.backward(_pair(up[:, 0], layout)[1]))


# ------------------------------------------------------------------------------------------
# item 8: labels, typed hyper-parameters, paths, threads, dataset arguments
# ------------------------------------------------------------------------------------------

def test_uint64_label_is_not_wrapped_to_ignore_index():
    y_pred = np.zeros((2, 3))
    y = np.array([0, 2**64 - 1], np.uint64)
    with pytest.raises(ValueError, match=r"y must be class indices in \[0, 2\] or ignore_index=-1, "
                                         r"got 18446744073709551615"):
        L.CrossEntropyLoss(ignore_index=-1)(y_pred, y)
    with pytest.raises(ValueError, match=r"got 18446744073709551615"):
        L.NLLLoss(ignore_index=-1)(y_pred, y)
    model = _model(out=3)
    model.compile(optimizer="sgd", loss=L.CrossEntropyLoss(ignore_index=-1))
    X = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"y must be class indices .* got 18446744073709551615"):
        model.fit(X, y, verbose=0)
    with pytest.raises(ValueError, match=r"yb must be class indices .* got 18446744073709551615"):
        model.train_step(X, y)
    # a real ignore_index still works in an unsigned dtype, and a negative one is simply never matched
    assert np.isnan(L.CrossEntropyLoss(ignore_index=5)(y_pred, np.array([5, 5], np.uint8)))
    assert L.CrossEntropyLoss(ignore_index=-1)(y_pred, np.array([0, 2], np.uint64)) == pytest.approx(np.log(3))


@pytest.mark.parametrize("labels", [np.array([-2**63], np.int64), np.array([2**63], np.uint64),
                                    np.array([255], np.uint8)])
def test_out_of_range_labels_in_their_own_dtype(labels):
    with pytest.raises(ValueError, match=rf"y must be class indices in \[0, 2\], got {labels[0]}"):
        V.as_labels(labels, "y", 1, 3)
    with pytest.raises(ValueError, match=rf"labels must be class indices in \[0, 2\] \(num_classes=3\), "
                                         rf"got {labels[0]}"):
        D.one_hot(labels, num_classes=3)


ARRAY = np.array(["relu", "tanh"])


@pytest.mark.parametrize("build,match", [
    (lambda: fnn.Dense(2, 2, init=ARRAY), r"init must be a str, one of .*got ndarray"),
    (lambda: fnn.Dense(2, 2, init=None), r"init must be a str, .*got NoneType None"),
    (lambda: fnn.Dense(2, 2, init=["torch"]), r"init must be a str, .*got list"),
    (lambda: fnn.Dense(2, 2, activation=ARRAY), r"activation must be None, an Activation layer or one of .*ndarray"),
    (lambda: fnn.Dense(2, 2, activation=1.5), r"activation must be .*got float 1\.5"),
    (lambda: fnn.Dense(2, 2, activation={"relu": 1}), r"activation must be .*got dict"),
    (lambda: fnn.Dense(2, 2, use_bias=np.array([True, False])), r"use_bias must be a bool"),
    (lambda: fnn.Dense(np.array([2, 3]), 2), r"in_features must be an int"),
    (lambda: fnn.GELU(approximate=ARRAY), r"approximate must be a str, one of 'none', 'tanh'; got ndarray"),
    (lambda: fnn.GELU(approximate=None), r"approximate must be a str, .*got NoneType None"),
    (lambda: fnn.GELU(approximate=0.5), r"approximate must be a str"),
    (lambda: fnn.Softmax(dim=np.array([1, 1])), r"dim must be an int"),
    (lambda: fnn.LeakyReLU(np.array([0.1, 0.2])), r"negative_slope must be a real number"),
    (lambda: fnn.ELU(alpha=[1.0]), r"alpha must be a real number"),
    (lambda: fnn.Dropout(np.array([0.1, 0.2])), r"p must be a real number"),
    (lambda: L.MSELoss(reduction=ARRAY), r"reduction must be a str, one of 'mean', 'sum', 'none'; got ndarray"),
    (lambda: L.BCELoss(reduction=["mean"]), r"reduction must be a str, .*got list"),
    (lambda: L.BCEWithLogitsLoss(reduction=1), r"reduction must be a str, .*got int 1"),
    (lambda: L.CrossEntropyLoss(reduction={"mean"}), r"reduction must be a str, .*got set"),
    (lambda: L.NLLLoss(reduction=None), r"reduction must be a str, .*got NoneType"),
    (lambda: L.CrossEntropyLoss(label_smoothing=np.array([0.1, 0.2])), r"label_smoothing must be a real number"),
    (lambda: L.CrossEntropyLoss(ignore_index=np.array([1, 2])), r"ignore_index must be an int"),
    (lambda: fnn.callbacks.EarlyStopping(mode=ARRAY), r"mode must be a str"),
    (lambda: D.load_digits(dtype=ARRAY), r"dtype must be 'float32' or 'float64'"),
    (lambda: D.load_digits(scale=np.array([True])), r"scale must be a bool"),
    (lambda: D.make_moons(noise=np.array([0.1, 0.2])), r"noise must be a real number"),
    (lambda: D.make_moons(shuffle=np.array([True])), r"shuffle must be a bool"),
    (lambda: D.make_moons(dtype=ARRAY), r"dtype must be 'float32' or 'float64'"),
    (lambda: D.make_moons(random_state=np.array([1, 2])), r"random_state must be None, an int"),
    (lambda: D.make_spirals(n_classes=np.array([2, 3])), r"n_classes must be an int"),
    (lambda: D.make_spirals(noise="0.1"), r"noise must be a real number"),
    (lambda: D.train_test_split(np.zeros(10), test_size=np.array([0.1, 0.2])), r"test_size must be None, an int"),
    (lambda: D.train_test_split(np.zeros(10), train_size="half"), r"train_size must be None, an int"),
    (lambda: D.train_test_split(np.zeros(10), shuffle=np.array([True])), r"shuffle must be a bool"),
    (lambda: D.StandardScaler(with_mean=np.array([True, False])), r"with_mean must be a bool"),
    (lambda: D.StandardScaler(with_std=None), r"with_std must be a bool"),
    (lambda: D.one_hot([1], num_classes=np.array([3, 4])), r"num_classes must be an int"),
    (lambda: D.one_hot([1], num_classes=3.0), r"num_classes must be an int"),
    (lambda: D.one_hot([1], dtype="complex64"), r"dtype must be a real numeric dtype .*got 'complex64'"),
    (lambda: D.one_hot([1], dtype=ARRAY), r"dtype must be a real numeric dtype"),
    (lambda: D.load_csv("x.csv", target=ARRAY), r"target must be the name of a column"),
    (lambda: D.load_csv("x.csv", target="y", delimiter=ARRAY), r"delimiter must be a single character \(a str\)"),
    (lambda: D.load_npz("x.npz", x_key=ARRAY), r"x_key must be None or the name of an array"),
    (lambda: D.load_npz("x.npz", y_key=None), r"y_key must be the name of an array"),
])
def test_wrong_types_are_type_errors_naming_the_argument(build, match):
    with pytest.raises(TypeError, match=match):
        build()


def test_one_hot_keeps_numeric_dtypes():
    np.testing.assert_array_equal(D.one_hot([1, 0], dtype="int64"), [[0, 1], [1, 0]])
    assert D.one_hot([1], num_classes=2, dtype=bool).dtype == np.bool_


@pytest.mark.parametrize("call", [lambda: D.load_csv(None, "y"), lambda: D.load_npz(None),
                                  lambda: D.load_csv(3.5, "y"), lambda: D.load_npz(["a.npz"])])
def test_loaders_name_path(call):
    with pytest.raises(TypeError, match=r"path must be a file path \(str, bytes or os.PathLike\), got "):
        call()


def test_set_num_threads_range():
    before = fnn.get_num_threads()
    try:
        for n in (2**31, 2**64, 1025, 0, -1):
            with pytest.raises(ValueError, match=rf"n must be in \[1, 1024\], got {n}"):
                fnn.set_num_threads(n)
        with pytest.raises(TypeError, match=r"n must be an int, got 2\.0"):
            fnn.set_num_threads(2.0)
        assert fnn.get_num_threads() == before   # a refused call changes nothing
    finally:
        fnn.set_num_threads(before)


@pytest.mark.parametrize("dtype", ["complex64", "float16", "int64", np.complex128, "U3"])
def test_load_digits_dtype(dtype):
    with pytest.raises(TypeError, match=r"dtype must be 'float32' or 'float64', got "):
        D.load_digits(dtype=dtype)


def test_load_digits_float_dtypes():
    X32, y = D.load_digits()
    X64, _ = D.load_digits(dtype=np.float64)
    assert X32.dtype == np.float32 and X64.dtype == np.float64 and y.dtype == np.int64
    np.testing.assert_array_equal(X32, X64.astype(np.float32))


def test_noise_minus_zero_is_zero():
    """scikit-learn's noise interval [0, inf) holds -0.0 (== 0.0): the same points as noise=0.0."""
    for make in (D.make_moons, D.make_spirals):
        a = make(noise=-0.0, random_state=4, dtype="float64")
        b = make(noise=0.0, random_state=4, dtype="float64")
        _same_bits(a[0], b[0])
        _same_bits(a[1], b[1])


@pytest.mark.parametrize("make", [D.make_moons, D.make_spirals])
@pytest.mark.parametrize("kw,exc,match", [
    ({"noise": -0.1}, ValueError, r"noise must be a finite number in \[0, inf\), got -0\.1"),
    ({"noise": float("nan")}, ValueError, r"noise must be a finite number in \[0, inf\), got nan"),
    ({"noise": float("inf")}, ValueError, r"noise must be a finite number in \[0, inf\), got inf"),
    ({"noise": True}, TypeError, r"noise must be a real number, got True"),
    ({"n_samples": True}, TypeError, r"n_samples must be an int"),
    ({"n_samples": 10.0}, TypeError, r"n_samples must be an int"),
    ({"n_samples": -5}, (TypeError, ValueError), r"n_samples"),
    ({"n_samples": 0}, (TypeError, ValueError), r"n_samples"),
    ({"n_samples": 2**64}, ValueError, r"n_samples=18446744073709551616: the points .* would need"),
])
def test_generator_arguments(make, kw, exc, match):
    with pytest.raises(exc, match=match):
        make(**kw)


@pytest.mark.parametrize("kw,exc,match", [
    ({"test_size": float("nan")}, ValueError, r"test_size must be .* got nan"),
    ({"test_size": -0.0}, ValueError, r"test_size must be .* got -0\.0"),
    ({"test_size": 2**64}, ValueError, r"test_size must be .* got 18446744073709551616"),
    ({"train_size": True}, TypeError, r"train_size must be None, an int or a float, got True"),
    ({"random_state": 2**64}, ValueError, r"random_state must be an int in \[0, 2\*\*32 - 1\]"),
    ({"random_state": 1.5}, TypeError, r"random_state must be None, an int"),
])
def test_train_test_split_arguments(kw, exc, match):
    with pytest.raises(exc, match=match):
        D.train_test_split(np.arange(10), **kw)


def test_scaler_and_from_one_hot_arguments():
    with pytest.raises(ValueError, match=r"X must be finite"):
        D.StandardScaler().fit([[1.0, np.nan]])
    with pytest.raises(TypeError, match=r"X must hold real numbers"):
        D.StandardScaler().fit(np.array([["a"]]))
    with pytest.raises(ValueError, match=r"Y must be 2-D"):
        D.from_one_hot(np.zeros(3))
    # non-native byte order keeps its float width (not widened to float64)
    Xb = np.arange(6, dtype=">f4").reshape(3, 2)
    out = D.StandardScaler().fit_transform(Xb)
    assert out.dtype == np.float32
    _same_bits(out, D.StandardScaler().fit_transform(Xb.astype(np.float32)))


# ---------------------------------------------------------------------------------------------- scalar checks

@pytest.mark.parametrize("value, low, high, ok", [
    (3, 1, None, True), (1, 1, 1, True), (0, 1, None, False), (5, None, 4, False), (np.int64(3), 1, 5, True),
    (True, None, None, False), (3.0, None, None, False), ("3", None, None, False), (2**70, None, None, True),
])
def test_check_int_fast_path_agrees_with_the_full_check(value, low, high, ok):
    if ok:
        got = V.check_int(value, "n", low=low, high=high)
        assert got == value and type(got) is int
    else:
        with pytest.raises((TypeError, ValueError), match="n must"):
            V.check_int(value, "n", low=low, high=high)


@pytest.mark.parametrize("value, kw, ok", [
    (0.5, dict(low=0.0, high=1.0), True), (0.0, dict(low=0.0, low_open=True), False), (1, dict(high=1.0), True),
    (1.0, dict(high=1.0, high_open=True), False), (float("nan"), {}, False), (float("inf"), {}, False),
    (np.float32(0.25), dict(low=0.0), True), (True, {}, False), (-1e-300, dict(low=0.0), False),
])
def test_check_float_fast_path_agrees_with_the_full_check(value, kw, ok):
    if ok:
        got = V.check_float(value, "lr", **kw)
        assert got == float(value) and type(got) is float
    else:
        with pytest.raises((TypeError, ValueError), match="lr must"):
            V.check_float(value, "lr", **kw)


def test_batch_fast_paths_take_only_what_the_kernels_take():
    x = np.ones((4, 3), np.float32)
    assert V.as_float_array(x, "x", np.dtype(np.float32), ndim=2) is x
    for other in (x[:, ::-1], np.asfortranarray(np.ones((4, 3), np.float32)), x.astype(">f4"), x.astype(np.float64)):
        out = V.as_float_array(other, "x", np.dtype(np.float32), ndim=2)
        assert out is not other and out.flags.c_contiguous and out.dtype == np.float32
        np.testing.assert_array_equal(out, other)
    with pytest.raises(ValueError, match="x must"):
        V.as_float_array(x, "x", np.dtype(np.float32), ndim=1)
    y = np.array([0, 2, 1, 2], np.int64)
    assert V.as_labels(y, "y", 4, 3) is y
    with pytest.raises(ValueError, match=r"y must be class indices in \[0, 2\], got 3"):
        V.as_labels(np.array([0, 3, 1, 2], np.int64), "y", 4, 3)
    assert V.as_labels(np.array([0, -100, 1, 2], np.int64), "y", 4, 3, ignore_index=-100) is not None
    with pytest.raises(ValueError, match="shape"):
        V.as_labels(y, "y", 5, 3)
    out = V.as_labels(y[::-1], "y", 4, 3)
    assert out.flags.c_contiguous and (out == y[::-1]).all()
