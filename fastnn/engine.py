"""Engine: a model's compiled fast paths (phase 2) - the whole training step in one call, and inference.

    engine = Engine(model)
    loss = engine.train_step(x, t, loss_fn, optimizer)   # forward + loss + backward + update
    engine.last_output                                    # the step's (training-mode) output, a view
    done = engine.train_batches(x, t, order, batch_size, first, count, loss_fn, optimizer, losses, outputs)
    out = engine.forward(x)                               # eval-mode output, an array of its own
    loss = engine.loss_grad(x, t, loss_fn)                # forward + loss + backward, no update (L-BFGS)

``train_step`` takes x already validated: a C-contiguous (n, in_features) array of the model's dtype
(not a view of ``last_output``), and t in the loss's prepared format (``loss._prepare(y_pred, y)[1]``).
It runs, as ONE call that holds no GIL over a compiled plan (fastnn._kernels._plan.TrainPlan):
the training-mode forward (dropout masks from the model's seed, the layer's stream and
the model's dropout step counter, which it advances exactly like the per-layer forward), the loss's fused loss +
gradient (its reduction, weights, ignore_index, label_smoothing, pos_weight), backward into the
gradient arena with beta = 0 (every gradient is overwritten; afterwards every parameter has
``has_grad = True``) and the optimizer update (the runs of ``optimizer._fused_runs()``, see
fastnn/_kernels/_optim.pxd). It returns the loss (reduction 'none': the sum of the per-sample losses,
whose gradient it backpropagates).

A plan is built once per (model stages, parameter arena, batch size, target format, loss object and
its settings, optimizer object, dropout rates, thread count) and rebuilt only when one of them
changes; plans for up to four (batch size, target format) pairs are cached (fit alternates between
the full batch and the last, partial one); a step allocates nothing after warm-up.

``train_batches`` runs `count` consecutive full batches of an epoch (rows ``order[b*bs:(b+1)*bs]``
of the whole x and t, or in order) in ONE nogil call (TrainPlan.run_batches): per batch the gather,
the whole step, its loss into ``losses`` and its output rows into ``outputs``. Every batch applies the
same optimizer runs, whose updates advance the step counts in place, so weights, optimizer state
(``state[p]["step"]`` included) and losses are the bits that as many train_step calls leave. It needs an
optimizer with a kernel (``_batchable``), a loss with a plan kernel and a model the plan runs
(``supports_batches``); anything else steps per batch. It stops after a non-finite loss.

The optimizer's runs are re-read every step (every train_batches call), so param-group changes
(add_param_group, a new lr) need no rebuild. Activation parameters (LeakyReLU's slope, ELU's alpha)
are read when the plan is built.

Fallbacks (each gives the same numbers as the compiled step):

* a loss the plan has no kernel for (any class other than fastnn's MSELoss, BCELoss, BCEWithLogitsLoss,
  CrossEntropyLoss, NLLLoss, SklearnMLPLoss, or a subclass overriding ``_forward_backward``): the plan's forward, then
  ``loss._forward_backward`` from Python, then the plan's backward - two nogil calls;
* an optimizer that is not a fastnn Optimizer stepping through ``_fused_runs`` (a subclass overriding
  ``step()``, or a ``step`` wrapped on the instance): its ``step()`` from Python after the plan's call;
* a model stage the plan does not know: the per-layer Python path (``Execution.forward``,
  ``loss._forward_backward``, ``Execution.backward``, ``optimizer.step()``); ``forward`` then runs
  ``Execution.forward`` in eval mode.

``forward`` (thread-safe: each call takes a plan of its own from a pool) runs an eval-mode plan
(fastnn._kernels._plan.InferPlan: no dropout, two ping-pong buffers; a row gets the same bits alone
or in a batch wherever the own small-GEMM kernels apply). Its fast entry checks only the array's
type, dtype, shape, contiguity and alignment flags (InferPlan.forward, which writes the output straight
into a new array or into ``out``); any other input is validated and converted once (fastnn._validation).
It returns the output ((n, out), or (out,) for a 1-D sample) in an array of its own, or writes it into
``out``. Nothing is cached per weight version: the plan reads the parameter arena on every call.

Distributed (fastnn.distributed): ``engine.distributed = ctx`` (a Context, or None) hands every plan the
allreduce hook (TrainPlan.distribute): each step then reduces the gradients, loss and denominator across
the ranks between backward and the update, inside the same nogil call; ``train_step``/``train_batches``
take the rows' offset in the global batch (``mask_offset``; ``stride``/``offset`` pick a rank's rows of
each global batch), and ``idle_step`` serves a rank with no rows in a step. It needs a loss with a plan
kernel and a model the plan runs (ValueError otherwise).

What the engine reads of a model: ``model._execution()`` only (fastnn._stages.Execution: its stages
and their plan records, the parameter arena, dtype, widths, seed and dropout step counter, which it
advances, and the per-layer path for stages no plan runs).

Threads (docs/design.md, "Threads"): a plan is built for the thread count it runs at: an explicit count
(``fastnn.set_num_threads(n)``, ``OMP_NUM_THREADS``; 1 in a forked child, see fastnn._config), or under
the adaptive default N or 1 per call, as the plan's ThreadChoice picks (``_adaptive_step``,
``_adaptive_batches``, forward of more than 16 rows; plans for both counts are cached side by side). It
runs serial control flow: GEMMs
are threaded by BLAS, except the small ones, which run on one thread in fastnn's own AVX2 kernels
where those are faster than (threaded) BLAS; element-wise passes go parallel above their measured
thresholds. The measurements behind this rule (OpenMP row partitions with single-threaded BLAS, or
one thread for the whole step, never won at 2 threads) are in bench/README.md ("Measurements behind the kernel rules").
"""

