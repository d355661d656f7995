"""Pictures of training: learning curves and a loss landscape (matplotlib, the optional extra fastnn[plot]).

history(history, ...)            training and validation loss (and metrics) per epoch, with the best
                                 epoch and the early-stopping epoch marked: the overfitting picture.
loss_landscape(model, X, y, params=[(name, index), (name, index)], ...)
                                 the loss over two chosen weights around their current values, with
                                 an optimizer's path on it (record one with PathRecorder).
loss_landscape(model, X, y, directions="filter_normalized", seed=0, ...)
                                 the standard view (Li et al. 2018): the loss along two random
                                 filter-normalised directions around the trained weights, with the
                                 path projected onto them (docs/loss-landscape.md).
loss_surface(...), direction_surface(...), filter_normalized_directions(...)
                                 the numbers behind loss_landscape (no matplotlib needed).

matplotlib is imported lazily inside the drawing functions. With path= the figure is drawn on a
standalone Agg canvas (works headless, not registered with pyplot) and saved as a PNG; without
path it is a pyplot figure, for plt.show() or a notebook. Both return the matplotlib Figure.
Epochs are shown 1-based (Keras's progress bar numbering): the epoch with index e is drawn at e + 1.
"""

from __future__ import annotations

import numbers
import os

import numpy as np

from . import _validation as V

__all__ = ["history", "loss_landscape", "loss_surface", "direction_surface", "filter_normalized_directions",
           "PathRecorder"]

from .callbacks import Callback
from .losses import LOSSES, CrossEntropyLoss, MSELoss

_INSTALL_HINT = "fastnn.plot needs matplotlib, an optional extra: pip install fastnn[plot] (or pip install matplotlib)"


def _figure(path, figsize):
    """A Figure: a standalone one on an Agg canvas when saving to path, else a pyplot one."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    if path is not None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize)
        FigureCanvasAgg(fig)
        return fig
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize)


def _save(fig, path, dpi):
    if path is not None:
        fig.savefig(os.fspath(path), dpi=dpi, format="png", bbox_inches="tight")


# ----------------------------------------------------------------------------- history
def _history_dict(history):
    """(dict of name -> list of floats, list of epoch indices) from a History or a plain dict."""
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict):
        raise TypeError(f"history must be a History (from model.fit) or a dict of lists, got {type(history).__name__}")
    if "loss" not in logs or len(logs["loss"]) == 0:
        raise ValueError(f"history has no 'loss' values to plot; keys are {sorted(logs)}")
    n = len(logs["loss"])
    epochs = list(getattr(history, "epoch", None) or range(n))
    if len(epochs) != n:
        epochs = list(range(n))
    return {k: [float(v) for v in vals] for k, vals in logs.items()}, epochs


def _mode_for(monitor: str, mode: str | None) -> str:
    """'min' or 'max': an explicit mode wins; else accuracy-like names are maximised, the rest minimised."""
    if mode in ("min", "max"):
        return mode
    name = monitor[4:] if monitor.startswith("val_") else monitor
    return "max" if name.endswith(("acc", "accuracy", "auc")) else "min"


def _best(logs, epochs, early_stopping):
    """(monitor name, best epoch index or None) - the callback's choice when one is given."""
    if early_stopping is not None:
        monitor = getattr(early_stopping, "monitor", "val_loss")
        best_epoch = getattr(early_stopping, "best_epoch", None)
        if monitor in logs and best_epoch is not None and best_epoch in epochs \
                and getattr(early_stopping, "best", None) is not None:
            return monitor, int(best_epoch)
        mode = _mode_for(monitor, getattr(early_stopping, "_direction", None) or getattr(early_stopping, "mode", None))
    else:
        monitor = "val_loss" if logs.get("val_loss") else "loss"
        mode = "min"
    values = np.asarray(logs.get(monitor, []), dtype=np.float64)
    if values.size == 0 or not np.isfinite(values).any():
        return monitor, None
    filled = np.where(np.isfinite(values), values, np.inf if mode == "min" else -np.inf)
    i = int(np.argmin(filled) if mode == "min" else np.argmax(filled))   # the first best, as a strict rule keeps
    return monitor, epochs[i]


