"""scikit-learn estimators on fastnn's compiled engine: ``MLPClassifier`` and ``MLPRegressor``.

    from fastnn.sklearn import MLPClassifier      # scikit-learn is needed here only (pip install fastnn[sklearn])
    clf = MLPClassifier(hidden_layer_sizes=(64,), solver="adam", random_state=0).fit(X, y)

The same estimators as ``sklearn.neural_network.MLPClassifier``/``MLPRegressor`` (scikit-learn 1.9): the same
constructor (names, defaults, meanings, parameter validation through scikit-learn's ``_parameter_constraints``),
the same fitted attributes and methods, and the same numbers: given the same data and ``random_state`` the
``sgd`` and ``adam`` fits give scikit-learn's ``coefs_``/``intercepts_``/``loss_curve_``/``n_iter_`` to float64
rounding, and ``lbfgs`` (scipy's L-BFGS-B, as scikit-learn drives it) reaches the same loss. The deviations are
listed in each class's docstring (``_DEVIATIONS``).

How it is built (no second training loop):

- The network is a plain fastnn ``Sequential``: ``Dense`` layers with the hidden activation fused, an optional
  ``Dropout(dropout)`` after each hidden layer, and no output activation (the model outputs z, the last
  pre-activation; the output activation is applied by ``fastnn.losses.SklearnMLPLoss`` in training and here in
  ``predict``). fastnn's ``Dense.weight`` is (fan_in, fan_out) and ``bias`` (fan_out,): scikit-learn's layout.
- ``coefs_`` and ``intercepts_`` are properties returning *views* of the Sequential's weight arena (decision:
  one copy of the weights, always in sync, nothing to resynchronise after a pickle round trip; assigning
  ``coefs_``/``intercepts_`` copies the values into the arena). ``estimator.model_`` is the Sequential itself.
- sgd/adam: each epoch runs scikit-learn's shuffled ``sample_idx`` through ``Engine.train_batches`` (the full
  batches, one nogil call per chunk of about 0.1 s, Ctrl-C served between chunks; then the last, partial batch
  as one more batch of its size), with ``SklearnMLPLoss`` (scikit-learn's losses, alpha L2, sample weights) and
  ``fastnn.optim.SklearnAdam``/``SklearnSGD`` (its update rules). The epoch-end logic (loss_ accumulation,
  stopping rules, learning-rate schedules, early stopping, best weights) is scikit-learn's, line for line.
- lbfgs: ``scipy.optimize.minimize(method="L-BFGS-B", jac=True)`` with scikit-learn's options on
  ``Engine.loss_grad`` (the compiled full-batch loss + gradient).
- Sparse X (CSR/CSC): densified a chunk of rows at a time, at most ``SPARSE_CHUNK_BYTES`` (64 MiB) of dense
  rows at once (and at least one batch); one batch that alone exceeds the budget raises a ValueError that says
  so. The whole matrix is never densified.
- Threads: ``n_threads=None`` leaves fastnn's thread count alone (``fastnn.get_num_threads()``: OMP_NUM_THREADS
  when set, which joblib's loky workers set to their inner-thread limit, else the usable cores); an int sets it
  for the duration of each fit/predict call and restores it afterwards.
"""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from itertools import chain
from numbers import Integral, Real

import numpy as np
import scipy
import scipy.optimize
import scipy.sparse as sp
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as _SkMLPClassifier
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import _config
from . import losses as _losses
from . import optim as _optim
from ._interrupt import deferred
from ._kernels import _runtime
from .layers import Dense, Dropout
from .model import Sequential

__all__ = ["MLPClassifier", "MLPRegressor", "SPARSE_CHUNK_BYTES"]

_STOCHASTIC_SOLVERS = ("sgd", "adam")
#: the most bytes of densified sparse rows held at once (training chunks, lbfgs chunks, predict chunks)
SPARSE_CHUNK_BYTES = 64 << 20
_CHUNK_SECONDS = 0.1   # one compiled run of batches (Ctrl-C latency), as Sequential.fit
_FASTNN_NAME = {"logistic": "sigmoid"}   # scikit-learn's activation names that fastnn spells otherwise
_SCIPY_IPRINT = tuple(int(v) for v in scipy.__version__.split(".")[:2]) < (1, 15)   # iprint deprecated in 1.15


