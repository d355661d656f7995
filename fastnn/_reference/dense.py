"""NumPy twins of fastnn._kernels._dense (same signatures)."""

import numpy as np

from . import activations


def forward(x, w, b, z_out, a_out, act, param=0.0, param2=0.0):
    """z_out := x @ w + b ; a_out := f(z_out)."""
    np.matmul(x, w, out=z_out)
    activations.forward(z_out, b, a_out, act, param, param2)


def backward(x, w, z, a, g, dw_out, db_out, dx_out, act, param=0.0, accumulate=False, accumulate_b=None, param2=0.0):
    """g := g * f'(z, a); dw_out (+)= x^T g; db_out (+)= colsum(g); dx_out := g @ w^T."""
    activations.backward(g, z, a, g, act, param, param2)
    dw = x.T @ g
    db = g.sum(axis=0, dtype=np.float64).astype(g.dtype)
    dw_out[...] = dw_out + dw if accumulate else dw
    if db_out.shape[0]:
        db_out[...] = db_out + db if (accumulate if accumulate_b is None else accumulate_b) else db
    if dx_out.shape[0]:
        np.matmul(g, w.T, out=dx_out)


def matmul(a, b, c_out, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    """c_out := alpha * op(a) @ op(b) + beta * c_out."""
    a = a.T if trans_a else a
    b = b.T if trans_b else b
    c_out[...] = alpha * (a @ b) + (beta * c_out if beta else 0)
