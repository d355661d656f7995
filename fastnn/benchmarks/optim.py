"""Optimizer-step benchmark: fastnn's fused kernels vs in-place NumPy vs PyTorch, in bytes streamed.

One flat float parameter array of N elements with a fixed gradient. A step streams, once,
``(3 + 2*k) * N * itemsize`` bytes: params, grads and k state arrays read, params and the state
written. Two references stream as many bytes: ``copy_step`` (np.copyto into another
array: a "plain memory copy"; its destination also costs write-allocate reads) and
``inplace_step`` (a *= 1: read and written back in place, as an optimizer streams). The NumPy
references below are the careful baseline: preallocated state and scratch,
in-place ufuncs, torch's formulas and operation order (docs/numerics.md section 1), no allocation per
step. They support the hyper-parameters the benchmark uses (listed per class), not every flag.
"""

from __future__ import annotations

import inspect
import math

import numpy as np

from ..optim import OPTIMIZERS as _REGISTRY
from ..parameter import parameters_from_arrays
from .numpy_mlp import adam_moments, adam_update


def _state_arrays(cls, kwargs) -> int:
    """Per-parameter state arrays the fastnn optimizer keeps with these settings (counted after one step)."""
    params = parameters_from_arrays([np.zeros(3, np.float32)], ["w"], np.float32)
    params[0].grad = np.ones(3, np.float32)
    opt = cls(params, **kwargs)
    opt.step()
    return sum(np.shape(v) == (3,) for v in opt.state[params[0]].values())


def _rows() -> dict:
    """Each optimizer of fastnn.optim.OPTIMIZERS at its default (torch's) learning rate, and SGD with momentum."""
    rows = {}
    for name, cls in _REGISTRY.items():
        variants = {name: {}, **({"sgd-momentum": {"momentum": 0.9}} if name == "sgd" else {})}
        for row, extra in variants.items():
            kwargs = {"lr": inspect.signature(cls).parameters["lr"].default, **extra}
            rows[row] = (cls.__name__, kwargs, _state_arrays(cls, kwargs))
    return rows


#: row name -> (class name in fastnn.optim and torch.optim, keyword arguments, state arrays per parameter)
OPTIMIZERS = _rows()
OPT_SIZES = (1_000_000, 10_000_000)


def step_bytes(name: str, n: int, dtype=np.float32) -> int:
    """Bytes one step of optimizer `name` streams once over n parameters."""
    return (3 + 2 * OPTIMIZERS[name][2]) * n * np.dtype(dtype).itemsize


def fastnn_has(name: str) -> bool:
    """True if fastnn.optim has the optimizer class of row `name`."""
    return any(cls.__name__ == OPTIMIZERS[name][0] for cls in _REGISTRY.values())


def torch_has(name: str) -> bool:
    """True if torch.optim has the optimizer class of row `name` (not scikit-learn's SklearnSGD/SklearnAdam)."""
    return all(cls.torch_counterpart for cls in _REGISTRY.values() if cls.__name__ == OPTIMIZERS[name][0])


def numpy_has(name: str) -> bool:
    """True if there is an in-place NumPy reference for row `name` (NUMPY_OPTIMIZERS)."""
    return OPTIMIZERS[name][0] in NUMPY_OPTIMIZERS


