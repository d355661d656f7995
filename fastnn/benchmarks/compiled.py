"""The compiled alternatives a performance-minded user would pick instead of fastnn (issue 14), as optional rows.

- ``jax.jit``: the whole training step (forward, softmax cross-entropy, ``jax.value_and_grad``, optax Adam with
  torch's defaults) compiled ahead of time with donated parameter and optimizer-state buffers.
- ``torch.compile``: the whole functional step (``torch.func.grad_and_value`` of the loss, torch's Adam
  arithmetic written out in place on the parameter and state tensors) compiled as one graph
  (``fullgraph=True``, mode ``TORCH_COMPILE_MODE``).
- ``onnxruntime``: inference of the fastnn model exported with ``fastnn.io.to_onnx``, one intra-op thread,
  I/O binding with the input bound once and a preallocated output.

Every factory ``make(sizes, n, dtype) -> fn`` starts from the NumPy baseline's initial weights
(``NumpyMLP(sizes, n, dtype)``, seed 0) and batch (``shapes.batch``), checks before returning
that its first CHECK_STEPS losses (training) or its logits (inference) match the NumPy step's
(relative to the largest value: CHECK_RTOL for logits and the first loss, UPDATE_RTOL for the
losses after Adam updates; else raises ``Mismatch``), and attaches ``fn.compile_s`` (seconds spent
compiling, measured apart from the timed calls) and ``fn.check`` (the largest relative
difference found). All of them are single-threaded rows: XLA's and Inductor's thread counts
are fixed when the code is compiled, ONNX Runtime's when the session is made.

JAX threads: XLA's CPU client sizes its intra-op pool from the CPU affinity when the backend
starts, and ``--xla_cpu_multi_thread_eigen=false`` alone does not make jaxlib 0.10 single-threaded
(measured: a 2048^3 dot used 2 cores of CPU time per second of wall time). ``import_jax`` therefore
starts the backend with the calling thread's affinity narrowed to one core, then gives every
thread of the process its affinity back: one intra-op thread, free to run on any core.
``jax_enable_x64`` is switched on once for the whole process (not per row): a jitted function
traced with one setting and called with the other is retraced and its float64 buffers are
converted, which would break donation. The float32 rows stay float32 (explicit dtypes only;
``jax_step`` checks the dtype of what it returns).
"""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np

from . import shapes as S
from .numpy_mlp import NumpyMLP

CHECK_STEPS = 3
CHECK_RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9}
# the losses after Adam updates: early Adam steps are ~lr * sign(g), so a gradient entry near zero whose sign
# rounding flips moves its weight by 2 lr; on "large" (2048-wide, loss 7 after one step) float32 torch.compile
# differed from NumPy by 1.8e-4 of the loss at step 3 while the first loss agreed to 1e-7
UPDATE_RTOL = {np.dtype(np.float32): 1e-3, np.dtype(np.float64): 1e-8}
ADAM = {"lr": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8}   # torch.optim.Adam's defaults
XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false"
TORCH_COMPILE_MODE = "default"


class Mismatch(RuntimeError):
    """An alternative does not compute what the NumPy step computes."""


# ------------------------------------------------------------------------------------------ availability

def missing(name: str) -> str | None:
    """Why the alternative `name` cannot run here (a sentence), or None when it can."""
    need = {"jax.jit": ("jax", "optax"), "torch.compile": ("torch",), "onnxruntime": ("onnxruntime", "onnx")}[name]
    import importlib.util

    absent = [m for m in need if importlib.util.find_spec(m) is None]
    if absent:
        return f"{' and '.join(absent)} not installed (pip install {' '.join(absent)})"
    if name == "torch.compile":
        import shutil

        if not any(shutil.which(cc) for cc in ("c++", "g++", "clang++")):
            return "no C++ compiler on PATH (torch.compile's CPU backend, Inductor, needs one)"
    return None


