"""A careful pure-NumPy MLP: the baseline fastnn is measured against.

ReLU hidden layers, softmax cross-entropy, Adam - the benchmark recipe of docs/design.md (Performance targets).
Careful means: every buffer preallocated, in-place ufuncs with out=, matmul with out=,
one pass per element-wise stage where NumPy allows it. Weights are (in, out) as in fastnn,
so z = x @ W + b. The only per-step allocations are n-element temporaries for the loss value.
"""

from __future__ import annotations

import math

import numpy as np


class NumpyMLP:
    """NumpyMLP(sizes, batch, dtype, seed, lr, betas, eps, train=True): one model for one batch size.

    ``step(x, y)`` runs forward, softmax cross-entropy, backward and torch's Adam update and returns
    the mean loss; afterwards ``grads`` holds this step's gradients (W0, b0, W1, b1, ...).
    ``forward(x)`` returns the logits (a buffer reused by the next call). ``train=False`` skips the
    gradient and optimizer buffers (inference only).
    """

    def __init__(self, sizes, batch, dtype=np.float32, seed=0, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                 train=True):
        rng = np.random.default_rng(seed)
        dt = np.dtype(dtype)
        self.sizes, self.batch, self.dtype = list(sizes), int(batch), dt
        self.W = [(rng.uniform(-1, 1, (i, o)) * math.sqrt(6 / (i + o))).astype(dt)
                  for i, o in zip(sizes[:-1], sizes[1:])]
        self.b = [np.zeros(o, dt) for o in sizes[1:]]
        self.params = [p for pair in zip(self.W, self.b) for p in pair]
        self.Z = [np.empty((batch, o), dt) for o in sizes[1:]]
        self.lr, self.betas, self.eps, self.t = lr, betas, eps, 0
        if not train:
            return
        self.grads = [np.empty_like(p) for p in self.params]
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.tmp = [np.empty_like(p) for p in self.params]
        self.dA = [np.empty((batch, i), dt) for i in sizes[1:-1]]
        self.mask = [np.empty((batch, o), bool) for o in sizes[1:-1]]
        self.rowmax = np.empty((batch, 1), dt)
        self.rowsum = np.empty((batch, 1), dt)
        self.rows = np.arange(batch)

    def set_weights(self, weights, biases) -> None:
        """Copy weights (in, out) and biases (out,) in (e.g. from a fastnn model, to compare steps)."""
        for dst, src in zip(self.W + self.b, list(weights) + list(biases)):
            np.copyto(dst, src)

    def forward(self, x):
        """Logits of x (batch, sizes[0]): ReLU hidden layers, a linear last layer."""
        h = x
        last = len(self.W) - 1
        for i, (W, b, Z) in enumerate(zip(self.W, self.b, self.Z)):
            np.matmul(h, W, out=Z)
            Z += b
            if i < last:
                np.maximum(Z, 0, out=Z)
            h = Z
        return h

    def step(self, x, y):
        """One training step on (x, y); returns the mean cross-entropy before the update."""
        n = x.shape[0]
        rows = self.rows[:n]
        P = self.forward(x)
        np.max(P, axis=1, keepdims=True, out=self.rowmax)
        P -= self.rowmax
        picked = P[rows, y]                                       # z_y - max, before exp
        np.exp(P, out=P)
        np.sum(P, axis=1, keepdims=True, out=self.rowsum)
        loss = float(np.mean(np.log(self.rowsum)) - np.mean(picked))   # mean(logsumexp(z) - z_y)
        P /= self.rowsum                                          # softmax
        P[rows, y] -= 1
        P *= 1.0 / n                                              # d mean loss / d z
        G = P
        for i in range(len(self.W) - 1, -1, -1):
            h = x if i == 0 else self.Z[i - 1]
            np.matmul(h.T, G, out=self.grads[2 * i])
            np.sum(G, axis=0, out=self.grads[2 * i + 1])
            if i > 0:
                dA = self.dA[i - 1]
                np.matmul(G, self.W[i].T, out=dA)
                np.greater(self.Z[i - 1], 0, out=self.mask[i - 1])
                dA *= self.mask[i - 1]
                G = dA
        self._adam()
        return loss

    def _adam(self):
        """torch.optim.Adam: p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps), in place, 11 passes per array."""
        self.t += 1
        b1, b2 = self.betas
        bc1, bc2 = 1 - b1**self.t, 1 - b2**self.t
        inv_sqrt_bc2, step_size = 1 / math.sqrt(bc2), self.lr / bc1   # Python floats keep float32 loops
        for p, g, m, v, tmp in zip(self.params, self.grads, self.m, self.v, self.tmp):
            adam_update(p, g, m, v, tmp, b1, b2, self.eps, inv_sqrt_bc2, step_size)


def adam_moments(g, m, v, tmp, b1, b2) -> None:
    """Adam's moments in place, in torch's (and scikit-learn's) order: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2."""
    m *= b1
    np.multiply(g, 1 - b1, out=tmp)
    m += tmp
    v *= b2
    np.multiply(g, g, out=tmp)
    tmp *= 1 - b2
    v += tmp


def adam_update(p, g, m, v, tmp, b1, b2, eps, inv_sqrt_bc2, step_size) -> None:
    """One array's torch Adam update in place, 11 passes: m, v moments; p -= step_size * m / (sqrt(v)*inv + eps).

    The scalars are Python floats (computed once per step by the caller), so float32 arrays stay float32.
    """
    adam_moments(g, m, v, tmp, b1, b2)
    np.sqrt(v, out=tmp)
    tmp *= inv_sqrt_bc2
    tmp += eps
    np.divide(m, tmp, out=tmp)
    tmp *= step_size
    p -= tmp
