"""NumPy twins of fastnn._kernels._optim (same signatures, same in-place effects).

Each function updates a 1-D run of parameters in place, plus the matching runs of the optimizer
state, following NUMERICS 1.1 (SGD) and 1.2 (Adam/AdamW) in torch's operation order, in the
arrays' own dtype. Unused optional state buffers may be length-0 dummies.
"""

from __future__ import annotations

import math

import numpy as np


def sgd_step(param, grad, momentum_buffer, lr, momentum, dampening, weight_decay, nesterov, maximize,
             first_step):
    """g := ±grad + wd*param; b := first_step ? g : mu*b + (1-dampening)*g; param -= lr*(nesterov ? g + mu*b : b)."""
    g = -grad if maximize else grad
    if weight_decay != 0:
        g = g + weight_decay * param
    if momentum != 0:
        if first_step:
            momentum_buffer[...] = g
        else:
            momentum_buffer *= momentum
            momentum_buffer += (1 - dampening) * g
        g = g + momentum * momentum_buffer if nesterov else momentum_buffer
    param -= lr * g


def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
              decoupled, amsgrad, maximize, bias_correction1, bias_correction2):
    """g := ±grad (+ wd*param, or param *= 1 - lr*wd if decoupled); m := b1*m + (1-b1)*g; v := b2*v + (1-b2)*g*g;
    param -= lr/bc1 * m / (sqrt(amsgrad ? vmax := max(vmax, v) : v) / sqrt(bc2) + eps)."""
    g = -grad if maximize else grad
    if weight_decay != 0:
        if decoupled:
            param *= 1 - lr * weight_decay
        else:
            g = g + weight_decay * param
    exp_avg *= beta1
    exp_avg += (1 - beta1) * g
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * g * g
    v = exp_avg_sq
    if amsgrad:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        v = max_exp_avg_sq
    step_size = lr / bias_correction1
    denom = np.sqrt(v) / math.sqrt(bias_correction2) + eps
    param -= step_size * exp_avg / denom