def import_jax():
    """jax with one XLA intra-op thread and x64 enabled (see the module docstring); (jax, note)."""
    note = None
    if "jax" in sys.modules:
        import jax

        note = "jax was imported before the benchmark: its CPU thread pool may use every core"
    else:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + XLA_FLAGS).strip()
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        everything = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        if everything:
            os.sched_setaffinity(0, {min(everything)})
        try:
            import jax

            jax.devices()   # starts the CPU client: its intra-op pool is sized from the affinity now
        finally:
            if everything:
                _restore_affinity(everything)
    jax.config.update("jax_enable_x64", True)
    return jax, note


def _restore_affinity(cpus) -> None:
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:   # a thread that ended meanwhile
            pass


# ------------------------------------------------------------------------------------------ reference

def reference(sizes, n, dtype):
    """(weights, biases, x, y, losses): the NumPy baseline's initial weights, batch and first CHECK_STEPS losses."""
    mlp = NumpyMLP(sizes, n, dtype)
    weights, biases = [w.copy() for w in mlp.W], [b.copy() for b in mlp.b]
    x, y = S.batch(sizes, n, dtype)
    losses = [mlp.step(x, y) for _ in range(CHECK_STEPS)]
    return weights, biases, x, y, losses


def _check(name, got, want, dtype, losses=False) -> float:
    """The largest difference of got from want relative to want's largest value; raises Mismatch beyond tolerance.

    losses=True: got and want are successive training losses; the first (before any update) is held to
    CHECK_RTOL, the later ones to UPDATE_RTOL.
    """
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = max(float(np.max(np.abs(want))), 1e-30)
    rel = float(np.max(np.abs(got - want)) / scale)
    if losses and got.size > 1:
        tol = CHECK_RTOL[np.dtype(dtype)]
        first = abs(got[0] - want[0]) / scale
        if first > tol:
            rel = first
        else:
            tol = UPDATE_RTOL[np.dtype(dtype)]
    else:
        tol = CHECK_RTOL[np.dtype(dtype)]
    if not rel <= tol:
        raise Mismatch(f"{name} does not compute the NumPy step's result: largest relative difference {rel:.3g} "
                       f"> {tol:g} (got {got.ravel()[:3]}, NumPy {want.ravel()[:3]})")
    return rel


def _finish(fn, compile_s, check):
    fn.compile_s, fn.check = compile_s, check
    return fn


# ------------------------------------------------------------------------------------------ JAX

def jax_step(sizes, n, dtype):
    """JAX: jit of the whole step with optax Adam (torch's defaults) and donated params and optimizer state."""
    jax, _ = import_jax()
    import jax.numpy as jnp
    import optax

    weights, biases, x, y, want = reference(sizes, n, dtype)
    tx = optax.adam(ADAM["lr"], b1=ADAM["b1"], b2=ADAM["b2"], eps=ADAM["eps"])
    last = len(weights) - 1

    def loss_fn(params, x, y):
        h = x
        for i, (w, b) in enumerate(params):
            h = h @ w + b
            if i < last:
                h = jnp.maximum(h, 0)
        logz = jax.nn.logsumexp(h, axis=1)
        return jnp.mean(logz - jnp.take_along_axis(h, y[:, None], axis=1)[:, 0])

    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in zip(weights, biases)]
    opt_state = tx.init(params)
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    t0 = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, opt_state, xj, yj).compile()
    compile_s = time.perf_counter() - t0
    state = [params, opt_state]

    def run():
        state[0], state[1], loss = compiled(state[0], state[1], xj, yj)
        return loss.block_until_ready()

    got = [float(run()) for _ in range(CHECK_STEPS)]
    if state[0][0][0].dtype != np.dtype(dtype):
        raise Mismatch(f"jax.jit step computes in {state[0][0][0].dtype}, not {np.dtype(dtype)}")
    return _finish(run, compile_s, _check("jax.jit", got, want, dtype, losses=True))


# ------------------------------------------------------------------------------------------ torch.compile