def history(history, path=None, metrics=None, early_stopping=None, title=None, logy=False,
            figsize=None, dpi=100, axes=None):
    """Draw training and validation loss per epoch, plus one panel per metric; return the Figure.

    history: the History that model.fit returns (or its .history dict). metrics: names of
    metrics to draw beside the loss (None: every metric in the history; [] for the loss only).
    early_stopping: the EarlyStopping callback used in fit; its monitor, mode and best_epoch
    choose the best epoch and its stopped_epoch (if it stopped) is marked. Without it the best
    epoch is the one with the lowest val_loss (or loss). Both marks are vertical lines on every
    panel (gid "best_epoch" and "early_stopping"), and the best value gets a dot. path: save a PNG
    there. logy: a log-scale loss axis. axes: draw into these matplotlib Axes (one per panel: the
    loss, then each metric) of an existing figure instead of a new one, e.g. to compare two runs
    side by side; the title then prefixes the panel titles.
    """
    logs, epochs = _history_dict(history)
    if metrics is None:
        metrics = [k for k in logs if k != "loss" and not k.startswith("val_") and k not in ("lr", "learning_rate")]
    else:
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        for m in metrics:
            if m not in logs and f"val_{m}" not in logs:
                raise ValueError(f"metrics: {m!r} is not in the history; keys are {sorted(logs)}")
    monitor, best_epoch = _best(logs, epochs, early_stopping)
    stopped = getattr(early_stopping, "stopped_epoch", 0) if early_stopping is not None else 0
    panels = ["loss"] + [m for m in metrics if m != "loss"]
    if axes is None:
        fig = _figure(path, figsize or (5.2 * len(panels), 3.8))
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        own = True
    else:
        axes = list(np.atleast_1d(np.asarray(axes, dtype=object)).ravel())
        if len(axes) != len(panels) or not all(hasattr(ax, "plot") and hasattr(ax, "figure") for ax in axes):
            raise ValueError(f"axes must be {len(panels)} matplotlib Axes, one per panel {panels}; got {len(axes)}")
        fig, own = axes[0].figure, False
    from matplotlib.ticker import MaxNLocator

    x = np.asarray(epochs) + 1
    for ax, name in zip(axes, panels):
        for key, style in ((name, {"color": "C0", "label": "training"}),
                           (f"val_{name}", {"color": "C1", "label": "validation"})):
            vals = logs.get(key)
            if vals:
                ax.plot(x[:len(vals)], vals, marker="o" if len(vals) <= 30 else None, markersize=3, gid=key,
                        **style)
        if best_epoch is not None:
            ax.axvline(best_epoch + 1, color="C2", linestyle="--", linewidth=1.2, gid="best_epoch",
                       label=f"best epoch {best_epoch + 1} ({monitor})")
            if monitor in (name, f"val_{name}"):
                value = logs[monitor][epochs.index(best_epoch)]
                ax.plot([best_epoch + 1], [value], "o", color="C2", markersize=7, gid="best_value")
        if stopped:
            ax.axvline(stopped + 1, color="C3", linestyle=":", linewidth=1.5, gid="early_stopping",
                       label=f"early stop after epoch {stopped + 1}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(f"{title}: {name}" if title and not own else name)
        if name == "loss" and logy:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    if title and own:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path, dpi)
    return fig


# ----------------------------------------------------------------------------- loss landscape
# Two views of the landscape around the current weights theta:
#   the two-weight slice: L(theta with weights a and b set to (x, y)), every other weight fixed;
#   the filter-normalised view (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets"):
#   L(theta + x d1 + y d2) for two random directions d1, d2 whose every filter is rescaled to the
#   norm of the same filter of theta (docs/loss-landscape.md).
_VIEWS = ("filter_normalized",)
_BIASES = ("zero", "keep")