def problem(n: int, dtype=np.float32, seed=0):
    """(param, grad): a fixed problem of n parameters, float values of order 1."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)


# ------------------------------------------------------------------------------------------ NumPy references

class NumpySGD:
    """torch.optim.SGD (lr, momentum, dampening; no weight decay, nesterov or maximize)."""

    def __init__(self, param, grad, lr=1e-3, momentum=0.0, dampening=0.0):
        self.p, self.g, self.lr, self.mu, self.damp = param, grad, lr, momentum, dampening
        self.tmp = np.empty_like(param)
        self.buf = np.empty_like(param) if momentum else None
        self.t = 0

    def step(self):
        self.t += 1
        g, tmp = self.g, self.tmp
        if self.buf is not None:
            if self.t == 1:
                np.copyto(self.buf, g)
            else:
                self.buf *= self.mu
                if self.damp:
                    np.multiply(g, 1 - self.damp, out=tmp)
                    self.buf += tmp
                else:
                    self.buf += g
            g = self.buf
        np.multiply(g, self.lr, out=tmp)
        self.p -= tmp


class NumpyAdam:
    """torch.optim.Adam / AdamW (lr, betas, eps, weight_decay coupled or decoupled; no amsgrad or maximize)."""

    def __init__(self, param, grad, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
        self.p, self.g, self.lr, self.betas, self.eps = param, grad, lr, betas, eps
        self.wd, self.decoupled = weight_decay, decoupled
        self.m, self.v = np.zeros_like(param), np.zeros_like(param)
        self.tmp, self.gd = np.empty_like(param), (np.empty_like(param) if weight_decay and not decoupled else None)
        self.t = 0

    def step(self):
        self.t += 1
        b1, b2 = self.betas
        p, g, m, v, tmp = self.p, self.g, self.m, self.v, self.tmp
        if self.wd:
            if self.decoupled:
                p *= 1 - self.lr * self.wd
            else:
                np.multiply(p, self.wd, out=self.gd)
                self.gd += g
                g = self.gd
        adam_update(p, g, m, v, tmp, b1, b2, self.eps, 1 / math.sqrt(1 - b2**self.t), self.lr / (1 - b1**self.t))


class NumpyAdamW(NumpyAdam):
    def __init__(self, param, grad, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(param, grad, lr, betas, eps, weight_decay, decoupled=True)


class NumpyRMSprop:
    """torch.optim.RMSprop (lr, alpha, eps; not centered, no momentum or weight decay)."""

    def __init__(self, param, grad, lr=1e-2, alpha=0.99, eps=1e-8):
        self.p, self.g, self.lr, self.alpha, self.eps = param, grad, lr, alpha, eps
        self.v, self.tmp = np.zeros_like(param), np.empty_like(param)

    def step(self):
        v, tmp = self.v, self.tmp
        v *= self.alpha
        np.multiply(self.g, self.g, out=tmp)
        tmp *= 1 - self.alpha
        v += tmp
        np.sqrt(v, out=tmp)
        tmp += self.eps
        np.divide(self.g, tmp, out=tmp)
        tmp *= self.lr
        self.p -= tmp


class NumpyAdagrad:
    """torch.optim.Adagrad (lr, lr_decay, eps, initial_accumulator_value; no weight decay)."""

    def __init__(self, param, grad, lr=1e-2, lr_decay=0.0, eps=1e-10, initial_accumulator_value=0.0):
        self.p, self.g, self.lr, self.lr_decay, self.eps = param, grad, lr, lr_decay, eps
        self.s, self.tmp = np.full_like(param, initial_accumulator_value), np.empty_like(param)
        self.t = 0

    def step(self):
        self.t += 1
        s, tmp = self.s, self.tmp
        np.multiply(self.g, self.g, out=tmp)
        s += tmp
        np.sqrt(s, out=tmp)
        tmp += self.eps
        np.divide(self.g, tmp, out=tmp)
        tmp *= self.lr / (1 + (self.t - 1) * self.lr_decay)
        self.p -= tmp


class NumpyAdadelta:
    """torch.optim.Adadelta (lr, rho, eps; no weight decay)."""

    def __init__(self, param, grad, lr=1.0, rho=0.9, eps=1e-6):
        self.p, self.g, self.lr, self.rho, self.eps = param, grad, lr, rho, eps
        self.v, self.u = np.zeros_like(param), np.zeros_like(param)
        self.tmp, self.tmp2 = np.empty_like(param), np.empty_like(param)

    def step(self):
        v, u, tmp, tmp2, rho, eps = self.v, self.u, self.tmp, self.tmp2, self.rho, self.eps
        v *= rho
        np.multiply(self.g, self.g, out=tmp)
        tmp *= 1 - rho
        v += tmp
        np.add(u, eps, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.add(v, eps, out=tmp2)
        np.sqrt(tmp2, out=tmp2)
        tmp /= tmp2
        tmp *= self.g                 # delta
        u *= rho
        np.multiply(tmp, tmp, out=tmp2)
        tmp2 *= 1 - rho
        u += tmp2
        tmp *= self.lr
        self.p -= tmp


class NumpySklearnSGD:
    """scikit-learn's SGDOptimizer (lr, momentum, nesterov), in place: v = mu*v - lr*g; p += mu*v - lr*g (nesterov)
    or v. sklearn itself allocates new arrays per step; this is the same arithmetic without allocations."""

    def __init__(self, param, grad, lr=0.1, momentum=0.9, nesterov=True):
        self.p, self.g, self.lr, self.mu, self.nesterov = param, grad, lr, momentum, nesterov
        self.v, self.tmp = np.zeros_like(param), np.empty_like(param)

    def step(self):
        v, tmp = self.v, self.tmp
        v *= self.mu
        np.multiply(self.g, self.lr, out=tmp)
        v -= tmp
        if self.nesterov:
            np.multiply(v, self.mu, out=tmp)
            tmp -= self.lr * self.g
            self.p += tmp
        else:
            self.p += v


class NumpySklearnAdam:
    """scikit-learn's AdamOptimizer (lr, betas, eps), in place: m, v as torch's; p += -lr_t * m / (sqrt(v) + eps),
    lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t) (epsilon outside the bias correction)."""

    def __init__(self, param, grad, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.p, self.g, self.lr, self.betas, self.eps = param, grad, lr, betas, eps
        self.m, self.v, self.tmp = np.zeros_like(param), np.zeros_like(param), np.empty_like(param)
        self.t = 0

    def step(self):
        self.t += 1
        b1, b2 = self.betas
        m, v, tmp, g = self.m, self.v, self.tmp, self.g
        adam_moments(g, m, v, tmp, b1, b2)
        np.sqrt(v, out=tmp)
        tmp += self.eps
        np.divide(m, tmp, out=tmp)
        tmp *= -(self.lr * math.sqrt(1 - b2**self.t) / (1 - b1**self.t))
        self.p += tmp


#: optimizer class name -> its in-place NumPy reference (NumpyX is the reference for X)
NUMPY_OPTIMIZERS = {cls.__name__.removeprefix("Numpy"): cls
                    for cls in (NumpySGD, NumpyAdam, NumpyAdamW, NumpyRMSprop, NumpyAdagrad, NumpyAdadelta,
                                NumpySklearnSGD, NumpySklearnAdam)}


# ------------------------------------------------------------------------------------------ factories

def fastnn_opt_step(name: str, n: int, dtype=np.float32):
    """fastnn.optim's `name` over one arena of n parameters holding a fixed gradient; returns opt.step."""
    cls_name, kwargs, _ = OPTIMIZERS[name]
    param, grad = problem(n, dtype)
    params = parameters_from_arrays([param], ["w"], dtype)
    params[0].grad = grad
    opt = next(cls for cls in _REGISTRY.values() if cls.__name__ == cls_name)(params, **kwargs)
    return opt.step


