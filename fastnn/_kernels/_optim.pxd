# C-level fused-run protocol of fastnn's optimizers (implemented in _optim.pyx).
#
# An OptRun is one fused optimizer update of one contiguous run of parameters: n elements of param,
# grad and of each state buffer the kind and flags use, all of one dtype (float32 for
# run_update_f32, float64 for run_update_f64), C-contiguous, element i of every buffer belonging to
# the same scalar parameter. It carries the group's hyper-parameters (hp) and a pointer to the run's
# step counts (one float32 per parameter of the run, torch's float32 step tensors). run_update_*
# first calls step_scalars, which advances every count, t := float32(t + 1), and fills sc from hp
# and the run's first count t (double arithmetic, libm's pow, exactly as Python's ** computes it);
# then the kernel reads sc, rounding each scalar to the buffers' dtype once, as torch does; finally
# OPT_FIRST_STEP is cleared, so the same OptRun can be applied again for the next step.
# Optimizer._fused_runs() returns the Python side of each run as a tuple
# (kind, flags, param, grad, s0, s1, s2, hp, steps), with length-0 arrays for unused state buffers
# and for SGD's steps.
#
# flags: OR of the OPT_* bits below that apply to the kind (other bits are ignored). Set bits
# exactly mirror torch's branches: OPT_WEIGHT_DECAY when weight_decay != 0, OPT_MOMENTUM when
# SGD's momentum != 0 / RMSprop's momentum > 0.
#
# kind          hp[0..]                        state buffers (NULL when unused)      sc[0..] (step_scalars)
# OPT_SGD       lr, momentum, dampening,       s0 momentum_buffer (iff               lr, momentum, 1 - dampening,
#               weight_decay                   OPT_MOMENTUM); no step counts         weight_decay
# OPT_ADAM      lr, beta1, beta2, eps,         s0 exp_avg, s1 exp_avg_sq,            1 - beta1, beta2, 1 - beta2, eps,
#               weight_decay                   s2 max_exp_avg_sq (iff OPT_AMSGRAD)   weight_decay, 1 - lr*weight_decay,
#                                                                                    lr / (1 - beta1^t),
#                                                                                    (1 - beta2^t)^0.5
# OPT_RMSPROP   lr, alpha, eps, weight_decay,  s0 square_avg, s1 momentum_buffer     lr, alpha, 1 - alpha, eps,
#               momentum                       (iff OPT_MOMENTUM), s2 grad_avg       weight_decay, momentum
#                                              (iff OPT_CENTERED)
# OPT_ADAGRAD   lr, lr_decay, weight_decay,    s0 sum                                lr / (1 + (t - 1)*lr_decay),
#               eps                                                                  weight_decay, eps
# OPT_ADADELTA  lr, rho, eps, weight_decay     s0 square_avg, s1 acc_delta           lr, rho, 1 - rho, eps, weight_decay
# OPT_SK_SGD    lr, momentum                   s0 velocity (always); no step counts  lr, momentum
# OPT_SK_ADAM   lr, beta1, beta2, eps          s0 m (ms), s1 v (vs)                  beta1, 1 - beta1, beta2, 1 - beta2,
#                                                                                    -(lr * sqrt(1 - beta2^t) / (1 - beta1^t)),
#                                                                                    eps
#
# The OPT_SK_* kinds are scikit-learn's MLP optimizers (sklearn/neural_network/_stochastic_optimizers.py,
# docs/numerics.md section 11.2), not torch's: SK_SGD v := momentum*v - lr*g,
# param += nesterov ? momentum*v - lr*g : v; SK_ADAM m := b1*m + (1-b1)*g, v := b2*v + (1-b2)*(g*g),
# param += (-lr_t*m) / (sqrt(v) + eps), in NumPy's operation order; float32 rounds as NumPy does there
# (SK_ADAM's update in double - NumPy's float64 lr_t promotes it - then rounded into the float32 param).
#
# (hp in torch's constructor order; unlisted hp and sc entries are ignored. Within a run all counts
# are equal where sc depends on t: the optimizers split runs there.) Flags used per kind:
#   SGD: MAXIMIZE, WEIGHT_DECAY, MOMENTUM, NESTEROV, FIRST_STEP (the run's momentum buffers are new:
#        buffer := g, no dampening); Adam/AdamW: MAXIMIZE, WEIGHT_DECAY, AMSGRAD, DECOUPLED (AdamW's
#        param *= 1 - lr*wd instead of g += wd*param); RMSprop: MAXIMIZE, WEIGHT_DECAY, MOMENTUM,
#        CENTERED; Adagrad and Adadelta: MAXIMIZE, WEIGHT_DECAY; SK_SGD: NESTEROV; SK_ADAM: none.
#
# The update functions are thread-safe for disjoint runs, never allocate, and use OpenMP threads
# above the module's THRESHOLD elements; they do not check lengths or pointers (apply_run does).

cdef enum:
    OPT_SGD = 0
    OPT_ADAM = 1
    OPT_RMSPROP = 2
    OPT_ADAGRAD = 3
    OPT_ADADELTA = 4
    OPT_SK_SGD = 5
    OPT_SK_ADAM = 6

cdef enum:
    OPT_MAXIMIZE = 1
    OPT_WEIGHT_DECAY = 2
    OPT_MOMENTUM = 4
    OPT_NESTEROV = 8
    OPT_FIRST_STEP = 16
    OPT_AMSGRAD = 32
    OPT_DECOUPLED = 64
    OPT_CENTERED = 128

ctypedef struct OptRun:          # one fused update of one contiguous run, re-applicable step after step
    int kind                     # OPT_SGD ... OPT_SK_ADAM
    int flags                    # OR of OPT_MAXIMIZE ... OPT_CENTERED (see above); FIRST_STEP cleared by the update
    Py_ssize_t n                 # elements in the run
    void* param                  # n elements, updated in place
    void* grad                   # n elements, read only
    void* s0                     # state buffers (NULL when unused), meaning per kind above
    void* s1
    void* s2
    float* steps                 # the run's step counts, advanced in place (NULL for SGD and SK_SGD)
    Py_ssize_t nsteps            # how many (the run's parameters; 0 for SGD and SK_SGD)
    double hp[8]                 # hyper-parameters in the kind's order (above)
    double sc[8]                 # per-step scalars, written by step_scalars (above)

cdef void run_update_f32(OptRun* r) noexcept nogil
cdef void run_update_f64(OptRun* r) noexcept nogil