def _resolve_params(model, params):
    """[(Parameter, index tuple, label), x2] from [(name, index), (name, index)]."""
    named = dict(model.named_parameters())
    if isinstance(params, (str, bytes)) or not hasattr(params, "__len__") or len(params) != 2:
        raise ValueError(
            "params must be two (name, index) pairs, e.g. [('0.weight', (0, 1)), ('2.weight', (3, 0))], "
            f"got {params!r}"
        )
    out = []
    for k, spec in enumerate(params):
        try:
            name, index = spec
        except (TypeError, ValueError):
            raise ValueError(f"params[{k}] must be a (name, index) pair, got {spec!r}") from None
        if name not in named:
            raise ValueError(f"params[{k}]: no parameter named {name!r}; the model has {list(named)}")
        p = named[name]
        if isinstance(index, numbers.Integral):
            index = (index,)
        idx = tuple(index) if isinstance(index, (tuple, list)) else ()
        ok = len(idx) == len(p.shape) and all(
            isinstance(i, numbers.Integral) and not isinstance(i, bool) and 0 <= i < s for i, s in zip(idx, p.shape))
        if not ok:
            raise ValueError(f"params[{k}]: index {index!r} must pick one entry of {name!r}, which has shape {p.shape}")
        idx = tuple(int(i) for i in idx)
        out.append((p, idx, f"{name}[{', '.join(map(str, idx))}]"))
    if out[0][0] is out[1][0] and out[0][1] == out[1][1]:
        raise ValueError(f"params must name two different weights, got {out[0][2]} twice")
    return out


def _loss_fn(model, y, loss):
    """A loss object: the given one, one by name, the model's compiled one, or one that fits y."""
    if loss is None:
        loss = getattr(model, "loss", None)
        if not (callable(loss) or isinstance(loss, str)):
            loss = None
    if isinstance(loss, str):
        return LOSSES[V.check_choice(loss, "loss", tuple(LOSSES))]()
    if loss is None:   # class indices -> cross-entropy, anything else -> MSE
        y = np.asarray(y)
        return CrossEntropyLoss() if y.ndim == 1 and y.dtype.kind in "iu" else MSELoss()
    if not callable(loss):
        raise TypeError(f"loss must be a fastnn loss object, a loss name or None, got {loss!r}")
    return loss


def _arena(model):
    arena = getattr(model, "_arena", None)
    if arena is None:
        raise TypeError(f"model must be a fastnn Sequential, got {type(model).__name__}")
    return arena


