"""NumPy twins of fastnn._kernels._losses (same signatures; the test oracle and benchmark baseline).

Each function returns the reduced loss ("none": the sum of ``loss_out``), writes d loss / d input
into ``grad_out`` and, for reduction="none", the per-element (CE/NLL: per-row) loss into
``loss_out``; ``grad_up`` (the loss's shape, None = ones) multiplies the "none" gradient.
Element-wise losses take flat 1-D arrays with ``weight``/``pos_weight`` already broadcast to
the input's size; CE/NLL take (N, C) inputs and int64 labels. Math is in float64 throughout.
"""

from __future__ import annotations

import numpy as np

_REDUCTIONS = ("mean", "sum", "none")


def _finish(loss, grad, grad_out, reduction, denominator, loss_out, grad_up, keep=None, ignored=0.0):
    """Store the scaled gradient (and the 'none' loss); return the reduced loss.

    mean scales by 1/denominator (inf when it is 0: the loss is then NaN, as in torch);
    rows with keep == False (ignored labels) get the unscaled gradient `ignored` (zero by default).
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none'; got {reduction!r}")
    if reduction == "none":
        if loss_out is None:
            raise ValueError("reduction='none' needs a loss_out buffer")
        loss_out[...] = loss
        if grad_up is not None:  # per element, or per row of a 2-D gradient
            grad = grad * _f64(grad_up).reshape(loss.shape + (1,) * (grad.ndim - loss.ndim))
            if keep is not None:  # an ignored row does not see its upstream gradient (torch's nll backward)
                grad[~keep] = ignored
        grad_out[...] = grad
        return float(loss.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.float64(1.0) / denominator if reduction == "mean" else 1.0
        grad = grad * scale
        if keep is not None:
            grad[~keep] = ignored
        grad_out[...] = grad
        return float(loss.sum() * scale)


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def mse_loss(x, y, grad_out, reduction="mean", loss_out=None, grad_up=None):
    """l = (x - y)^2; grad = 2 (x - y), over numel for mean."""
    d = _f64(x) - _f64(y)
    return _finish(d * d, 2.0 * d, grad_out, reduction, d.size, loss_out, grad_up)


def bce_loss(x, y, grad_out, weight=None, reduction="mean", loss_out=None, grad_up=None):
    """l = -w [y max(log x, -100) + (1-y) max(log(1-x), -100)]; grad = w (x-y) / max(x(1-x), 1e-12)."""
    x, y = _f64(x), _f64(y)
    w = 1.0 if weight is None else _f64(weight)
    with np.errstate(divide="ignore"):
        log_x = np.maximum(np.log(x), -100.0)
        log_1mx = np.maximum(np.log1p(-x), -100.0)
    loss = -w * (y * log_x + (1.0 - y) * log_1mx)
    grad = w * (x - y) / np.maximum(x * (1.0 - x), 1e-12)
    return _finish(loss, grad, grad_out, reduction, x.size, loss_out, grad_up)


def _softplus(u):
    """softplus(u) = max(u, 0) + log1p(exp(-|u|)), which never overflows."""
    return np.maximum(u, 0.0) + np.log1p(np.exp(-np.abs(u)))


def _sigmoid(u):
    e = np.exp(-np.abs(u))
    return np.where(u >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def bce_with_logits_loss(z, y, grad_out, weight=None, pos_weight=None, reduction="mean",
                         loss_out=None, grad_up=None):
    """l = w [p y softplus(-z) + (1-y) softplus(z)]; grad = w [(1 + (p-1) y) sigmoid(z) - p y]."""
    z, y = _f64(z), _f64(y)
    w = 1.0 if weight is None else _f64(weight)
    p = 1.0 if pos_weight is None else _f64(pos_weight)
    sp_neg = _softplus(-z)
    loss = np.where(z == -np.inf, (1.0 - y) * z + (1.0 + (p - 1.0) * y) * sp_neg,   # torch's form: NaN at -inf
                    p * y * sp_neg + (1.0 - y) * _softplus(z))
    loss = w * loss
    grad = w * ((1.0 - y) * _sigmoid(z) - p * y * _sigmoid(-z))
    return _finish(loss, grad, grad_out, reduction, z.size, loss_out, grad_up)


def _log_softmax(z):
    """log p = (z - max z) - log sum exp(z - max z), row-wise."""
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def cross_entropy_loss(z, labels, grad_out, weight=None, ignore_index=-100, label_smoothing=0.0,
                       reduction="mean", loss_out=None, grad_up=None):
    """l_i = (1-eps) w_y (-log p_y) + (eps/C) sum_c w_c (-log p_c) (0 for ignored rows);
    grad_i = (1-eps) w_y (p - e_y) + (eps/C) (W p - w); mean divides by sum of w_y over kept rows."""
    z = _f64(z)
    N, C = z.shape
    labels = np.asarray(labels)
    w = np.ones(C) if weight is None else _f64(weight)
    eps = float(label_smoothing)
    keep = labels != ignore_index
    y = np.where(keep, labels, 0)
    w_y = np.where(keep, w[y], 0.0)
    logp = _log_softmax(z) if N else np.zeros((0, C))
    p = np.exp(logp)
    rows = np.arange(N)
    loss = np.where(keep, (1 - eps) * w_y * -logp[rows, y], 0.0)   # an ignored row adds 0, even with NaN logits
    if eps:  # no 0 * inf = NaN from a -inf logit when there is no smoothing (as the kernel and torch)
        loss = loss + np.where(keep, eps / C * (w * -logp).sum(axis=1), 0.0)
    onehot = np.zeros((N, C))
    onehot[rows, y] = 1.0
    grad = (1 - eps) * w_y[:, None] * (p - onehot) + eps / C * (w.sum() * p - w)
    ignored = 0.0 * p[~keep]   # torch: log_softmax's backward of a zero gradient, -p * 0 (NaN if p is)
    grad[~keep] = ignored
    return _finish(loss, grad, grad_out, reduction, w_y.sum(), loss_out, grad_up, keep, ignored)


def cross_entropy_prob_loss(z, target, grad_out, weight=None, label_smoothing=0.0, reduction="mean",
                            loss_out=None, grad_up=None):
    """t' = (1-eps) t + eps/C; l_i = -sum_c w_c t'_c log p_c; grad_i = (sum_c w_c t'_c) p - w t'; mean over N."""
    z = _f64(z)
    N, C = z.shape
    w = np.ones(C) if weight is None else _f64(weight)
    eps = float(label_smoothing)
    t = (1 - eps) * _f64(target) + eps / C
    logp = _log_softmax(z) if N else np.zeros((0, C))
    wt = w * t
    loss = -(wt * logp).sum(axis=1)
    grad = wt.sum(axis=1, keepdims=True) * np.exp(logp) - wt
    return _finish(loss, grad, grad_out, reduction, N, loss_out, grad_up)


def nll_loss(x, labels, grad_out, weight=None, ignore_index=-100, reduction="mean", loss_out=None,
             grad_up=None):
    """l_i = -w_y x[i, y] (0 for ignored rows); grad_i = -w_y e_y; mean divides by sum of w_y over kept rows."""
    x = _f64(x)
    N, C = x.shape
    labels = np.asarray(labels)
    w = np.ones(C) if weight is None else _f64(weight)
    keep = labels != ignore_index
    y = np.where(keep, labels, 0)
    w_y = np.where(keep, w[y], 0.0)
    rows = np.arange(N)
    loss = np.where(keep, -w_y * x[rows, y], 0.0)   # an ignored row adds 0, even with a NaN input
    grad = np.zeros((N, C))
    grad[rows, y] = -w_y
    return _finish(loss, grad, grad_out, reduction, w_y.sum(), loss_out, grad_up, keep)


# scikit-learn's MLP loss: the codes of _losses.SK_OUT_ACTIVATIONS
SK_IDENTITY, SK_LOGISTIC, SK_SOFTMAX, SK_EXP = range(4)


def _xlogy(a, b):
    """scipy.special.xlogy: 0 where a == 0 (and b is not NaN), else a * log(b)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((a == 0) & ~np.isnan(b), 0.0, a * np.log(b))


def sklearn_mlp_loss(z, t, grad_out, out_act, weighted=False):
    """scikit-learn 1.9's MLP output activation + loss (sklearn/neural_network/_base.py, transcribed) of z (N, K)
    against t ((N, K), or (N, K + 1) with the sample weights last); grad_out := (act(z) - y) * w / sum(w).
    Returns (loss, sum(w)). Probabilities are clipped in z's dtype, as sklearn clips its arrays."""
    dtype = z.dtype
    zf = _f64(z)
    K = z.shape[1]
    y = _f64(t[:, :K])
    w = _f64(t[:, K]) if weighted else np.ones(z.shape[0])
    sw = float(w.sum())
    with np.errstate(over="ignore"):
        if out_act == SK_IDENTITY:
            p = zf
        elif out_act == SK_LOGISTIC:
            p = 1.0 / (1.0 + np.exp(-zf))
        elif out_act == SK_SOFTMAX:
            e = np.exp(zf - zf.max(axis=1, keepdims=True))
            p = e / e.sum(axis=1, keepdims=True)
        else:
            p = np.exp(zf)
    eps = np.finfo(dtype).eps
    clipped = _f64(np.clip(p.astype(dtype), eps, dtype.type(1) - eps))
    if out_act == SK_IDENTITY:   # squared_loss
        value = 0.5 * float(np.mean((w[:, None] * (y - p) ** 2).sum(axis=0) / sw))
    elif out_act == SK_LOGISTIC or (out_act == SK_SOFTMAX and K == 1):   # binary_log_loss (log_loss's one column)
        value = -float((w[:, None] * (_xlogy(y, clipped) + _xlogy(1 - y, 1 - clipped))).sum(axis=0).sum() / sw)
    elif out_act == SK_SOFTMAX:   # log_loss
        value = -float((w[:, None] * _xlogy(y, clipped)).sum(axis=0).sum() / sw)
    else:   # poisson_loss
        with np.errstate(divide="ignore", invalid="ignore"):
            value = float((w[:, None] * (_xlogy(y, y / p) - y + p)).sum(axis=0).sum() / sw)
    grad_out[...] = (p - y) * (w / sw)[:, None]
    return value, sw
