"""Pictures of training: learning curves and a loss landscape (matplotlib, the optional extra fastnn[plot]).

history(history, ...)            training and validation loss (and metrics) per epoch, with the best
                                 epoch and the early-stopping epoch marked: the overfitting picture.
loss_landscape(model, X, y, params=[(name, index), (name, index)], ...)
                                 the loss over two chosen weights around their current values, with
                                 an optimizer's path on it (record one with PathRecorder).
loss_surface(...)                the numbers behind loss_landscape (no matplotlib needed).

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

__all__ = ["history", "loss_landscape", "loss_surface", "PathRecorder"]

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


def loss_surface(model, X, y, params, a_values, b_values, loss=None):
    """The loss on (X, y) with the two weights in params set to each (a, b) on a grid: shape (len(b), len(a)).

    Every other weight stays at its current value; the model runs in eval mode (dropout off).
    The two weights and the model's train/eval mode are restored afterwards, even on error.
    loss: a fastnn loss object or name; None -> the model's compiled loss, else cross-entropy for
    integer labels and MSE otherwise.
    """
    (pa, ia, _), (pb, ib, _) = _resolve_params(model, params)
    a_values = V.as_float_array(a_values, "a_values", np.float64, ndim=1, finite=True)
    b_values = V.as_float_array(b_values, "b_values", np.float64, ndim=1, finite=True)
    loss_fn = _loss_fn(model, y, loss)
    saved_a, saved_b, training = pa.data[ia].copy(), pb.data[ib].copy(), model.training
    out = np.empty((len(b_values), len(a_values)))
    try:
        model.eval()
        for i, b in enumerate(b_values):
            pb.data[ib] = b
            for j, a in enumerate(a_values):
                pa.data[ia] = a
                out[i, j] = float(loss_fn(model(X), y))
    finally:
        pa.data[ia] = saved_a
        pb.data[ib] = saved_b
        model.train(training)
    return out


class PathRecorder(Callback):
    """Records two chosen weights as training moves them: the optimizer's path for loss_landscape.

    As a fit() callback it records at the start of training and after every batch. In a
    PyTorch-style loop call record() after each opt.step(). `path` is an (n_points, 2) array.
    """

    def __init__(self, model, params):
        super().__init__()
        self._spec = _resolve_params(model, params)
        self.params = [(p.name, idx) for p, idx, _ in self._spec]
        self.labels = [label for _, _, label in self._spec]
        self._points: list[tuple[float, float]] = []

    def record(self) -> None:
        """Append the two weights' current values."""
        (pa, ia, _), (pb, ib, _) = self._spec
        self._points.append((float(pa.data[ia]), float(pb.data[ib])))

    @property
    def path(self) -> np.ndarray:
        return np.array(self._points, dtype=np.float64).reshape(-1, 2)

    def reset(self) -> None:
        self._points.clear()

    # fit's hooks (on_train_batch_end calls on_batch_end)
    def on_train_begin(self, logs=None):
        if not self._points:
            self.record()

    def on_batch_end(self, batch, logs=None):
        self.record()


def _as_trajectory(trajectory):
    if trajectory is None:
        return None
    if isinstance(trajectory, PathRecorder):
        trajectory = trajectory.path
    t = V.as_float_array(trajectory, "trajectory", np.float64, ndim=2, finite=True)
    if t.shape[1] != 2:
        raise ValueError(f"trajectory must have shape (n_points, 2), got {t.shape}")
    return t


def loss_landscape(model, X, y, params, loss=None, trajectory=None, path=None, span=None, resolution=41,
                   title=None, figsize=(6.4, 5.2), dpi=100):
    """Draw the loss over two chosen weights around their current values, with an optimizer's path; return the Figure.

    params: two (name, index) pairs naming scalar weights, names from model.named_parameters(),
    e.g. [("0.weight", (3, 5)), ("2.weight", (7, 1))]. trajectory: the path to draw, an
    (n_points, 2) array or a PathRecorder. span: half-width of the window around the current
    values (a number or one per axis); None -> a window holding the whole trajectory with a
    margin, or +-1 without one. resolution: grid points per axis. The other weights stay at
    their current values (a 2-D slice of the landscape); the model's weights and train/eval
    mode are unchanged afterwards. loss: as in loss_surface. path: save a PNG there.
    """
    spec = _resolve_params(model, params)
    resolution = V.check_int(resolution, "resolution", low=3, high=1001)
    traj = _as_trajectory(trajectory)
    center = np.array([spec[0][0].data[spec[0][1]], spec[1][0].data[spec[1][1]]], dtype=np.float64)
    if span is not None:
        spans = [span, span] if isinstance(span, numbers.Real) else list(span)
        if len(spans) != 2:
            raise ValueError(f"span must be a number or a pair of numbers, got {span!r}")
        half = np.array([V.check_float(s, "span", low=0.0, low_open=True) for s in spans])
        lo, hi = center - half, center + half
    elif traj is not None and len(traj):
        pts = np.vstack([traj, center])
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        margin = np.maximum(0.2 * (hi - lo), 0.05 * np.maximum(np.abs(center), 0.1))
        lo, hi = lo - margin, hi + margin
    else:
        lo, hi = center - 1.0, center + 1.0
    a_values = np.linspace(lo[0], hi[0], resolution)
    b_values = np.linspace(lo[1], hi[1], resolution)
    surface = loss_surface(model, X, y, params, a_values, b_values, loss=loss)

    fig = _figure(path, figsize)
    ax = fig.add_subplot(1, 1, 1)
    finite = surface[np.isfinite(surface)]
    kwargs = {}
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 20:   # wide range: log-spaced levels
        from matplotlib.colors import LogNorm

        kwargs = {"levels": np.geomspace(finite.min(), finite.max(), 25), "norm": LogNorm()}
    else:
        kwargs = {"levels": 25}
    filled = ax.contourf(a_values, b_values, surface, cmap="viridis", **kwargs)
    ax.contour(a_values, b_values, surface, colors="k", linewidths=0.4, alpha=0.5, **kwargs)
    fig.colorbar(filled, ax=ax, label="loss")
    if traj is not None and len(traj):
        ax.plot(traj[:, 0], traj[:, 1], "-", color="white", linewidth=1.2, marker=".", markersize=3,
                gid="trajectory", label="optimizer path")
        ax.plot(*traj[0], "o", color="white", markeredgecolor="k", markersize=7, gid="start", label="start")
        ax.plot(*traj[-1], "*", color="orange", markeredgecolor="k", markersize=12, gid="end", label="end")
    ax.plot(*center, "x", color="red", markersize=9, mew=2, gid="current", label="current weights")
    ax.set_xlabel(spec[0][2])
    ax.set_ylabel(spec[1][2])
    ax.set_xlim(a_values[0], a_values[-1])
    ax.set_ylim(b_values[0], b_values[-1])
    ax.set_title(title or "loss over two weights (all others at their current values)", fontsize="medium")
    ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    _save(fig, path, dpi)
    return fig