class _Directions:
    """Two random directions over a model's flat parameter arena, filter-normalised against a centre.

    The raw directions are standard normal draws (float64, from `seed`), one number per parameter.
    Filter normalisation (Li et al. 2018, section 4): a Dense weight W has shape (in, out) in fastnn
    (z = x @ W + b), so the filter of output unit j is the column W[:, j] (the row weight[j, :] of
    torch's (out, in) layout); each direction's column j is rescaled to the norm of W[:, j]. Biases:
    "zero" (the paper's default) sets the directions' biases to 0; "keep" sets them to the biases of
    the centre themselves (the paper's code when biases are not ignored).
    """

    def __init__(self, model, seed, biases):
        arena = _arena(model)
        self.seed = V.check_int(seed, "seed", low=0, high=(1 << 64) - 1)
        self.biases = V.check_choice(biases, "biases", _BIASES)
        self.layout = [(p.name, p.offset, tuple(p.shape)) for p in arena.params]
        self.size = arena.size
        self.raw = np.random.default_rng(self.seed).standard_normal((2, self.size))
        self._weights = [(off, shape) for _, off, shape in self.layout if len(shape) == 2]
        self._bias = [(off, shape) for _, off, shape in self.layout if len(shape) != 2]
        self.units = sum(shape[1] for _, shape in self._weights)
        self.n_bias = sum(int(np.prod(shape)) for _, shape in self._bias)

    def check_model(self, model, who: str) -> None:
        layout = [(p.name, p.offset, tuple(p.shape)) for p in _arena(model).params]
        if layout != self.layout:
            raise ValueError(f"{who}: the model's parameters {[(n, s) for n, _, s in layout]} are not the ones the "
                             f"directions were drawn for {[(n, s) for n, _, s in self.layout]}")

    def _raw_view(self, off, shape):
        return self.raw[:, off:off + shape[0] * shape[1]].reshape(2, *shape)

    def normalized(self, center: np.ndarray):
        """(directions (2, size) float64, scales (2, units)): the raw directions filter-normalised to `center`."""
        center = np.asarray(center, dtype=np.float64)
        d = self.raw.copy()
        scales = []
        for off, shape in self._weights:
            n = shape[0] * shape[1]
            dw = d[:, off:off + n].reshape(2, *shape)
            w_norm = np.linalg.norm(center[off:off + n].reshape(shape), axis=0)     # (out,): each filter's norm
            d_norm = np.linalg.norm(dw, axis=1)                                      # (2, out)
            scale = np.divide(w_norm, d_norm, out=np.zeros_like(d_norm), where=d_norm > 0)
            dw *= scale[:, None, :]
            scales.append(scale)
        for off, shape in self._bias:
            n = int(np.prod(shape))
            d[:, off:off + n] = 0.0 if self.biases == "zero" else center[off:off + n]
        return d, (np.concatenate(scales, axis=1) if scales else np.zeros((2, 0)))

    def summary(self, theta: np.ndarray) -> np.ndarray:
        """What a PathRecorder keeps per point: each filter's dot product with each raw direction, (2 * units,),
        then the biases ("keep" only). Enough to project theta onto the normalised directions later."""
        out = np.empty(2 * self.units + (self.n_bias if self.biases == "keep" else 0))
        if self._weights:
            out[:2 * self.units] = np.concatenate(   # (2, units), row k for direction k
                [np.einsum("io,kio->ko", theta[off:off + shape[0] * shape[1]].reshape(shape),
                           self._raw_view(off, shape)) for off, shape in self._weights], axis=1).ravel()
        if self.biases == "keep" and self._bias:
            out[2 * self.units:] = np.concatenate([theta[off:off + int(np.prod(s))] for off, s in self._bias])
        return out

    def project(self, summaries: np.ndarray, center: np.ndarray) -> np.ndarray:
        """(n, 2): the coordinates (x, y) of the recorded points in the plane theta + x d1 + y d2 (least squares)."""
        d, scales = self.normalized(center)
        n = len(summaries)
        if n == 0:
            return np.zeros((0, 2))
        q = summaries[:, :2 * self.units].reshape(n, 2, self.units)
        dots = np.einsum("nku,ku->nk", q, scales)                  # <theta_t, d_k> over the weights
        if self.biases == "keep" and self._bias:
            center_bias = np.concatenate([np.asarray(center[off:off + int(np.prod(s))], dtype=np.float64)
                                          for off, s in self._bias])
            dots += (summaries[:, 2 * self.units:] @ center_bias)[:, None]   # both directions' biases are the centre's
        dots -= d @ np.asarray(center, dtype=np.float64)
        return np.linalg.solve(d @ d.T, dots.T).T


def filter_normalized_directions(model, seed=0, biases="zero") -> np.ndarray:
    """Two random filter-normalised directions around the model's current weights: a (2, n_parameters) array.

    Row k is a direction over the flat parameter arena (the order of model.parameters(), each
    flattened). Li et al. 2018: standard normal draws from `seed`, every filter (column W[:, j] of
    a Dense weight W of shape (in, out)) rescaled to the norm of the same column of the weights;
    biases "zero" (the paper's default) or "keep" (the biases themselves). docs/loss-landscape.md.
    """
    dirs = _Directions(model, seed, biases)
    return dirs.normalized(_arena(model).data)[0]


def _evaluate_grid(model, X, y, loss, a_values, b_values, set_point, restore):
    """The loss for every (a, b): set_point(a, b) writes the weights, one compiled forward over all of X each.

    Eval mode (dropout off, no dropout steps used); restore() and the model's mode are put back
    afterwards, even on error.
    """
    loss_fn = _loss_fn(model, y, loss)
    a_values = V.as_float_array(a_values, "a_values", np.float64, ndim=1, finite=True)
    b_values = V.as_float_array(b_values, "b_values", np.float64, ndim=1, finite=True)
    X = V.as_float_array(X, "X", model.dtype, ndim=2)   # converted once, not per grid point
    out = np.empty((len(b_values), len(a_values)))
    training = model.training
    try:
        model.eval()
        for i, b in enumerate(b_values):
            for j, a in enumerate(a_values):
                set_point(a, b)
                out[i, j] = float(loss_fn(model(X), y))
    finally:
        restore()
        model.train(training)
    return out


