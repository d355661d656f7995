"""NumPy twins of fastnn._kernels._optim (same signatures, same in-place effects).

Each function updates a 1-D run of parameters in place, plus the matching runs of the optimizer
state, following docs/numerics.md section 1.1-1.5 in torch's operation order (mul_ then addcmul_, addcdiv_, lerp_
as base + c*(end - self)), in the arrays' own dtype: every per-step scalar is rounded to that dtype
once, as the kernels and torch do. Unused optional state buffers may be length-0 dummies.
The scikit-learn kinds (SK_SGD, SK_ADAM) are sklearn's own NumPy expressions
(sklearn/neural_network/_stochastic_optimizers.py), evaluated as NumPy evaluates them there.
``apply_run`` takes the protocol's (kind, flags, ..., hp, steps) as documented in _optim.pxd: it counts
the steps and derives the per-step scalars (``_scalars``, the twin of step_scalars) before the update.
"""

from __future__ import annotations

import numpy as np

SGD, ADAM, RMSPROP, ADAGRAD, ADADELTA, SK_SGD, SK_ADAM = range(7)
MAXIMIZE, WEIGHT_DECAY, MOMENTUM, NESTEROV, FIRST_STEP, AMSGRAD, DECOUPLED, CENTERED = (1 << k for k in range(8))


def _grad(flags, param, grad, weight_decay):
    g = -grad if flags & MAXIMIZE else grad
    return g + weight_decay * param if flags & WEIGHT_DECAY else g


def _lerp(start, end, w):
    """torch's lerp_(end, w) in its vectorised form: base + c*(end - start)."""
    small = abs(w) < 0.5
    c = w if small else w - w.dtype.type(1)
    return (start if small else end) + c * (end - start)


def _sgd(flags, param, grad, buf, lr, momentum, one_minus_dampening, weight_decay, *_):
    g = _grad(flags, param, grad, weight_decay)
    if flags & MOMENTUM:
        buf[...] = g if flags & FIRST_STEP else momentum * buf + one_minus_dampening * g
        g = g + momentum * buf if flags & NESTEROV else buf
    param -= lr * g


def _adam(flags, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, w1, beta2, one_minus_beta2, eps, weight_decay,
          decay_factor, step_size, bias_correction2_sqrt):
    g = -grad if flags & MAXIMIZE else grad
    if flags & WEIGHT_DECAY:
        if flags & DECOUPLED:
            param *= decay_factor
        else:
            g = g + weight_decay * param
    exp_avg[...] = _lerp(exp_avg, g, w1)
    exp_avg_sq[...] = beta2 * exp_avg_sq + one_minus_beta2 * g * g
    v = exp_avg_sq
    if flags & AMSGRAD:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        v = max_exp_avg_sq
    param -= step_size * exp_avg / (np.sqrt(v) / bias_correction2_sqrt + eps)


def _rmsprop(flags, param, grad, square_avg, momentum_buffer, grad_avg, lr, alpha, one_minus_alpha, eps,
             weight_decay, momentum, *_):
    g = _grad(flags, param, grad, weight_decay)
    square_avg[...] = alpha * square_avg + one_minus_alpha * g * g
    if flags & CENTERED:
        grad_avg[...] = _lerp(grad_avg, g, one_minus_alpha)
        avg = np.sqrt(square_avg - grad_avg * grad_avg) + eps
    else:
        avg = np.sqrt(square_avg) + eps
    if flags & MOMENTUM:
        momentum_buffer[...] = momentum * momentum_buffer + g / avg
        param -= lr * momentum_buffer
    else:
        param -= lr * g / avg


def _adagrad(flags, param, grad, state_sum, clr, weight_decay, eps, *_):
    g = _grad(flags, param, grad, weight_decay)
    state_sum += g * g
    param -= clr * g / (np.sqrt(state_sum) + eps)


def _adadelta(flags, param, grad, square_avg, acc_delta, lr, rho, one_minus_rho, eps, weight_decay, *_):
    g = _grad(flags, param, grad, weight_decay)
    square_avg[...] = rho * square_avg + one_minus_rho * g * g
    delta = np.sqrt(acc_delta + eps) / np.sqrt(square_avg + eps) * g
    acc_delta[...] = rho * acc_delta + one_minus_rho * delta * delta
    param -= lr * delta