def _pack(coefs, intercepts):
    """scikit-learn's packed vector: every coefficient matrix, then every intercept."""
    return np.hstack([a.ravel() for a in coefs + intercepts])


def _softmax(z):
    """scikit-learn's inplace_softmax."""
    z -= z.max(axis=1)[:, np.newaxis]
    np.exp(z, out=z)
    z /= z.sum(axis=1)[:, np.newaxis]
    return z


def _apply_output(name, z):
    if name == "logistic":
        return expit(z, out=z)
    if name == "softmax":
        return _softmax(z)
    if name == "exp":
        return np.exp(z, out=z)
    return z


_THREADS_LOCK = threading.Lock()
_threads_active = 0      # fit/predict calls inside _threads with an n_threads
_threads_saved = None    # the setting before the first of them (None: the default), restored by the last


class _WriteThrough(list):
    """coefs_/intercepts_: views of the model's arrays; assigning an element copies into the model's array (a
    plain list would take the new array and silently leave the model as it was)."""

    __slots__ = ("_name",)

    def __init__(self, views, name):
        super().__init__(views)
        self._name = name

    def __setitem__(self, i, value):
        if isinstance(i, slice):
            raise TypeError(f"{self._name}[a:b] = ... is not supported: assign each array, {self._name}[i] = a")
        target = list.__getitem__(self, i)
        a = np.asarray(value)
        if a.shape != target.shape:
            raise ValueError(f"{self._name}[{i}] must have shape {target.shape}, got {a.shape}")
        target[...] = a

    def __reduce__(self):   # pickles (and copies) as a plain list of arrays
        return list, (list(self),)

    def _refuse(self, *args, **kwargs):
        raise TypeError(f"{self._name} has one array per layer: its length cannot change (assign {self._name}[i] = a)")

    append = extend = insert = pop = remove = clear = __delitem__ = __iadd__ = _refuse


@contextmanager
def _threads(n):
    """fastnn's thread count for one call: n if given, else left alone. The count is process-wide: calls that
    overlap in several Python threads share it (the latest n holds), and the setting from before the first of
    them (an explicit count, or the default) comes back when the last one ends, never another call's n."""
    global _threads_active, _threads_saved
    if n is None:
        yield
        return
    with _THREADS_LOCK:
        if _threads_active == 0:
            _threads_saved = _config.given_num_threads()
        _threads_active += 1
        if _config.get_num_threads() != n or _config.given_num_threads() is None:
            _config.set_num_threads(n)
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _threads_active -= 1
            if _threads_active == 0 and _config.given_num_threads() != _threads_saved:
                _config.set_num_threads(_threads_saved)


def _chunk_rows(n_features, itemsize, at_least):
    """How many dense rows fit in SPARSE_CHUNK_BYTES (a multiple of `at_least`, at least `at_least`)."""
    row = max(1, n_features * itemsize)
    if at_least * row > SPARSE_CHUNK_BYTES:
        raise ValueError(
            f"sparse X: one batch of {at_least} rows x {n_features} features densified needs "
            f"{at_least * row / 2**20:.1f} MiB, more than the {SPARSE_CHUNK_BYTES >> 20} MiB budget "
            "(fastnn.sklearn.SPARSE_CHUNK_BYTES) for dense rows; use a smaller batch_size")
    rows = SPARSE_CHUNK_BYTES // row
    return max(at_least, rows - rows % at_least)


def _shuffle(idx: np.ndarray, random_state: np.random.RandomState) -> np.ndarray:
    """``sklearn.utils.shuffle(idx, random_state=random_state)`` for an index array and a RandomState: the same
    draws in the same order (its ``resample`` shuffles ``arange(n)`` and indexes with it), without its input
    validation (~100 us per epoch: 6% of a digits fit)."""
    perm = np.arange(idx.shape[0])
    random_state.shuffle(perm)
    return idx[perm]