def loss_surface(model, X, y, params, a_values, b_values, loss=None):
    """The loss on (X, y) with the two weights in params set to each (a, b) on a grid: shape (len(b), len(a)).

    Every other weight stays at its current value; the model runs in eval mode (dropout off).
    The two weights and the model's train/eval mode are restored afterwards, even on error.
    loss: a fastnn loss object or name; None -> the model's compiled loss, else cross-entropy for
    integer labels and MSE otherwise.
    """
    (pa, ia, _), (pb, ib, _) = _resolve_params(model, params)
    saved_a, saved_b = pa.data[ia].copy(), pb.data[ib].copy()

    def set_point(a, b):
        pa.data[ia] = a
        pb.data[ib] = b

    def restore():
        pa.data[ia] = saved_a
        pb.data[ib] = saved_b

    return _evaluate_grid(model, X, y, loss, a_values, b_values, set_point, restore)


def direction_surface(model, X, y, a_values, b_values, loss=None, seed=0, biases="zero", directions=None):
    """The loss on (X, y) at theta + a d1 + b d2 for each (a, b) on a grid: shape (len(b), len(a)).

    theta: the model's current weights (the centre, a = b = 0). d1, d2: `directions`, a
    (2, n_parameters) array, or by default filter_normalized_directions(model, seed, biases).
    Every grid point is one compiled forward pass over all of X in eval mode; the weights are
    restored bit for bit afterwards (and the train/eval mode), even on error. loss: as in loss_surface.
    """
    data = _arena(model).data
    saved = data.copy()
    if directions is None:
        directions = filter_normalized_directions(model, seed, biases)
    directions = V.as_float_array(directions, "directions", np.float64, shape=(2, data.size), finite=True)
    center = saved.astype(np.float64)
    point, step = np.empty_like(center), np.empty_like(center)

    def set_point(a, b):
        np.multiply(directions[0], a, out=point)
        np.multiply(directions[1], b, out=step)
        np.add(point, step, out=point)
        np.add(point, center, out=point)
        np.copyto(data, point, casting="same_kind")   # a = b = 0 writes theta back exactly

    return _evaluate_grid(model, X, y, loss, a_values, b_values, set_point, lambda: np.copyto(data, saved))


