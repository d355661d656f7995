# C-level fused-run protocol of fastnn's optimizers (implemented in _optim.pyx).
#
# An OptRun is one fused optimizer update of one contiguous run of parameters: n elements of param,
# grad and of each state buffer the kind and flags use, all of one dtype (float32 for
# run_update_f32, float64 for run_update_f64), C-contiguous, element i of every buffer belonging to
# the same scalar parameter. Every per-step scalar (bias corrections, decayed lr, 1 - beta, ...) is
# precomputed in Python doubles and stored in sc; the kernel rounds each to the buffers' dtype, as
# torch does. Optimizer._fused_runs() returns the Python side of each run as a tuple
# (kind, flags, param, grad, s0, s1, s2, scalars), with length-0 arrays for unused state buffers.
#
# flags: OR of the OPT_* bits below that apply to the kind (other bits are ignored). Set bits
# exactly mirror torch's branches: OPT_WEIGHT_DECAY when weight_decay != 0, OPT_MOMENTUM when
# SGD's momentum != 0 / RMSprop's momentum > 0.
#
# kind          state buffers (NULL when unused)                 sc[0..]
# OPT_SGD       s0 momentum_buffer (iff OPT_MOMENTUM)            lr, momentum, 1 - dampening, weight_decay
# OPT_ADAM      s0 exp_avg, s1 exp_avg_sq,                       1 - beta1, beta2, 1 - beta2, eps, weight_decay,
#               s2 max_exp_avg_sq (iff OPT_AMSGRAD)              1 - lr*weight_decay, lr / (1 - beta1^t),
#                                                                sqrt(1 - beta2^t)
# OPT_RMSPROP   s0 square_avg, s1 momentum_buffer (iff           lr, alpha, 1 - alpha, eps, weight_decay, momentum
#               OPT_MOMENTUM), s2 grad_avg (iff OPT_CENTERED)
# OPT_ADAGRAD   s0 sum                                           lr / (1 + (t - 1)*lr_decay), weight_decay, eps
# OPT_ADADELTA  s0 square_avg, s1 acc_delta                      lr, rho, 1 - rho, eps, weight_decay
#
# (t is the run's per-parameter step count after this step's increment; unlisted sc entries are
# ignored.) Flags used per kind:
#   SGD: MAXIMIZE, WEIGHT_DECAY, MOMENTUM, NESTEROV, FIRST_STEP (the run's momentum buffers are new:
#        buffer := g, no dampening); Adam/AdamW: MAXIMIZE, WEIGHT_DECAY, AMSGRAD, DECOUPLED (AdamW's
#        param *= 1 - lr*wd instead of g += wd*param); RMSprop: MAXIMIZE, WEIGHT_DECAY, MOMENTUM,
#        CENTERED; Adagrad and Adadelta: MAXIMIZE, WEIGHT_DECAY.
#
# The update functions are thread-safe for disjoint runs, never allocate, and use OpenMP threads
# above the module's THRESHOLD elements; they do not check lengths or pointers (apply_run does).

cdef enum:
    OPT_SGD = 0
    OPT_ADAM = 1
    OPT_RMSPROP = 2
    OPT_ADAGRAD = 3
    OPT_ADADELTA = 4

cdef enum:
    OPT_MAXIMIZE = 1
    OPT_WEIGHT_DECAY = 2
    OPT_MOMENTUM = 4
    OPT_NESTEROV = 8
    OPT_FIRST_STEP = 16
    OPT_AMSGRAD = 32
    OPT_DECOUPLED = 64
    OPT_CENTERED = 128

ctypedef struct OptRun:          # one fused update of one contiguous run; all per-step scalars precomputed
    int kind                     # OPT_SGD ... OPT_ADADELTA
    int flags                    # OR of OPT_MAXIMIZE ... OPT_CENTERED (see above)
    Py_ssize_t n                 # elements in the run
    void* param                  # n elements, updated in place
    void* grad                   # n elements, read only
    void* s0                     # state buffers (NULL when unused), meaning per kind above
    void* s1
    void* s2
    double sc[8]                 # per-step scalars in the kernel's order, per kind above

cdef void run_update_f32(const OptRun* r) noexcept nogil
cdef void run_update_f64(const OptRun* r) noexcept nogil