from __future__ import annotations

import threading

import numpy as np

from . import _config
from . import _validation as V
from . import losses as _losses
from ._kernels import _optim, _plan, _runtime
from ._stages import DropoutStage, LossSpec
from .optim.adam import Adam
from .optim.optimizer import Optimizer

__all__ = ["Engine"]

# the registered losses with a plan kernel (fastnn.losses.LOSSES; each class carries its plan_kind), and
# scikit-learn's MLP loss (fastnn.sklearn's; not a compile() name, so not in LOSSES)
_PLAN_LOSSES = frozenset([*(cls for cls in _losses.LOSSES.values() if cls.plan_kind is not None),
                          _losses.SklearnMLPLoss])


_MAX_PLANS = 4   # TrainPlans kept per engine (one per batch size and target format)

# Work below which the thread count changes nothing, so the adaptive default runs at N without choosing
# (no probes, no bookkeeping): every GEMM of at most 2^18 multiply-adds (own kernels at any count:
# csrc/fnn_gemm.h's FNN_GEMM_MAX_THREADED, which is also OpenBLAS's own threading threshold), every
# layer output of at most 8192 elements (under every element-wise pass's parallel threshold, the lowest
# being _losses' PAR_MIN_TRANSCENDENTAL) and, when training, at most as many parameters as the
# optimizer updates on one thread (_optim's thresholds: Adam's lower one, else the lowest of all kinds).
_SERIAL_GEMM = 1 << 18
_SERIAL_PASS = 8192
_HOOKS = ("step", "_fused_runs", "_runs", "_run_key", "_prepare_run", "_with_state")


def _batchable(optimizer) -> bool:
    """Whether run_batches may apply one step's runs to every batch: a fastnn Optimizer with a kernel kind
    (``_kind``), stepped by the base class's step(), no hook replaced on the instance (the kernel itself
    advances the step counts, see _optim.pxd)."""
    return (_fusable(optimizer) and getattr(type(optimizer), "_kind", None) is not None
            and not any(name in vars(optimizer) for name in _HOOKS))


_LOSS_SETTINGS = ("reduction", "ignore_index", "label_smoothing", "_weight", "_pos_weight", "out_activation", "alpha",
                  "weighted")


def _loss_settings(loss) -> list:
    """What the plan bakes in of a loss (compared by identity or value every step)."""
    return [getattr(loss, name, None) for name in _LOSS_SETTINGS]


def _fusable(optimizer) -> bool:
    """Whether the plan can run this optimizer's update: its step() is the base class's (nothing else to
    do than apply ``_fused_runs()``) and not wrapped on the instance."""
    return isinstance(optimizer, Optimizer) and type(optimizer).step is Optimizer.step and "step" not in vars(optimizer)