class PathRecorder(Callback):
    """Records where training moves the weights: the optimizer's path for loss_landscape.

    PathRecorder(model, params) records two chosen weights (the two-weight view), params as in
    loss_landscape; they are kept in ``weights`` (the (name, index) pairs) and ``labels``.
    PathRecorder(model, directions="filter_normalized", seed=0, biases="zero") records for the
    random-direction view: per point, each filter's dot product with each of the two raw random
    directions (2 numbers per output unit, plus the biases with biases="keep"), not the whole
    parameter vector; ``path`` projects them onto the directions once they are filter-normalised
    around the model's current (trained) weights. Give the recorder to loss_landscape as its
    trajectory and the view, seed and biases follow from it.

    As a fit() callback it records at the start of training and after every batch. In a
    PyTorch-style loop call record() after each opt.step(). ``path`` is an (n_points, 2) array.
    (``params`` is Keras's Callback attribute, which fit sets to its own dict.)
    """

    def __init__(self, model, params=None, *, directions=None, seed=0, biases="zero"):
        super().__init__()
        self._arena = _arena(model)
        self._points: list = []
        if (params is None) == (directions is None):
            raise ValueError("PathRecorder needs params=[(name, index), (name, index)] (the two-weight view) "
                             "or directions='filter_normalized' (the random-direction view), exactly one of them; "
                             f"got params={params!r}, directions={directions!r}")
        if directions is not None:
            self.directions = V.check_choice(directions, "directions", _VIEWS)
            self._dirs = _Directions(model, seed, biases)
            self._spec = None
            self.weights = None
            self.seed, self.biases = self._dirs.seed, self._dirs.biases
            self.labels = ["direction 1", "direction 2"]
        else:
            self.directions = None
            self._dirs = None
            self._spec = _resolve_params(model, params)
            self.weights = [(p.name, idx) for p, idx, _ in self._spec]
            self.seed = self.biases = None
            self.labels = [label for _, _, label in self._spec]

    def record(self) -> None:
        """Append the current point: the two weights' values, or the summary for the random-direction view."""
        if self._spec is None:
            self._points.append(self._dirs.summary(self._arena.data))
            return
        (pa, ia, _), (pb, ib, _) = self._spec
        self._points.append((float(pa.data[ia]), float(pb.data[ib])))

    def project(self, center=None) -> np.ndarray:
        """The recorded path as (n_points, 2) coordinates; the random-direction view projects it onto the
        directions filter-normalised around `center` (a flat parameter vector; None: the current weights)."""
        if self._spec is not None:
            return np.array(self._points, dtype=np.float64).reshape(-1, 2)
        center = self._arena.data if center is None else V.as_float_array(
            center, "center", np.float64, shape=(self._dirs.size,), finite=True)
        summaries = np.array(self._points, dtype=np.float64).reshape(len(self._points), -1)
        return self._dirs.project(summaries, center)

    @property
    def path(self) -> np.ndarray:
        """(n_points, 2): the two weights' values, or the projection around the current weights."""
        return self.project()

    def reset(self) -> None:
        self._points.clear()

    # fit's hooks (on_train_batch_end calls on_batch_end)
    def on_train_begin(self, logs=None):
        if self.model is not None and getattr(self.model, "_arena", None) is not self._arena:
            raise ValueError("PathRecorder: fit trains a different model from the one the recorder was made for")
        if not self._points:
            self.record()

    def on_batch_end(self, batch, logs=None):
        self.record()


def _as_trajectory(trajectory, center=None):
    if trajectory is None:
        return None
    if isinstance(trajectory, PathRecorder):
        trajectory = trajectory.project(center) if trajectory.directions else trajectory.path
    t = V.as_float_array(trajectory, "trajectory", np.float64, ndim=2, finite=True)
    if t.shape[1] != 2:
        raise ValueError(f"trajectory must have shape (n_points, 2), got {t.shape}")
    return t


def _view(model, params, directions, trajectory, seed, biases):
    """("weights", params) or ("directions", _Directions): the view asked for, checked against a recorder."""
    rec = trajectory if isinstance(trajectory, PathRecorder) else None
    if params is not None and directions is not None:
        raise ValueError("give params=[(name, index), (name, index)] for the two-weight view or "
                         f"directions='filter_normalized' for the random-direction view, not both; got {params!r} "
                         f"and {directions!r}")
    if params is None and directions is None:
        if rec is None:
            raise ValueError("params: give two (name, index) pairs, e.g. [('0.weight', (0, 1)), ('2.bias', 1)], "
                             "or directions='filter_normalized' (or a PathRecorder as trajectory)")
        params, directions = rec.weights, rec.directions
    if directions is None:
        if rec is not None and rec.directions:
            raise ValueError("trajectory: this PathRecorder recorded the random-direction view; draw it with "
                             "directions='filter_normalized' (or record with PathRecorder(model, params))")
        if rec is not None and [label for _, _, label in _resolve_params(model, params)] != rec.labels:
            raise ValueError(f"params name {[label for _, _, label in _resolve_params(model, params)]} but the "
                             f"PathRecorder recorded {rec.labels}; leave params out to use the recorder's")
        return "weights", params
    V.check_choice(directions, "directions", _VIEWS)
    if rec is None:
        return "directions", _Directions(model, 0 if seed is None else seed, biases or "zero")
    if not rec.directions:
        raise ValueError("trajectory: this PathRecorder recorded two weights, not the random directions; record "
                         "with PathRecorder(model, directions='filter_normalized') or draw it with params=")
    for name, mine, theirs in (("seed", seed, rec.seed), ("biases", biases, rec.biases)):
        if mine is not None and mine != theirs:
            raise ValueError(f"{name}={mine!r} differs from the PathRecorder's {name}={theirs!r}; leave it out to "
                             "use the recorder's")
    rec._dirs.check_model(model, "model")
    return "directions", rec._dirs