def _sk_sgd(flags, param, grad, velocity, lr, momentum, *_):
    """sklearn's SGDOptimizer._get_updates + update_params (lr and momentum: Python floats there)."""
    lr, momentum = float(lr), float(momentum)
    velocity[...] = momentum * velocity - lr * grad
    param += momentum * velocity - lr * grad if flags & NESTEROV else velocity


def _sk_adam(flags, param, grad, ms, vs, beta1, one_minus_beta1, beta2, one_minus_beta2, neg_lr_t, eps, *_):
    """sklearn's AdamOptimizer._get_updates + update_params (beta1, beta2, eps: Python floats there; lr_t a
    NumPy float64, which promotes a float32 update to float64)."""
    ms[...] = float(beta1) * ms + float(one_minus_beta1) * grad
    vs[...] = float(beta2) * vs + float(one_minus_beta2) * (grad**2)
    param += np.float64(neg_lr_t) * ms / (np.sqrt(vs) + float(eps))


_KERNELS = {SGD: (_sgd, 1), ADAM: (_adam, 3), RMSPROP: (_rmsprop, 3), ADAGRAD: (_adagrad, 1),
            ADADELTA: (_adadelta, 2), SK_SGD: (_sk_sgd, 1), SK_ADAM: (_sk_adam, 2)}


def _scalars(kind, hp, t):
    """The per-step scalars sc of a run from its hyper-parameters hp and step count t (see _optim.pxd)."""
    if kind == SGD:
        lr, momentum, dampening, weight_decay = hp
        return lr, momentum, 1.0 - dampening, weight_decay
    if kind == ADAM:
        lr, beta1, beta2, eps, weight_decay = hp
        return (1.0 - beta1, beta2, 1.0 - beta2, eps, weight_decay, 1.0 - lr * weight_decay, lr / (1.0 - beta1**t),
                (1.0 - beta2**t) ** 0.5)
    if kind == RMSPROP:
        lr, alpha, eps, weight_decay, momentum = hp
        return lr, alpha, 1.0 - alpha, eps, weight_decay, momentum
    if kind == ADAGRAD:
        lr, lr_decay, weight_decay, eps = hp
        return lr / (1 + (t - 1) * lr_decay), weight_decay, eps
    if kind == SK_SGD:
        lr, momentum = hp
        return lr, momentum
    if kind == SK_ADAM:
        lr, beta1, beta2, eps = hp
        return beta1, 1.0 - beta1, beta2, 1.0 - beta2, -(lr * np.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)), eps
    lr, rho, eps, weight_decay = hp
    return lr, rho, 1.0 - rho, eps, weight_decay


def apply_run(kind, flags, param, grad, s0, s1, s2, hp, steps):
    """One update of a run, as _optim.apply_run (kind, flags and hp as documented in _optim.pxd): the float32
    step counts `steps` (none for SGD) go up by one, then the update runs with the scalars for the first count."""
    kernel, n_state = _KERNELS[kind]
    t = 0.0
    if kind not in (SGD, SK_SGD):
        steps[...] = steps.astype(np.float64) + 1.0  # rounded to float32, as torch's float32 add rounds
        t = float(steps[0])
    dtype = param.dtype.type
    scalars = _scalars(kind, tuple(hp), t)
    if kind in (SK_SGD, SK_ADAM):   # sklearn's expressions take Python floats (and lr_t a float64) as they are
        scalars = [float(x) for x in scalars]
    else:
        scalars = [dtype(x) for x in scalars]
    kernel(flags, param, grad, *(s0, s1, s2)[:n_state], *scalars, *[dtype(0)] * (8 - len(scalars)))


def _count(step):
    """A one-element step count that apply_run advances to `step`."""
    return np.array([step - 1.0], np.float32)


def _bits(**flags):
    names = dict(maximize=MAXIMIZE, weight_decay=WEIGHT_DECAY, momentum=MOMENTUM, nesterov=NESTEROV,
                 first_step=FIRST_STEP, amsgrad=AMSGRAD, decoupled=DECOUPLED, centered=CENTERED)
    return sum(names[k] for k, on in flags.items() if on)