def _loss_kind(loss, t) -> int | None:
    """The plan's LossKind for this loss and target format, or None (the loss runs from Python)."""
    cls = type(loss)
    base = next((k for k in cls.__mro__ if k in _PLAN_LOSSES), None)
    if base is None or cls._forward_backward is not base._forward_backward:
        return None
    kind = base.plan_kind
    if kind == _plan.LossKind.CROSS_ENTROPY and not (isinstance(t, np.ndarray) and t.dtype.kind == "i"):
        return _plan.LossKind.CROSS_ENTROPY_PROB
    return kind


class Engine:
    """The compiled fast paths of one Sequential model (see the module docstring)."""

    def __init__(self, model):
        self._ex = model._execution()   # the model as the engine sees it (fastnn._stages.Execution)
        self._plan = None          # TrainPlan
        self._key = None           # what the TrainPlan was built for
        self._fused = False        # the plan runs the optimizer update
        self._split = False        # the loss runs from Python between two plan calls
        self._python = False       # the per-layer Python path (a stage the plan does not know)
        self._params = ()
        self._drops = ()           # dropout layers, whose p is checked every step
        self._grad_buf = self._loss_buf = None
        self._specs = None
        self._plans = {}           # (batch size, LossKind or None, threads) -> (TrainPlan, loss_out buffer if split)
        self._infer_pool = []      # (InferPlan, stages, arena, threads) entries not in use by a call
        self._python_lock = threading.Lock()
        self._adaptive = False     # the adaptive default picks each call's thread count (_adaptive_step)
        self._threads = 1          # the thread count of the call in progress (plans are built for it)
        self._choices = {}         # (batch size, LossKind or None) -> _config.ThreadChoice
        self._plan_key = None      # (batch size, LossKind or None, threads) of self._plan
        self._infer_choices = {}   # rows -> _config.ThreadChoice of forward (adaptive default)
        self._infer_pools = {}     # threads -> pooled entries for a count other than the configured one
        self.last_output = None
        self.distributed = None    # fastnn.distributed.Context while a distributed fit/train_step runs
        self.synced = None         # the Context whose rank 0 last broadcast the model (train_step)

    # ------------------------------------------------------------------ training
    def _stale(self, loss, optimizer) -> bool:
        """Whether the plan was built for another model state, loss, optimizer or thread count.

        Runs every step, so it compares attributes in place and creates no objects.
        """
        m = self._ex
        key = self._key
        if (key is None or key[0] is not m.stages or key[1] is not m.arena or key[2] is not loss
                or key[3] is not optimizer or key[4] != _config.thread_key() or key[6] is not self.distributed):
            return True
        settings = key[5]
        for i in range(len(_LOSS_SETTINGS)):
            old = settings[i]
            new = getattr(loss, _LOSS_SETTINGS[i], None)
            if new is not old and (isinstance(new, np.ndarray) or isinstance(old, np.ndarray) or new != old):
                return True
        for layer, p in self._drops:
            if layer.p != p:
                return True
        return False

    def _build(self, x, t, loss, optimizer) -> None:
        """A new key (model state, loss, optimizer, threads): drop every cached plan, then take x's."""
        m = self._ex
        self._drops = [(s.layer, s.layer.p) for s in m.stages if type(s) is DropoutStage]
        self._key = (m.stages, m.arena, loss, optimizer, _config.thread_key(), _loss_settings(loss),
                     self.distributed)
        self._threads = _config.omp_threads()   # the count the call in progress runs at (plans are built for it)
        self._choices = {}                       # (batch size, LossKind or None) -> _config.ThreadChoice
        self._params = tuple(m.arena.params)
        self._specs = m.specs(with_grads=True, training=True)
        self._plans = {}
        self._plan = None
        self._python = self._specs is None
        if self.distributed is not None and (self._python or _loss_kind(loss, t) is None):
            self._key = None
            raise ValueError("distributed training needs a model the compiled plan runs (Dense, activation and "
                             "Dropout layers) and a loss of fastnn.losses.LOSSES without an overridden "
                             f"_forward_backward; got {type(loss).__name__}")
        if self._python:
            self._grad_buf = np.empty((x.shape[0], m.out_features), m.dtype)
            self._loss_buf = self._loss_out_buffer(loss, self._grad_buf)
            self._n = x.shape[0]
            return
        self._split = _loss_kind(loss, t) is None
        self._fused = _fusable(optimizer)
        self._adaptive = _config.adaptive() and self.distributed is None and not self._split
        self._select(x.shape[0], t, loss)

    def _select(self, n, t, loss) -> None:
        """Make the plan for n rows and t's target format current: from the cache, else built (and cached)."""
        m = self._ex
        kind = _loss_kind(loss, t)
        entry = self._plans.get((n, kind, self._threads))
        if entry is None:
            dtype = m.dtype
            if kind is None:   # the plan needs a loss descriptor: a placeholder never run, of the targets' format
                labels = isinstance(t, np.ndarray) and t.dtype.kind == "i"
                spec = LossSpec(_plan.LossKind.NLL if labels else _plan.LossKind.MSE, "sum", m.out_features)
            else:
                shape = None if loss.row_wise else (n, m.out_features)
                weight = (loss._converted("weight", dtype, shape) if getattr(loss, "_weight", None) is not None
                          else None)
                pos = (loss._converted("pos_weight", dtype, shape) if getattr(loss, "_pos_weight", None) is not None
                       else None)
                spec = LossSpec(kind, loss.reduction, m.out_features, weight, pos, getattr(loss, "ignore_index", -100),
                                float(getattr(loss, "label_smoothing", 0.0)))
                if kind == _plan.LossKind.SKLEARN_MLP:
                    spec = spec._replace(out_activation=loss._out_code, alpha=loss.alpha, weighted=loss.weighted)
            plan = _plan.TrainPlan(dtype, n, m.in_features, self._specs, spec, self._threads)
            if self.distributed is not None:
                plan.distribute(self.distributed.hook(m.arena))
            entry = (plan, self._loss_out_buffer(loss, plan.output_grad) if kind is None else None)
            if len(self._plans) >= _MAX_PLANS:   # drop the oldest (fit uses two: full and last batch)
                del self._plans[next(iter(self._plans))]
            self._plans[n, kind, self._threads] = entry
        self._plan, self._loss_buf = entry
        self._plan_key = (n, kind, self._threads)
        self.last_output = self._plan.output

    @staticmethod
    def _loss_out_buffer(loss, grad):
        if loss.reduction != "none":
            return None
        return np.empty(loss._loss_shape(grad), grad.dtype)

    def train_step(self, x, t, loss, optimizer, mask_offset=0) -> float:
        """One training step on a validated batch (x, t); returns the loss. See the module docstring.

        mask_offset (distributed): x's rows start at that row of the global batch (their dropout masks)."""
        plan = self._plan
        if (plan is None and not self._python) or self._stale(loss, optimizer):
            self._build(x, t, loss, optimizer)
            plan = self._plan
        if self._python:
            return self._python_step(x, t, loss, optimizer)
        if self._adaptive:
            return self._adaptive_step(x, t, loss, optimizer)
        return self._step(x, t, loss, optimizer, mask_offset)

    def _step(self, x, t, loss, optimizer, mask_offset=0) -> float:
        """train_step on the current plan (or the cached one for x's batch size and t's format)."""
        plan = self._plan
        model = self._ex
        step = model.step + 1
        try:
            plan.check(x, t)
        except _plan.PlanMismatch:   # another batch size or target format: the cached plan for it, or a new one
            self._select(x.shape[0], t, loss)
            plan = self._plan
            plan.check(x, t)
        fused = optimizer if self._fused else None
        if self._split:   # a loss without a plan kernel: plan forward, the loss from Python, plan backward
            out = plan.forward(x, model.seed, step)
            value = loss._forward_backward(out, t, plan.output_grad, self._loss_buf)
            self._mark_grads()
            plan.backward(fused)
        else:
            self._mark_grads()   # before plan.step calls optimizer._fused_runs(), which skips grad-less ones
            value = (plan.step(x, t, model.seed, step, fused) if not mask_offset
                     else plan.step(x, t, model.seed, step, fused, mask_offset))
            if self.distributed is not None:
                self._check_comm(plan)
        model.step = step
        if fused is None:
            optimizer.step()
        return value

    def loss_grad(self, x, t, loss) -> float:
        """Forward (training mode) + loss + backward into the gradient arena, no update; returns the loss.

        x, t as for train_step (for SklearnMLPLoss with alpha != 0 the loss value includes its L2 term and
        the weight gradients its alpha / sum(w) * W). Every parameter's gradient is overwritten (beta = 0)
        and has ``has_grad = True``; the dropout step counter advances as in train_step. The objective of a
        full-batch optimizer such as L-BFGS (fastnn.sklearn's solver="lbfgs")."""
        optimizer = self._key[3] if self._key is not None else None   # keep the plan built for the last optimizer
        plan = self._plan
        if (plan is None and not self._python) or self._stale(loss, optimizer):
            self._build(x, t, loss, optimizer)
            plan = self._plan
        if self._python:
            return self._python_step(x, t, loss, None)
        model = self._ex
        step = model.step + 1
        try:
            plan.check(x, t)
        except _plan.PlanMismatch:
            self._select(x.shape[0], t, loss)
            plan = self._plan
            plan.check(x, t)
        if self._split:
            out = plan.forward(x, model.seed, step)
            value = loss._forward_backward(out, t, plan.output_grad, self._loss_buf)
            self._mark_grads()
            plan.backward(None)
        else:
            self._mark_grads()
            value = plan.step(x, t, model.seed, step, None)
        model.step = step
        return value

    def idle_step(self, loss, optimizer) -> float:
        """Distributed: a step in which this rank has no rows of the global batch (its part of the allreduce,
        then the same update as every other rank). Returns the global loss."""
        m = self._ex
        for p in m.arena.params:
            p.has_grad = True
        value = self.distributed.idle_step(m.arena, loss.reduction == "mean")
        m.step += 1
        optimizer.step()
        return value

    @staticmethod
    def _check_comm(plan):
        if plan.dist_error:
            raise RuntimeError(f"distributed step: MPI_Allreduce returned error code {plan.dist_error}")

    def supports_batches(self, t, loss, optimizer) -> bool:
        """Whether train_batches can run this model, loss (for targets like t) and optimizer."""
        return (_batchable(optimizer) and _loss_kind(loss, t) is not None
                and self._ex.specs(with_grads=False, training=True) is not None)

    def train_batches(self, x, t, order, batch_size, first, count, loss, optimizer, losses, outputs=None,
                      seconds=0.0, stride=0, offset=0, mask_offset=0) -> int:
        """Full batches first .. first+count-1 of an epoch, as `count` train_step calls, in ONE nogil call.

        Batch b holds rows order[b*batch_size:(b+1)*batch_size] of x and t (rows b*batch_size ... if order
        is None); x and t are validated as for train_step, all N rows (order: int64 indices < N). Writes
        batch first+k's loss to losses[k] (float64) and, given outputs ((count*batch_size, out), the
        model's dtype), its training-mode output rows to outputs[k*batch_size:(k+1)*batch_size]. Stops
        after a non-finite loss, or (seconds > 0) after the batch that ends `seconds` of wall time;
        returns the number of batches run. Weights, optimizer state
        (``state[p]["step"]``, SGD's momentum buffers) and ``model._step`` end exactly as after that
        many train_step calls. Needs supports_batches(t, loss, optimizer).

        Distributed: batch b is rows (first+b)*stride + offset .. + batch_size - 1 (of order, or of x), the
        rank's share of global batch first+b (stride: the global batch size); mask_offset as for train_step.
        """
        if not _batchable(optimizer):
            raise ValueError(f"train_batches cannot step a {type(optimizer).__name__}: use train_step per batch")
        plan = self._plan
        if (plan is None and not self._python) or self._stale(loss, optimizer):
            self._build(x[:batch_size], t[:batch_size], loss, optimizer)
            plan = self._plan
        if self._python or self._split or not self._fused:
            raise ValueError("train_batches needs a model, loss and optimizer the plan runs whole: use train_step")
        if self._adaptive:
            return self._adaptive_batches(x, t, order, batch_size, first, count, loss, optimizer, losses, outputs,
                                          seconds)
        if plan.n != batch_size or _loss_kind(loss, t) != self._plans_kind(plan):
            self._select(batch_size, t, loss)
            plan = self._plan
        model = self._ex
        self._mark_grads()
        if self.distributed is None:
            done = plan.run_batches(x, t, order, first, count, model.seed, model.step + 1, losses, outputs,
                                    optimizer._fused_runs(), seconds)
        else:
            done = plan.run_batches(x, t, order, first, count, model.seed, model.step + 1, losses, outputs,
                                    optimizer._fused_runs(), seconds, stride, offset, mask_offset)
            self._check_comm(plan)
        model.step += done
        self.last_output = plan.output
        return done

    # ------------------------------------------------------------------ the adaptive default's thread count
    def _count_matters(self, n, specs, optimizer) -> bool:
        """Whether n rows through these plan records (and the optimizer's update) run any threaded part."""
        if specs is None:
            return False
        for s in specs:
            if s.kind == "dense" and (n * s.k * s.m > _SERIAL_GEMM or n * s.m > _SERIAL_PASS):
                return True
        if optimizer is None:
            return False
        limit = (min(_optim.THRESHOLD, _optim.AVX2_THRESHOLD) if isinstance(optimizer, Adam)
                 else min(_optim.SGD_THRESHOLD, _optim.THRESHOLD, _optim.AVX2_THRESHOLD, _optim.RMSPROP_THRESHOLD,
                          _optim.ADADELTA_THRESHOLD))
        return sum(p.data.size for p in self._params) > limit

    def _choice(self, n, kind, optimizer):
        """The ThreadChoice of the plans for n rows and target format `kind` (fastnn._config, "adaptive default"),
        or False when the count changes nothing for them (_count_matters)."""
        key = (n, kind)
        choice = self._choices.get(key)
        if choice is None:
            choice = self._choices[key] = (
                _config.ThreadChoice(f"train_step/fit batch {n}", _config.get_num_threads())
                if self._count_matters(n, self._specs, optimizer) else False)
        return choice

    def _at(self, threads, n, t, loss, kind):
        """Make the plan for n rows, t's format (`kind`) and `threads` current, this thread's OpenMP count `threads`."""
        self._threads = threads
        _runtime.sync_omp_threads(threads)
        if self._plan is None or self._plan_key != (n, kind, threads):
            self._select(n, t, loss)
        return self._plan

    def _probe(self, choice, x, t, loss, kind):
        """Time the step without the optimizer update (plan.step without runs: gradients only, which the real
        step overwrites) at the other count and the current one, alternately; tell the choice."""
        if not _config.begin_probe():
            return
        current, other = choice.count, choice.other
        times = {current: [], other: []}
        seed, step = self._ex.seed, self._ex.step + 1
        try:
            for _ in range(choice.probe_rounds()):
                for k in (other, current):
                    _config.probe_threads(k)
                    plan = self._at(k, x.shape[0], t, loss, kind)
                    try:
                        plan.check(x, t)
                    except _plan.PlanMismatch:   # not the plan's batch: no probe (the step selects its plan)
                        return
                    clock = _config.clock(k)
                    t0 = clock()
                    plan.step(x, t, seed, step, None)
                    times[k].append(clock() - t0)
        finally:
            _config.end_probe(current)
            self._at(current, x.shape[0], t, loss, kind)
        choice.probed(times[other], times[current], sum(times[other]))

    def _adaptive_step(self, x, t, loss, optimizer) -> float:
        """train_step at the count the plan's ThreadChoice picks (probing first when a probe is due)."""
        n, kind = x.shape[0], _loss_kind(loss, t)
        choice = self._choice(n, kind, optimizer)
        if choice is False:   # nothing threaded: at N, as an explicit N runs it
            self._at(_config.get_num_threads(), n, t, loss, kind)
            return self._step(x, t, loss, optimizer)
        blas = self._at(choice.count, n, t, loss, kind).uses_blas
        threads = _config.enter_threads(choice.count, blas)
        try:
            if threads != choice.count:   # other calls run BLAS at the other count: this one runs there too
                self._at(threads, n, t, loss, kind)
            if threads == choice.count and choice.probe_due():
                self._probe(choice, x, t, loss, kind)
            clock = _config.clock(threads)
            t0 = clock()
            value = self._step(x, t, loss, optimizer)
            choice.record(threads, clock() - t0)
            return value
        finally:
            _config.exit_threads(blas)

    def _adaptive_batches(self, x, t, order, batch_size, first, count, loss, optimizer, losses, outputs,
                          seconds) -> int:
        """train_batches at the count the plan's ThreadChoice picks; a probe runs on the run's first batch."""
        kind = _loss_kind(loss, t)
        choice = self._choice(batch_size, kind, optimizer)
        if choice is False:   # nothing threaded: at N
            self._at(_config.get_num_threads(), batch_size, t, loss, kind)
            self._adaptive = False
            try:
                return self.train_batches(x, t, order, batch_size, first, count, loss, optimizer, losses, outputs,
                                          seconds)
            finally:
                self._adaptive = True
        plan = self._at(choice.count, batch_size, t, loss, kind)
        blas = plan.uses_blas
        threads = _config.enter_threads(choice.count, blas)
        try:
            if threads != choice.count:   # other calls run BLAS at the other count: this one runs there too
                plan = self._at(threads, batch_size, t, loss, kind)
            if threads == choice.count and choice.probe_due():
                rows = slice(first * batch_size, (first + 1) * batch_size)
                idx = rows if order is None else order[rows]
                self._probe(choice, np.ascontiguousarray(x[idx]), np.ascontiguousarray(t[idx]), loss, kind)
                plan = self._plan
            model = self._ex
            self._mark_grads()
            clock = _config.clock(threads)
            t0 = clock()
            done = plan.run_batches(x, t, order, first, count, model.seed, model.step + 1, losses, outputs,
                                    optimizer._fused_runs(), seconds)
            choice.record(threads, clock() - t0, done)
        finally:
            _config.exit_threads(blas)
        model.step += done
        self.last_output = plan.output
        return done

    def _plans_kind(self, plan):
        """The LossKind the cached plan was built for."""
        return next(k[1] for k, (p, _) in self._plans.items() if p is plan)

    def _mark_grads(self):
        for p in self._params:
            p.has_grad = True

    def _python_step(self, x, t, loss, optimizer):
        """Fallback for a model the plan cannot run: the per-layer Python path."""
        m = self._ex
        if x.shape[0] != self._n:
            self._build(x, t, loss, optimizer)
        out = m.forward(x, training=True)
        value = loss._forward_backward(out, t, self._grad_buf, self._loss_buf)
        for p in self._params:
            p.has_grad = False   # backward writes (beta = 0)
        m.backward(self._grad_buf)
        if optimizer is not None:   # None: loss_grad
            optimizer.step()
        self.last_output = out
        return value

    # ------------------------------------------------------------------ inference
    def forward(self, x, out=None):
        """Eval-mode output for x ((n, in_features) or (in_features,)), written to `out` (or a new array).

        Thread-safe: each call runs on an InferPlan of its own, taken from a pool (a plan is never
        used by two calls at once; a call that finds the pool empty builds one), so any number of
        threads may run inference on one model at once and each gets the bits it would get alone.
        Raises RuntimeError if another thread is training the model.
        """
        m = self._ex
        guard = m.arena.guard
        counted = guard.enter_infer("inference")
        try:
            choice = self._infer_choice(x)
            if choice is None:
                return self._forward_at(x, out, _config.omp_threads())
            blas = self._infer_blas(choice.count, x.shape[0])
            threads = _config.enter_threads(choice.count, blas)
            try:
                if threads == choice.count and choice.probe_due():
                    self._probe_forward(choice, x)
                clock = _config.clock(threads)
                t0 = clock()
                res = self._forward_at(x, out, threads)
                choice.record(threads, clock() - t0)
                return res
            finally:
                _config.exit_threads(blas)
        finally:
            guard.exit_infer(counted)

    _FEW_ROWS = 16   # csrc/fnn_gemm.h's FNN_GEMM_FEW_ROWS: up to here forward runs the same kernels at any count

    def _infer_choice(self, x):
        """The ThreadChoice of forward calls with x's row count (adaptive default), or None: run at the
        configured count (an explicit count, or x of a few rows, whose GEMMs are single-threaded anyway)."""
        if not (isinstance(x, np.ndarray) and x.ndim == 2 and x.shape[0] > self._FEW_ROWS and _config.adaptive()):
            return None
        n = x.shape[0]
        choice = self._infer_choices.get(n)
        if choice is None:
            if len(self._infer_choices) >= 8:
                return None
            matters = self._count_matters(n, self._ex.specs(with_grads=False, training=False), None)
            choice = self._infer_choices[n] = (
                _config.ThreadChoice(f"forward {n} rows", _config.get_num_threads()) if matters else False)
        return choice or None

    def _pool(self, threads) -> list:
        """The pooled InferPlans for `threads`: the configured count's in _infer_pool, the adaptive default's
        other count's in _infer_pools."""
        return self._infer_pool if threads == _config.omp_threads() else self._infer_pools.setdefault(threads, [])

    def _infer_blas(self, threads, n) -> bool:
        """Whether forward of n rows at `threads` calls BLAS, as a pooled plan for that count decides it (True
        while there is none yet: the first call sets SciPy's OpenBLAS count as for any call)."""
        try:
            entry = self._pool(threads)[-1]   # another thread may pop it meanwhile: its plan still answers
        except IndexError:
            return True
        return not self._current(entry, threads) or entry[0].uses_blas(n)

    def _probe_forward(self, choice, x):
        """Time forward at the other count and the current one, alternately (results dropped); tell the choice."""
        if not _config.begin_probe():
            return
        current, other = choice.count, choice.other
        times = {current: [], other: []}
        try:
            for _ in range(choice.probe_rounds()):
                for k in (other, current):
                    _config.probe_threads(k)
                    clock = _config.clock(k)
                    t0 = clock()
                    self._forward_at(x, None, k)
                    times[k].append(clock() - t0)
        finally:
            _config.end_probe(current)
        choice.probed(times[other], times[current], sum(times[other]))

    def _forward_at(self, x, out, threads):
        """forward at `threads` threads, on a pooled InferPlan built for that count."""
        _runtime.sync_omp_threads(threads)
        pool = self._pool(threads)
        m = self._ex
        # the fast entry: a pooled plan built for the model as it is and this count, x and out as the plan takes
        # them (it writes the output straight into `out` or a new array)
        res = _plan.run_pooled(pool, x, out, m.stages, m.arena, threads)
        if res is not None:
            return res
        try:
            entry = pool.pop()   # atomic under the GIL: no two calls get the same plan
        except IndexError:
            entry = None
        try:
            entry, res = self._forward_slow(x, entry, threads)
            if out is None:
                return res.copy()
            np.copyto(out, res)
            return out
        finally:
            if entry is not None and self._current(entry, threads):
                pool.append(entry)

    def _current(self, entry, threads) -> bool:
        """Whether a pooled (plan, stages, arena, threads) entry was built for the model as it is now and `threads`."""
        m = self._ex
        return entry[1] is m.stages and entry[2] is m.arena and entry[3] == threads

    def _forward_slow(self, x, entry, threads):
        """Validate and convert x once, then run it on `entry`'s plan or on a new one; (entry, output view)."""
        m = self._ex
        single = isinstance(x, np.ndarray) and x.ndim == 1
        x = V.as_float_array(x, "x", m.dtype, ndim=(1, 2) if single else 2)
        n = 1 if single else x.shape[0]
        if x.shape[-1] != m.in_features:
            raise ValueError(f"x must have {m.in_features} features (columns), got shape {x.shape}")
        if n == 0:
            raise ValueError("x must have at least one row, got shape (0, ...)")
        if entry is None or not self._current(entry, threads) or n > entry[0].capacity:
            specs = m.specs(with_grads=False, training=False)
            if specs is None:   # a stage the plan does not know: the per-layer path, in eval mode
                return None, self._python_forward(x, single)
            capacity = max(n, entry[0].capacity if entry is not None and self._current(entry, threads) else 0)
            entry = (_plan.InferPlan(m.dtype, capacity, m.in_features, specs, threads), m.stages, m.arena,
                     threads)
        out = entry[0].run(x)
        if out is None:   # x misaligned (a view into a byte buffer) or an earlier output of this plan: copy it
            out = entry[0].run(np.array(x, dtype=m.dtype, order="C"))
        return entry, out

    def _python_forward(self, x, single):
        """The per-layer path in eval mode (for a stage the plan does not know); serialised by a lock,
        since it runs on the model's own stage buffers."""
        with self._python_lock:
            out = self._ex.forward(x.reshape(1, -1) if single else x, training=False)
            return (out[0] if single else out).copy()