def _nice_ticks(lo: float, hi: float, log: bool, max_ticks: int = 7) -> np.ndarray:
    """3 to max_ticks round loss values in [lo, hi] for the colour bar (1-2-5 steps on a log scale)."""
    from matplotlib.ticker import MaxNLocator

    if log:
        decades = np.arange(np.floor(np.log10(lo)), np.ceil(np.log10(hi)) + 1)
        for subs in ((1, 1.5, 2, 3, 5, 7), (1, 2, 5), (1, 3), (1,)):
            ticks = np.array([m * 10.0 ** e for e in decades for m in subs])
            ticks = ticks[(ticks >= lo * (1 - 1e-9)) & (ticks <= hi * (1 + 1e-9))]
            if len(ticks) <= max_ticks:
                break
        else:   # many decades: every k-th power of ten
            k = int(np.ceil(len(ticks) / max_ticks))
            ticks = ticks[::k]
        if len(ticks) >= 3:
            return ticks
    ticks = MaxNLocator(nbins=max_ticks - 1, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    return ticks[(ticks >= lo - 1e-12 * abs(hi)) & (ticks <= hi + 1e-12 * abs(hi))]


def _tick_labels(ticks) -> list[str]:
    """The shortest %g labels (at least 3 significant digits) that read as the tick values themselves."""
    for digits in range(3, 17):
        labels = [f"{t:.{digits}g}" for t in ticks]
        if all(abs(float(label) - t) <= 1e-9 * abs(t) for label, t in zip(labels, ticks)):
            return labels
    return labels


def _draw_surface(fig, ax, a_values, b_values, surface, loss_name):
    """Filled contours (log-spaced when the losses span more than a factor 20) and a colour bar in loss units."""
    finite = surface[np.isfinite(surface)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    log = lo > 0 and hi / lo > 20
    if log:
        from matplotlib.colors import LogNorm

        kwargs = {"levels": np.geomspace(lo, hi, 25), "norm": LogNorm(lo, hi)}
    else:
        kwargs = {"levels": np.linspace(lo, hi if hi > lo else lo + 1.0, 25)}
    filled = ax.contourf(a_values, b_values, surface, cmap="viridis", **kwargs)
    ax.contour(a_values, b_values, surface, colors="k", linewidths=0.4, alpha=0.5, **kwargs)
    ticks = _nice_ticks(lo, hi if hi > lo else lo + 1.0, log)
    cbar = fig.colorbar(filled, ax=ax)
    cbar.set_ticks(ticks, labels=_tick_labels(ticks))
    cbar.minorticks_off()
    cbar.set_label(f"{loss_name}, {'log scale' if log else 'linear scale'}")
    cbar.ax.set_gid("colorbar")
    return cbar


def loss_landscape(model, X, y, params=None, loss=None, trajectory=None, path=None, span=None, resolution=41,
                   title=None, figsize=(6.4, 5.2), dpi=100, *, directions=None, seed=None, biases=None, ax=None):
    """Draw the loss around the model's current weights, with an optimizer's path; return the Figure.

    Two views (docs/loss-landscape.md):
    - params=[(name, index), (name, index)]: the two-weight slice. Two scalar weights (names from
      model.named_parameters(), e.g. [("0.weight", (3, 5)), ("2.weight", (7, 1))]) vary over a
      window around their current values; every other weight stays where it is.
    - directions="filter_normalized": the standard view of Li et al. 2018. The loss at
      theta + x d1 + y d2 for two random directions (drawn from `seed`, default 0) with every filter
      rescaled to the norm of the same filter of the current weights theta; biases "zero" (default)
      or "keep" (see filter_normalized_directions). The axes are x and y; (0, 0) is theta.
    trajectory: the path to draw, an (n_points, 2) array in the view's coordinates or a
    PathRecorder (which also supplies the view, seed and biases when they are not given).
    span: half-width of the window (a number or one per axis); None -> a window holding the whole
    trajectory with a margin, else +-1 (random directions: +-1, Li et al.'s window, widened to hold the
    trajectory). The random-direction window is symmetric about theta, so an
    odd resolution (grid points per axis) puts theta on the grid. Every grid point is one compiled
    forward pass over all of X in eval mode; the weights (bit for bit) and the train/eval mode are
    unchanged afterwards. loss: as in loss_surface. path: save a PNG there. ax: draw into this
    matplotlib Axes (e.g. the two views side by side) instead of a new figure.
    The colour bar is labelled in loss units, on a log scale when the losses span more than a factor 20.
    """
    kind, spec = _view(model, params, directions, trajectory, seed, biases)
    resolution = V.check_int(resolution, "resolution", low=3, high=1001)
    loss_fn = _loss_fn(model, y, loss)
    if kind == "weights":
        resolved = _resolve_params(model, spec)
        center = np.array([resolved[0][0].data[resolved[0][1]], resolved[1][0].data[resolved[1][1]]],
                          dtype=np.float64)
        labels = [label for _, _, label in resolved]
        traj = _as_trajectory(trajectory)
    else:
        center = np.zeros(2)
        labels = ["direction 1 (filter-normalised)", "direction 2 (filter-normalised)"]
        traj = _as_trajectory(trajectory)
    if span is not None:
        spans = [span, span] if isinstance(span, numbers.Real) else list(span)
        if len(spans) != 2:
            raise ValueError(f"span must be a number or a pair of numbers, got {span!r}")
        half = np.array([V.check_float(s, "span", low=0.0, low_open=True) for s in spans])
        lo, hi = center - half, center + half
    elif kind == "directions":   # Li et al.'s window, widened if the path leaves it
        half = np.maximum(1.0, 1.2 * np.abs(traj).max(axis=0)) if traj is not None and len(traj) else np.ones(2)
        lo, hi = -half, half
    elif traj is not None and len(traj):
        pts = np.vstack([traj, center])
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        margin = np.maximum(0.2 * (hi - lo), 0.05 * np.maximum(np.abs(center), 0.1))
        lo, hi = lo - margin, hi + margin
    else:
        lo, hi = center - 1.0, center + 1.0
    if kind == "weights":
        a_values = np.linspace(lo[0], hi[0], resolution)
        b_values = np.linspace(lo[1], hi[1], resolution)
        surface = loss_surface(model, X, y, spec, a_values, b_values, loss=loss_fn)
    else:   # symmetric about theta, with 0 exactly on the grid for an odd resolution
        half = np.maximum(np.abs(lo), np.abs(hi))
        steps = (np.arange(resolution) - (resolution - 1) / 2) / ((resolution - 1) / 2)
        a_values, b_values = half[0] * steps, half[1] * steps
        d = spec.normalized(_arena(model).data)[0]
        surface = direction_surface(model, X, y, a_values, b_values, loss=loss_fn, directions=d)

    if ax is None:
        fig = _figure(path, figsize)
        ax = fig.add_subplot(1, 1, 1)
    else:
        if not (hasattr(ax, "contourf") and hasattr(ax, "figure")):
            raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
        fig = ax.figure
    _draw_surface(fig, ax, a_values, b_values, surface, f"loss: {type(loss_fn).__name__}")
    if traj is not None and len(traj):
        ax.plot(traj[:, 0], traj[:, 1], "-", color="white", linewidth=1.2, marker=".", markersize=3,
                gid="trajectory", label="optimizer path")
        ax.plot(*traj[0], "o", color="white", markeredgecolor="k", markersize=7, gid="start", label="start")
        ax.plot(*traj[-1], "*", color="orange", markeredgecolor="k", markersize=12, gid="end", label="end")
    ax.plot(*center, "x", color="red", markersize=9, mew=2, gid="current", label="current weights")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_xlim(a_values[0], a_values[-1])
    ax.set_ylim(b_values[0], b_values[-1])
    default = ("loss over two weights (all others at their current values)" if kind == "weights" else
               f"loss along two random filter-normalised directions (seed {spec.seed}, biases {spec.biases})")
    ax.set_title(title or default, fontsize="medium")
    ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    _save(fig, path, dpi)
    return fig
