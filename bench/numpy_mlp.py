"""A careful pure-NumPy MLP training step: the baseline fastnn is measured against.

ReLU hidden layers, softmax cross-entropy, Adam - the DESIGN.md benchmark recipe.
Careful means: every buffer preallocated, in-place ufuncs with out=, matmul with out=,
one pass per element-wise stage where NumPy allows it. Weights are (in, out) as in fastnn.
"""

from __future__ import annotations

import numpy as np


class NumpyMLP:
    def __init__(self, sizes, batch, dtype=np.float32, seed=0, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        rng = np.random.default_rng(seed)
        dt = np.dtype(dtype)
        self.dtype = dt
        self.W = [rng.uniform(-1, 1, (i, o)).astype(dt) * dt.type(np.sqrt(6 / (i + o)))
                  for i, o in zip(sizes[:-1], sizes[1:])]
        self.b = [np.zeros(o, dt) for o in sizes[1:]]
        self.params = [p for pair in zip(self.W, self.b) for p in pair]
        self.grads = [np.empty_like(p) for p in self.params]
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.tmp = [np.empty_like(p) for p in self.params]
        self.Z = [np.empty((batch, o), dt) for o in sizes[1:]]
        self.dA = [np.empty((batch, i), dt) for i in sizes[1:-1]]
        self.mask = [np.empty((batch, o), bool) for o in sizes[1:-1]]
        self.rowmax = np.empty((batch, 1), dt)
        self.rowsum = np.empty((batch, 1), dt)
        self.lr, self.betas, self.eps, self.t = lr, betas, eps, 0

    def forward(self, x):
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
        """One training step on (x, y); returns the mean cross-entropy."""
        n = x.shape[0]
        P = self.forward(x)
        np.max(P, axis=1, keepdims=True, out=self.rowmax)
        P -= self.rowmax
        np.exp(P, out=P)
        np.sum(P, axis=1, keepdims=True, out=self.rowsum)
        rows = np.arange(n)
        loss = float(np.mean(np.log(self.rowsum[:, 0]) - np.log(P[rows, y])))   # -log softmax at the label
        P /= self.rowsum
        P[rows, y] -= 1
        P *= P.dtype.type(1.0 / n)
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
        self.t += 1
        b1, b2 = self.betas
        bc1, bc2 = 1 - b1**self.t, 1 - b2**self.t
        dt = self.dtype.type
        for p, g, m, v, tmp in zip(self.params, self.grads, self.m, self.v, self.tmp):
            m *= dt(b1)
            np.multiply(g, dt(1 - b1), out=tmp)
            m += tmp
            v *= dt(b2)
            np.multiply(g, g, out=tmp)
            tmp *= dt(1 - b2)
            v += tmp
            np.sqrt(v, out=tmp)
            tmp *= dt(1 / np.sqrt(bc2))
            tmp += dt(self.eps)
            np.divide(m, tmp, out=tmp)
            tmp *= dt(self.lr / bc1)
            p -= tmp