def numpy_opt_step(name: str, n: int, dtype=np.float32):
    cls_name, kwargs, _ = OPTIMIZERS[name]
    param, grad = problem(n, dtype)
    return NUMPY_OPTIMIZERS[cls_name](param, grad, **kwargs).step


def torch_opt_step(name: str, n: int, dtype=np.float32, fused=False):
    """torch.optim's `name` (its CPU default, or fused=True) over one tensor of n parameters."""
    import torch

    cls_name, kwargs, _ = OPTIMIZERS[name]
    param, grad = problem(n, dtype)
    p = torch.nn.Parameter(torch.from_numpy(param))
    p.grad = torch.from_numpy(grad)
    opt = getattr(torch.optim, cls_name)([p], **kwargs, **({"fused": True} if fused else {}))
    opt.step()   # raises here if this build has no fused CPU kernel for it
    return opt.step


def torch_has_fused(name: str) -> bool:
    """True if torch.optim's class for `name` takes fused=True and runs it on the CPU."""
    if not torch_has(name):
        return False
    try:
        torch_opt_step(name, 8, fused=True)
    except (ImportError, RuntimeError, TypeError, ValueError):
        return False
    return True


def copy_buffers(nbytes: int):
    """(dst, src): float32 arrays whose copy streams `nbytes` (nbytes/2 read + nbytes/2 written)."""
    n = max(1, nbytes // 8)
    src = np.ones(n, np.float32)
    return np.empty_like(src), src


def copy_step(nbytes: int, threads: int = 1, executor=None, buffers=None):
    """A plain memory copy streaming `nbytes`, split over `threads` workers of `executor` (a thread pool).

    np.copyto releases the GIL, so n Python threads copy n slices at once. Pass `buffers`
    (from copy_buffers) to share one pair of arrays between several copy callables.
    """
    dst, src = buffers if buffers is not None else copy_buffers(nbytes)
    if threads <= 1 or executor is None:
        return lambda: np.copyto(dst, src)
    bounds = np.linspace(0, src.size, threads + 1).astype(int)
    parts = [(dst[a:b], src[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]

    def copy():
        for f in [executor.submit(np.copyto, d, s) for d, s in parts]:
            f.result()

    return copy


def inplace_step(nbytes: int, threads: int = 1, executor=None, buffer=None):
    """An in-place pass (a *= 1) streaming `nbytes`: nbytes/2 read and written back to the same place.

    This is how an optimizer streams its arrays (every array it writes it has read), so no
    write-allocate traffic: the tighter reference for "streaming the step's bytes once". `buffer`:
    a float32 array of nbytes/8 elements to share between several callables.
    """
    a = buffer if buffer is not None else np.ones(max(1, nbytes // 8), np.float32)
    if threads <= 1 or executor is None:
        return lambda: np.multiply(a, 1.0, out=a)
    bounds = np.linspace(0, a.size, threads + 1).astype(int)
    parts = [a[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]

    def touch():
        for f in [executor.submit(np.multiply, p, 1.0, out=p) for p in parts]:
            f.result()

    return touch