def sgd_step(param, grad, momentum_buffer, lr, momentum, dampening, weight_decay, nesterov, maximize,
             first_step):
    """g := ±grad + wd*param; b := first_step ? g : mu*b + (1-dampening)*g; param -= lr*(nesterov ? g + mu*b : b)."""
    flags = _bits(maximize=maximize, weight_decay=weight_decay != 0, momentum=momentum != 0, nesterov=nesterov,
                  first_step=first_step)
    apply_run(SGD, flags, param, grad, momentum_buffer, None, None, (lr, momentum, dampening, weight_decay),
              np.empty(0, np.float32))


def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
              decoupled, amsgrad, maximize, step):
    """g := ±grad (+ wd*param, or param *= 1 - lr*wd if decoupled); m := lerp(m, g, 1-b1); v := b2*v + (1-b2)*g*g;
    param -= lr/(1 - b1^t) * m / (sqrt(amsgrad ? vmax := max(vmax, v) : v) / sqrt(1 - b2^t) + eps), t = step."""
    flags = _bits(maximize=maximize, weight_decay=weight_decay != 0, amsgrad=amsgrad, decoupled=decoupled)
    apply_run(ADAM, flags, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, (lr, beta1, beta2, eps, weight_decay),
              _count(step))


def rmsprop_step(param, grad, square_avg, momentum_buffer, grad_avg, lr, alpha, eps, weight_decay, momentum,
                 centered, maximize):
    """g := ±grad + wd*param; v := a*v + (1-a)*g*g; d := sqrt(centered ? v - (ga := lerp(ga, g, 1-a))^2 : v) + eps;
    param -= lr * (momentum > 0 ? b := mu*b + g/d : g/d)."""
    flags = _bits(maximize=maximize, weight_decay=weight_decay != 0, momentum=momentum > 0, centered=centered)
    apply_run(RMSPROP, flags, param, grad, square_avg, momentum_buffer, grad_avg,
              (lr, alpha, eps, weight_decay, momentum), _count(1.0))


def adagrad_step(param, grad, state_sum, lr, lr_decay, weight_decay, eps, maximize, step):
    """g := ±grad + wd*param; s := s + g*g; param -= lr / (1 + (step-1)*lr_decay) * g / (sqrt(s) + eps)."""
    flags = _bits(maximize=maximize, weight_decay=weight_decay != 0)
    apply_run(ADAGRAD, flags, param, grad, state_sum, None, None, (lr, lr_decay, weight_decay, eps), _count(step))


def adadelta_step(param, grad, square_avg, acc_delta, lr, rho, eps, weight_decay, maximize):
    """g := ±grad + wd*param; v := rho*v + (1-rho)*g*g; d := sqrt(u + eps)/sqrt(v + eps)*g;
    u := rho*u + (1-rho)*d*d; param -= lr*d."""
    flags = _bits(maximize=maximize, weight_decay=weight_decay != 0)
    apply_run(ADADELTA, flags, param, grad, square_avg, acc_delta, None, (lr, rho, eps, weight_decay), _count(1.0))


def sklearn_sgd_step(param, grad, velocity, lr, momentum, nesterov):
    """scikit-learn's SGDOptimizer: v := momentum*v - lr*grad; param += nesterov ? momentum*v - lr*grad : v."""
    apply_run(SK_SGD, NESTEROV if nesterov else 0, param, grad, velocity, None, None, (lr, momentum),
              np.empty(0, np.float32))


def sklearn_adam_step(param, grad, m, v, lr, beta1, beta2, eps, step):
    """scikit-learn's AdamOptimizer at time step t = step: m := b1*m + (1-b1)*grad; v := b2*v + (1-b2)*grad^2;
    param += -(lr*sqrt(1 - b2^t)/(1 - b1^t)) * m / (sqrt(v) + eps)."""
    apply_run(SK_ADAM, 0, param, grad, m, v, None, (lr, beta1, beta2, eps), _count(step))