def _dense_rows(X, rows, dtype):
    """Rows of X (an index array or slice) as a C-contiguous array of dtype (sparse rows densified)."""
    part = X[rows]
    if sp.issparse(part):
        part = part.toarray()
    return np.ascontiguousarray(part, dtype=dtype)


class _BaseMLP(BaseEstimator):
    """The shared part of fastnn's MLPClassifier and MLPRegressor (see the module docstring)."""

    _parameter_constraints: dict = {   # scikit-learn 1.9's BaseMultilayerPerceptron, then fastnn's extras
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        # scikit-learn's names ('identity', 'logistic', 'tanh', 'relu'), read from scikit-learn: its vocabulary,
        # not fastnn's (fastnn.layers.ACTIVATIONS is fastnn's, where 'logistic' is 'sigmoid')
        "activation": _SkMLPClassifier._parameter_constraints["activation"],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "dtype": [None, StrOptions({"float32", "float64"}), Options(type, {np.float32, np.float64})],
        "n_threads": [None, Interval(Integral, 1, None, closed="left")],
    }

    # ------------------------------------------------------------------ the weights (views of the model's arena)
    def _dense(self):
        model = self.__dict__.get("model_")
        if model is None:
            raise AttributeError(f"This {type(self).__name__} instance is not fitted yet: it has no weights")
        return [layer for layer in model.layers if isinstance(layer, Dense)]

    @property
    def coefs_(self):
        """The weight matrices, coefs_[i] of shape (fan_in, fan_out): views of the model's weights (a list
        that writes through: ``coefs_[i] = a`` copies a into layer i, as scikit-learn's list element would
        take effect)."""
        return _WriteThrough([layer.weight.data for layer in self._dense()], "coefs_")

    @coefs_.setter
    def coefs_(self, values):
        self._assign([layer.weight.data for layer in self._dense()], values, "coefs_")

    @property
    def intercepts_(self):
        """The bias vectors, intercepts_[i] of shape (fan_out,): views of the model's biases."""
        return _WriteThrough([layer.bias.data for layer in self._dense()], "intercepts_")

    @intercepts_.setter
    def intercepts_(self, values):
        self._assign([layer.bias.data for layer in self._dense()], values, "intercepts_")

    @staticmethod
    def _assign(targets, values, name):
        values = list(values)
        if len(values) != len(targets) or any(np.shape(v) != t.shape for v, t in zip(values, targets)):
            raise ValueError(f"{name} must be {len(targets)} arrays of shapes {[t.shape for t in targets]}, got "
                             f"shapes {[np.shape(v) for v in values]}")
        for t, v in zip(targets, values):
            t[...] = v

    def __sklearn_is_fitted__(self):
        return "model_" in self.__dict__

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # ------------------------------------------------------------------ set-up
    def _init_coef(self, fan_in, fan_out, dtype):
        """scikit-learn's Glorot uniform initialisation, the same draws in the same order."""
        factor = 6.0
        if self.activation == "logistic":
            factor = 2.0
        init_bound = np.sqrt(factor / (fan_in + fan_out))
        coef_init = self._random_state.uniform(-init_bound, init_bound, (fan_in, fan_out))
        intercept_init = self._random_state.uniform(-init_bound, init_bound, fan_out)
        return coef_init.astype(dtype, copy=False), intercept_init.astype(dtype, copy=False)

    def _initialize(self, y, layer_units, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        if not is_classifier(self):
            self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"

        inits = [self._init_coef(layer_units[i], layer_units[i + 1], dtype) for i in range(self.n_layers_ - 1)]
        # dropout masks need a seed: drawn after the weights (and only with dropout, so that dropout=0 consumes
        # exactly scikit-learn's random stream)
        seed = int(self._random_state.randint(np.iinfo(np.int32).max)) if self.dropout > 0 else 0
        layers = []
        for i in range(self.n_layers_ - 1):
            hidden = i < self.n_layers_ - 2
            layers.append(Dense(layer_units[i], layer_units[i + 1],
                                activation=_FASTNN_NAME.get(self.activation, self.activation) if hidden else None))
            if hidden and self.dropout > 0:
                layers.append(Dropout(float(self.dropout)))
        self.model_ = Sequential(layers, dtype=dtype, seed=seed)
        self.coefs_ = [c for c, _ in inits]
        self.intercepts_ = [b for _, b in inits]
        self.__dict__.pop("_optimizer", None)

        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [i.copy() for i in self.intercepts_]

        if self.solver in _STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _targets(self, y, sample_weight, dtype):
        """The loss's target array: y as floats (n, k), with the sample weights as a last column if given."""
        if sample_weight is None:
            return np.ascontiguousarray(y, dtype=dtype)
        return np.ascontiguousarray(np.hstack([y.astype(dtype), sample_weight.reshape(-1, 1).astype(dtype)]))

    # ------------------------------------------------------------------ fit
    def _fit(self, X, y, sample_weight=None, incremental=False):
        hidden_layer_sizes = self.hidden_layer_sizes
        if not hasattr(hidden_layer_sizes, "__iter__"):
            hidden_layer_sizes = [hidden_layer_sizes]
        hidden_layer_sizes = list(hidden_layer_sizes)
        if np.any(np.array(hidden_layer_sizes) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden_layer_sizes}.")
        first_pass = "model_" not in self.__dict__ or (not self.warm_start and not incremental)

        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if first_pass:
            dtype = np.dtype(self.dtype) if self.dtype is not None else X.dtype
        else:
            dtype = self.model_.dtype
        if X.dtype != dtype:
            X = X.astype(dtype)
        if sp.issparse(X):
            X = X.tocsr()   # row slicing (a sparse matrix copy, never densified whole)
        else:
            X = np.ascontiguousarray(X)
        n_samples, n_features = X.shape
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        self.n_outputs_ = y.shape[1]
        layer_units = [n_features] + hidden_layer_sizes + [self.n_outputs_]
        if self.dropout > 0 and self.solver == "lbfgs":
            raise ValueError(f"dropout={self.dropout!r} needs solver='sgd' or 'adam': lbfgs needs a deterministic "
                             "objective, and dropout draws new masks at every evaluation")
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, layer_units, dtype)

        with _threads(self.n_threads):
            _runtime.sync_omp_threads(_config.omp_threads())
            if self.solver in _STOCHASTIC_SOLVERS:
                self._fit_stochastic(X, y, sample_weight, incremental)
            elif self.solver == "lbfgs":
                self._fit_lbfgs(X, y, sample_weight, layer_units)

        weights = chain(self.coefs_, self.intercepts_)
        if not all(np.isfinite(w).all() for w in weights):
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")
        return self

    def _make_optimizer(self):
        params = self.model_.parameters()
        if self.solver == "sgd":
            return _optim.SklearnSGD(params, lr=float(self.learning_rate_init), momentum=float(self.momentum),
                                     nesterov=bool(self.nesterovs_momentum))
        return _optim.SklearnAdam(params, lr=float(self.learning_rate_init),
                                  betas=(float(self.beta_1), float(self.beta_2)), eps=float(self.epsilon))

    # scikit-learn's SGDOptimizer.iteration_ends / trigger_stopping, on the fastnn optimizer's learning rate
    def _iteration_ends(self, time_step):
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            self._optimizer.param_groups[0]["lr"] = float(self.learning_rate_init) / (time_step + 1) ** self.power_t

    def _trigger_stopping(self, msg, verbose):
        if self.solver != "sgd" or self.learning_rate != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        group = self._optimizer.param_groups[0]
        if group["lr"] <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        group["lr"] /= 5.0
        if verbose:
            print(msg + f" Setting learning rate to {group['lr']:f}")
        return False

    def _fit_stochastic(self, X, y, sample_weight, incremental):
        if not incremental or "_optimizer" not in self.__dict__:
            self._optimizer = self._make_optimizer()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:
            should_stratify = is_classifier(self) and self.n_outputs_ == 1
            stratify = y if should_stratify else None
            if sample_weight is None:
                X_train, X_val, y_train, y_val = train_test_split(
                    X, y, random_state=self._random_state, test_size=self.validation_fraction, stratify=stratify)
                sample_weight_train = sample_weight_val = None
            else:
                X_train, X_val, y_train, y_val, sample_weight_train, sample_weight_val = train_test_split(
                    X, y, sample_weight, random_state=self._random_state, test_size=self.validation_fraction,
                    stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                                 "or the size of your dataset.")
            if is_classifier(self):
                y_val = self._label_binarizer.inverse_transform(y_val)
        else:
            X_train, y_train, sample_weight_train = X, y, sample_weight
            X_val = y_val = sample_weight_val = None
        if not sp.issparse(X_train):
            X_train = np.ascontiguousarray(X_train)

        n_samples = X_train.shape[0]
        sample_idx = np.arange(n_samples, dtype=int)
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                              stacklevel=3)
            batch_size = int(np.clip(self.batch_size, 1, n_samples))

        model = self.model_
        T = self._targets(y_train, sample_weight_train, model.dtype)
        loss_fn = _losses.SklearnMLPLoss(self.out_activation_, alpha=float(self.alpha),
                                         weighted=sample_weight_train is not None)
        losses = np.empty(n_samples // batch_size, np.float64)
        try:
            with deferred() as interrupt:
                self.n_iter_ = 0
                for _ in range(self.max_iter):
                    if self.shuffle:
                        sample_idx = _shuffle(sample_idx, self._random_state)
                    order = np.ascontiguousarray(sample_idx, dtype=np.int64) if self.shuffle else None
                    accumulated_loss = self._epoch(X_train, T, order, batch_size, loss_fn, losses, interrupt)

                    self.n_iter_ += 1
                    self.loss_ = accumulated_loss / X_train.shape[0]
                    self.t_ += n_samples
                    self.loss_curve_.append(self.loss_)
                    if self.verbose:
                        print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")

                    self._update_no_improvement_count(early_stopping, X_val, y_val, sample_weight_val)
                    self._iteration_ends(self.t_)

                    if self._no_improvement_count > self.n_iter_no_change:
                        if early_stopping:
                            msg = (f"Validation score did not improve more than tol={self.tol:f} for "
                                   f"{self.n_iter_no_change} consecutive epochs.")
                        else:
                            msg = (f"Training loss did not improve more than tol={self.tol:f} for "
                                   f"{self.n_iter_no_change} consecutive epochs.")
                        if self._trigger_stopping(msg, self.verbose):
                            break
                        self._no_improvement_count = 0

                    if incremental:
                        break
                    if self.n_iter_ == self.max_iter:
                        warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                                      "optimization hasn't converged yet.", ConvergenceWarning, stacklevel=3)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=3)

        if early_stopping:   # restore the best weights
            self.coefs_ = self._best_coefs
            self.intercepts_ = self._best_intercepts

    def _epoch(self, X, T, order, batch_size, loss_fn, losses, interrupt):
        """One epoch of scikit-learn's batches (gen_batches over `order`, or in order) on the compiled engine;
        returns scikit-learn's accumulated_loss (sum of batch loss x batch rows, in batch order)."""
        model = self.model_
        engine = model._engine()
        opt = self._optimizer
        n = X.shape[0]
        full = n // batch_size
        guard = model._arena.guard
        guard.enter_train("fit()")
        try:
            done = 0
            if sp.issparse(X):
                step = _chunk_rows(X.shape[1], model.dtype.itemsize, batch_size) // batch_size
            while done < full:
                if sp.issparse(X):   # a chunk of whole batches densified, then run in order
                    k = min(step, full - done)
                    rows = (order[done * batch_size:(done + k) * batch_size] if order is not None
                            else slice(done * batch_size, (done + k) * batch_size))
                    xc = _dense_rows(X, rows, model.dtype)
                    tc = np.ascontiguousarray(T[rows])
                    ran = engine.train_batches(xc, tc, None, batch_size, 0, k, loss_fn, opt, losses[done:done + k],
                                               None, _CHUNK_SECONDS)
                else:
                    ran = engine.train_batches(X, T, order, batch_size, done, full - done, loss_fn, opt,
                                               losses[done:full], None, _CHUNK_SECONDS)
                done += ran
                if ran == 0 or not np.isfinite(losses[done - 1]):
                    break   # the engine stops after a non-finite loss; the weights are checked at the end of fit
                interrupt.check()   # a pending Ctrl-C, between two runs of batches
            accumulated = 0.0
            for b in range(done):
                accumulated += losses[b] * batch_size
            last = n - full * batch_size
            if done == full and last:   # the last, partial batch: one more batch, of its size
                part = losses[:1]
                if sp.issparse(X):
                    rows = order[full * batch_size:] if order is not None else slice(full * batch_size, n)
                    ran = engine.train_batches(_dense_rows(X, rows, model.dtype), np.ascontiguousarray(T[rows]),
                                               None, last, 0, 1, loss_fn, opt, part)
                elif order is not None:   # gathered in the compiled call, as the full batches are
                    ran = engine.train_batches(X, T, order[full * batch_size:], last, 0, 1, loss_fn, opt, part)
                else:
                    ran = engine.train_batches(X[full * batch_size:], T[full * batch_size:], None, last, 0, 1,
                                               loss_fn, opt, part)
                if ran:
                    accumulated += part[0] * last
        finally:
            guard.exit_train()
        return accumulated

    def _update_no_improvement_count(self, early_stopping, X, y, sample_weight):
        if early_stopping:
            val_score = self._score(X, y, sample_weight=sample_weight)
            self.validation_scores_.append(val_score)
            if self.verbose:
                print(f"Validation score: {self.validation_scores_[-1]:f}")
            last_valid_score = self.validation_scores_[-1]
            if last_valid_score < (self.best_validation_score_ + self.tol):
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last_valid_score > self.best_validation_score_:
                self.best_validation_score_ = last_valid_score
                self._best_coefs = [c.copy() for c in self.coefs_]
                self._best_intercepts = [i.copy() for i in self.intercepts_]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    # ------------------------------------------------------------------ lbfgs
    def _fit_lbfgs(self, X, y, sample_weight, layer_units):
        model = self.model_
        dtype = model.dtype
        T = self._targets(y, sample_weight, dtype)
        sw_sum = float(X.shape[0] if sample_weight is None else sample_weight.sum())
        coefs, intercepts = self.coefs_, self.intercepts_
        views = coefs + intercepts
        grads = [layer.weight for layer in self._dense()] + [layer.bias for layer in self._dense()]
        bounds = np.cumsum([0] + [v.size for v in views])
        weighted = sample_weight is not None
        if sp.issparse(X):   # chunks of rows; alpha's term added here once (the chunks' losses have alpha=0)
            rows = _chunk_rows(X.shape[1], dtype.itemsize, 1)
            chunks = [slice(a, min(a + rows, X.shape[0])) for a in range(0, X.shape[0], rows)]
            loss_fn = _losses.SklearnMLPLoss(self.out_activation_, alpha=0.0, weighted=weighted)
        else:
            chunks = None
            loss_fn = _losses.SklearnMLPLoss(self.out_activation_, alpha=float(self.alpha), weighted=weighted)
        engine = model._engine()
        guard = model._arena.guard
        grad = np.empty(bounds[-1], np.float64)

        def loss_grad(packed):
            for i, v in enumerate(views):
                v[...] = packed[bounds[i]:bounds[i + 1]].reshape(v.shape)
            guard.enter_train("fit()")
            try:
                if chunks is None:
                    loss = engine.loss_grad(X, T, loss_fn)
                    for i, p in enumerate(grads):
                        grad[bounds[i]:bounds[i + 1]] = p.grad.ravel()
                    return loss, grad.copy()   # a new array: scipy may keep the previous one
                loss = 0.0
                grad[:] = 0.0
                for rows in chunks:
                    tc = np.ascontiguousarray(T[rows])
                    share = float(tc[:, -1].sum() if weighted else tc.shape[0]) / sw_sum
                    loss += share * engine.loss_grad(_dense_rows(X, rows, dtype), tc, loss_fn)
                    for i, p in enumerate(grads):
                        grad[bounds[i]:bounds[i + 1]] += share * p.grad.ravel()
            finally:
                guard.exit_train()
            values = 0.0
            for i, c in enumerate(coefs):
                s = c.ravel()
                values += np.dot(s, s)
                grad[bounds[i]:bounds[i + 1]] += (self.alpha / sw_sum) * s
            return loss + (0.5 * self.alpha) * values / sw_sum, grad.copy()

        iprint = 1 if (self.verbose is True or self.verbose >= 1) else -1
        opt_res = scipy.optimize.minimize(
            loss_grad, _pack(coefs, intercepts), method="L-BFGS-B", jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol,
                     **({"iprint": iprint} if _SCIPY_IPRINT else {})})
        self.n_iter_ = _check_optimize_result("lbfgs", opt_res, self.max_iter)
        self.loss_ = opt_res.fun
        for i, v in enumerate(views):
            v[...] = opt_res.x[bounds[i]:bounds[i + 1]].reshape(v.shape)

    # ------------------------------------------------------------------ predict
    def _forward_pass_fast(self, X, check_input=True):
        """The output layer's activations for X (eval mode: no dropout), on the compiled inference plan."""
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        model = self.model_
        engine = model._engine()
        with _threads(self.n_threads):
            if sp.issparse(X):
                X = X.tocsr()
                rows = _chunk_rows(X.shape[1], model.dtype.itemsize, 1)
                out = np.empty((X.shape[0], model.out_features), model.dtype)
                for a in range(0, X.shape[0], rows):
                    part = slice(a, min(a + rows, X.shape[0]))
                    engine.forward(_dense_rows(X, part, model.dtype), out[part])
            else:
                out = engine.forward(np.ascontiguousarray(X, dtype=model.dtype))
        return _apply_output(self.out_activation_, out)

    def _score_with_function(self, X, y, sample_weight, score_function):
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return score_function(y, y_pred, sample_weight=sample_weight)

    def _check_solver(self):
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. {self.solver} is not "
                                 "stochastic.")
        return True

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data matrix X and target(s) y (as scikit-learn's; sample_weight: (n_samples,))."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)


_DEVIATIONS = """
    Deviations from scikit-learn 1.9 (everything else, including every message, is scikit-learn's):

    - ``coefs_`` and ``intercepts_`` are properties: views of the fastnn model's weights (``model_``, a
      ``fastnn.Sequential``), rebuilt on every access; assigning them copies values into the model.
      ``est.coefs_[0] = a`` copies ``a`` into the first layer (same shape required); the list's length is
      fixed (append, pop, ... raise TypeError).
    - float32 ``lbfgs``: scikit-learn's unpacking of SciPy's float64 vector silently turns its float32 weights
      into float64 after the first iteration; fastnn keeps the model in float32 throughout (scipy still
      works in float64 on the packed vector).
    - The model keeps the dtype of its first fit: a later ``partial_fit``/``warm_start`` fit or ``predict``
      converts X to it (scikit-learn mixes dtypes and computes in the wider one).
    - Floating-point rounding: fastnn's GEMMs and activation kernels are not NumPy's, so results agree with
      scikit-learn's to float64 rounding (about 1e-12 relative after a few epochs), not bit for bit;
      float32 fits agree to float32 rounding. The softmax output's exp is fastnn's own (under 1 ulp, SIMD,
      the same bits on every x86-64 CPU) and the L2 term's sum of squares is 16 partial sums in double
      (docs/numerics.md, section 11).
    - A non-finite batch loss stops the epoch at once (the engine does not step on NaN); scikit-learn keeps
      stepping on NaN. Both end in the same ValueError ("Solver produced non-finite parameter weights").
    - ``partial_fit`` exists only for the stochastic solvers in both classes (scikit-learn's regressor
      exposes it for 'lbfgs' too, through an ``available_if`` check that is always true).
    - Ctrl-C in ``lbfgs`` propagates KeyboardInterrupt, as in scikit-learn; in sgd/adam it ends the fit with
      scikit-learn's "Training interrupted by user." warning, the weights being those after the last completed
      batch (or chunk of batches).
    - Sparse X is densified at most ``SPARSE_CHUNK_BYTES`` (64 MiB) of rows at a time; a single batch larger
      than that raises ValueError (scikit-learn multiplies sparse matrices directly).
    - fastnn's extras, all off by default: ``dropout`` (the rate of a Dropout layer after each hidden layer,
      training only; with dropout > 0 its mask seed is one extra draw from the estimator's RandomState, after
      the weights; not with lbfgs, whose objective must be deterministic: ValueError), ``dtype`` (None: X's
      dtype, float32 stays float32, anything else float64; or 'float32', 'float64', np.float32, np.float64),
      ``n_threads`` (None: fastnn's current thread count, which follows OMP_NUM_THREADS and so joblib's
      inner-thread limits in loky workers; an int: that many threads during each call).
"""


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = """Multi-layer perceptron classifier: scikit-learn's ``MLPClassifier`` on fastnn's compiled engine.

    Same constructor, attributes, methods and numbers as ``sklearn.neural_network.MLPClassifier`` (1.9); see
    its documentation for every parameter. Extra parameters: ``dropout=0.0``, ``dtype=None``, ``n_threads=None``.
    Fitted attributes: ``classes_``, ``loss_``, ``best_loss_``, ``loss_curve_``, ``validation_scores_``,
    ``best_validation_score_``, ``t_``, ``coefs_``, ``intercepts_``, ``n_features_in_``, ``feature_names_in_``,
    ``n_iter_``, ``n_layers_``, ``n_outputs_``, ``out_activation_``, and ``model_`` (the fastnn Sequential).
    """ + _DEVIATIONS

    loss = "log_loss"   # scikit-learn's classifier has this attribute (not a parameter)

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, dropout=0.0, dtype=None,
                 n_threads=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.dtype = dtype
        self.n_threads = n_threads

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if ("classes_" not in self.__dict__) or (not self.warm_start and not incremental):
            lb = self._label_binarizer = LabelBinarizer()
            lb.fit(y)
            self.classes_ = lb.classes_
            if y.ndim == 1 and (lb.y_type_ == "multiclass" or (lb.y_type_ == "binary" and len(lb.classes_) == 2)):
                # lb.transform(y) of the y it was just fitted on, without re-checking it (0.58 of 0.6 ms here)
                onehot = y[:, None] == lb.classes_[None, :]
                return X, (onehot if lb.y_type_ == "multiclass" else onehot[:, 1:])
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes as in the previous "
                                     f"call to fit. Previously got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                                 f"'y' has {classes}.")
        y = self._label_binarizer.transform(y).astype(bool)
        return X, y

    def predict(self, X):
        """Predict using the multi-layer perceptron classifier: labels (n_samples,) or (n_samples, n_classes)."""
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight=sample_weight, score_function=accuracy_score)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y); `classes` (all labels) is required on the first call."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def predict_proba(self, X):
        """Probability of each class in ``classes_``, (n_samples, n_classes)."""
        check_is_fitted(self)
        y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = """Multi-layer perceptron regressor: scikit-learn's ``MLPRegressor`` on fastnn's compiled engine.

    Same constructor, attributes, methods and numbers as ``sklearn.neural_network.MLPRegressor`` (1.9), ``loss``
    'squared_error' or 'poisson'; see its documentation for every parameter. Extra parameters: ``dropout=0.0``,
    ``dtype=None``, ``n_threads=None``. Fitted attributes as the classifier's, without ``classes_``.
    """ + _DEVIATIONS

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, dropout=0.0, dtype=None,
                 n_threads=None):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.dtype = dtype
        self.n_threads = n_threads

    def predict(self, X):
        """Predict using the multi-layer perceptron model: (n_samples,) or (n_samples, n_outputs)."""
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if y_pred.shape[1] == 1:
            return y_pred.ravel()
        return y_pred

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight=sample_weight, score_function=r2_score)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y)."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)