def torch_compile_step(sizes, n, dtype, mode=None):
    """torch.compile (one graph) of grad_and_value of the loss plus torch's Adam arithmetic, in place."""
    import torch

    weights, biases, x, y, want = reference(sizes, n, dtype)
    params = [torch.from_numpy(a.copy()) for pair in zip(weights, biases) for a in pair]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    # the step count as a 1-element tensor: Inductor (torch 2.13, CPU) drops in-place updates of a 0-d float64
    # tensor inside the graph (the step count stayed 0 and the first update divided by zero)
    t = torch.zeros((1,), dtype=params[0].dtype)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    lr, b1, b2, eps = ADAM["lr"], ADAM["b1"], ADAM["b2"], ADAM["eps"]
    last = len(weights) - 1

    def loss_fn(params, x, y):
        h = x
        for i in range(last + 1):
            h = torch.addmm(params[2 * i + 1], h, params[2 * i])
            if i < last:
                h = torch.relu(h)
        return torch.nn.functional.cross_entropy(h, y)

    grad_and_value = torch.func.grad_and_value(loss_fn)

    def step(params, m, v, t, x, y):
        grads, loss = grad_and_value(params, x, y)
        t.add_(1)
        step_size = lr / (1 - torch.pow(b1, t))
        inv_sqrt_bc2 = torch.rsqrt(1 - torch.pow(b2, t))
        for p, g, mm, vv in zip(params, grads, m, v):   # torch.optim.Adam, single-tensor form
            mm.mul_(b1).add_(g, alpha=1 - b1)
            vv.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.sub_(step_size * mm / (vv.sqrt() * inv_sqrt_bc2 + eps))
        return loss

    compiled = torch.compile(step, fullgraph=True, mode=mode or TORCH_COMPILE_MODE)

    def run():
        return compiled(params, m, v, t, xt, yt)

    t0 = time.perf_counter()
    first = float(run())   # compiles, then runs one step
    compile_s = time.perf_counter() - t0
    got = [first] + [float(run()) for _ in range(CHECK_STEPS - 1)]
    return _finish(run, compile_s, _check("torch.compile", got, want, dtype, losses=True))


# ------------------------------------------------------------------------------------------ ONNX Runtime

def ort_forward(sizes, n, dtype, tmpdir=None):
    """ONNX Runtime inference of fastnn.io.to_onnx's export: 1 intra-op thread, I/O binding, preallocated output."""
    import tempfile

    import onnxruntime as ort

    from ..io import to_onnx

    model = S.fastnn_model(sizes, dtype).eval()
    params = model.parameters()
    mlp = NumpyMLP(sizes, n, dtype, train=False)
    mlp.set_weights([p.data for p in params[0::2]], [p.data for p in params[1::2]])
    x, _ = S.batch(sizes, n, dtype)
    want = mlp.forward(x).copy()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with tempfile.TemporaryDirectory(dir=tmpdir) as d:
        path = os.path.join(d, "model.onnx")
        to_onnx(model, path)
        t0 = time.perf_counter()
        sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        compile_s = time.perf_counter() - t0
    out = np.empty((n, sizes[-1]), dtype)
    binding = sess.io_binding()
    binding.bind_cpu_input("x", x)
    binding.bind_output("y", "cpu", 0, out.dtype, out.shape, out.ctypes.data)
    run_with_iobinding = sess.run_with_iobinding

    def run():
        run_with_iobinding(binding)
        return out

    run()
    rel = _check("onnxruntime", out, want, dtype) if math.prod(want.shape) else 0.0
    return _finish(run, compile_s, rel)


TRAIN_ALTERNATIVES = {"jax.jit": jax_step, "torch.compile": torch_compile_step}
INFERENCE_ALTERNATIVES = {"onnxruntime": ort_forward}
ALTERNATIVES = (*TRAIN_ALTERNATIVES, *INFERENCE_ALTERNATIVES)
