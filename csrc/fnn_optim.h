/* fnn_optim.h - Adam/AdamW's element update in AVX2 + FMA, and scikit-learn's Adam in AVX2 (no FMA), chosen at
 * run time (fastnn._kernels._optim).
 *
 * The wheel is built for x86-64's SSE2 baseline, where Adam's sqrt and two divisions per element bind
 * the loop (4 lanes). These functions carry __attribute__((target("avx2,fma"))) and run only when
 * fnn_optim_avx2_available() says the CPU has AVX2 and FMA; _optim's Cython loop is the fallback.
 *
 * Same operations, in the same order, as _optim.pyx's _adam (see its design note), with one change:
 * the lerp of exp_avg is one FMA, fma(c, g - m, base), exactly torch's vectorised lerp (lerp_vec:
 * vec::fmadd(coeff, end - self, base)), where the SSE2 loop rounds the product and the sum separately.
 * Every other multiply and add is rounded on its own: this header switches floating-point contraction
 * off, so the compiler may not fuse them behind our back. Flags pick values only (blends), never stores.
 * The last partial vector of a span uses masked loads and stores, with the same lane arithmetic, so an
 * element's result does not depend on where a span starts or ends.
 */
#ifndef FNN_OPTIM_H
#define FNN_OPTIM_H

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>

#if defined(__clang__)
#define FNN_NO_CONTRACT _Pragma("clang fp contract(off)")
#else
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#define FNN_NO_CONTRACT
#endif

static int fnn_optim_avx2_available(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
}

/* One template, two types: T scalar, V vector, L lanes, P intrinsic suffix, MASK(n) lane mask. */
#define FNN_ADAM_AVX2(NAME, T, V, L, P, SETMASK)                                                           \
__attribute__((target("avx2,fma"))) static inline void NAME##_lanes(                                      \
        V* p, V g, V* m, V* v, V* vmax, int coupled, int decoupled, int amsgrad, V sign, V c1, V small_m,    \
        V beta2, V omb2, V eps, V wd, V decay, V step, V bc2s) {                                           \
    FNN_NO_CONTRACT                                                                                        \
    g = _mm256_xor_##P(g, sign);                                    /* maximize: -grad */                 \
    if (coupled) g = _mm256_add_##P(g, _mm256_mul_##P(wd, *p));     /* g + wd*p */                        \
    if (decoupled) *p = _mm256_mul_##P(*p, decay);                  /* p * (1 - lr*wd) */                 \
    const V base = _mm256_blendv_##P(g, *m, small_m);               /* |w| < 0.5: m, else g */            \
    *m = _mm256_fmadd_##P(c1, _mm256_sub_##P(g, *m), base);         /* torch's lerp_vec */                \
    *v = _mm256_add_##P(_mm256_mul_##P(beta2, *v), _mm256_mul_##P(_mm256_mul_##P(omb2, g), g));            \
    V vv = *v;                                                                                             \
    if (amsgrad) { *vmax = _mm256_max_##P(*vmax, *v); vv = *vmax; } /* vmax > v ? vmax : v */             \
    const V d = _mm256_add_##P(_mm256_div_##P(_mm256_sqrt_##P(vv), bc2s), eps);                           \
    *p = _mm256_sub_##P(*p, _mm256_div_##P(_mm256_mul_##P(step, *m), d));                                 \
}                                                                                                          \
__attribute__((target("avx2,fma"))) static void NAME(                                                     \
        long lo, long hi, int maximize, int coupled, int decoupled, int small, int amsgrad,                \
        T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq,                             \
        T w1, T beta2_, T omb2_, T eps_, T wd_, T decay_, T step_, T bc2s_) {                              \
    const V sign = _mm256_set1_##P(maximize ? (T)-0.0 : (T)0.0);                                           \
    const V c1 = _mm256_set1_##P(small ? w1 : w1 - 1);                                                     \
    const V small_m = _mm256_castsi256_##P(_mm256_set1_epi32(small ? -1 : 0));                             \
    const V beta2 = _mm256_set1_##P(beta2_), omb2 = _mm256_set1_##P(omb2_), eps = _mm256_set1_##P(eps_);    \
    const V wd = _mm256_set1_##P(wd_), decay = _mm256_set1_##P(decay_), step = _mm256_set1_##P(step_);      \
    const V bc2s = _mm256_set1_##P(bc2s_);                                                                 \
    V zero = _mm256_setzero_##P();                                                                         \
    long i = lo;                                                                                           \
    if (amsgrad) {                                                                                         \
        for (; i + L <= hi; i += L) {                                                                      \
            V p = _mm256_loadu_##P(param + i), m = _mm256_loadu_##P(exp_avg + i);                         \
            V v = _mm256_loadu_##P(exp_avg_sq + i), vmax = _mm256_loadu_##P(max_exp_avg_sq + i);           \
            NAME##_lanes(&p, _mm256_loadu_##P(grad + i), &m, &v, &vmax, coupled, decoupled, 1, sign, c1,    \
                         small_m, beta2, omb2, eps, wd, decay, step, bc2s);                                \
            _mm256_storeu_##P(exp_avg + i, m); _mm256_storeu_##P(exp_avg_sq + i, v);                       \
            _mm256_storeu_##P(max_exp_avg_sq + i, vmax); _mm256_storeu_##P(param + i, p);                  \
        }                                                                                                  \
    } else {                                                                                               \
        for (; i + L <= hi; i += L) {                                                                      \
            V p = _mm256_loadu_##P(param + i), m = _mm256_loadu_##P(exp_avg + i);                         \
            V v = _mm256_loadu_##P(exp_avg_sq + i);                                                        \
            NAME##_lanes(&p, _mm256_loadu_##P(grad + i), &m, &v, &zero, coupled, decoupled, 0, sign, c1,    \
                         small_m, beta2, omb2, eps, wd, decay, step, bc2s);                                \
            _mm256_storeu_##P(exp_avg + i, m); _mm256_storeu_##P(exp_avg_sq + i, v);                       \
            _mm256_storeu_##P(param + i, p);                                                               \
        }                                                                                                  \
    }                                                                                                      \
    if (i < hi) {                                                                                          \
        const __m256i k = SETMASK((int)(hi - i));                                                          \
        V p = _mm256_maskload_##P(param + i, k), m = _mm256_maskload_##P(exp_avg + i, k);                  \
        V v = _mm256_maskload_##P(exp_avg_sq + i, k);                                                      \
        V vmax = amsgrad ? _mm256_maskload_##P(max_exp_avg_sq + i, k) : zero;                              \
        NAME##_lanes(&p, _mm256_maskload_##P(grad + i, k), &m, &v, &vmax, coupled, decoupled, amsgrad,      \
                     sign, c1, small_m, beta2, omb2, eps, wd, decay, step, bc2s);                          \
        _mm256_maskstore_##P(exp_avg + i, k, m); _mm256_maskstore_##P(exp_avg_sq + i, k, v);               \
        if (amsgrad) _mm256_maskstore_##P(max_exp_avg_sq + i, k, vmax);                                    \
        _mm256_maskstore_##P(param + i, k, p);                                                             \
    }                                                                                                      \
}

__attribute__((target("avx2"))) static inline __m256i fnn_optim_mask8(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
__attribute__((target("avx2"))) static inline __m256i fnn_optim_mask4(int n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}

FNN_ADAM_AVX2(fnn_adam_avx2_f32, float, __m256, 8, ps, fnn_optim_mask8)
FNN_ADAM_AVX2(fnn_adam_avx2_f64, double, __m256d, 4, pd, fnn_optim_mask4)

/* scikit-learn's Adam (_optim's SK_ADAM, docs/numerics.md section 11.2): _optim.pyx's _sk_adam loop in AVX2
 * intrinsics WITHOUT FMA (target "avx2" only, and contraction off above), so that every lane rounds every
 * operation exactly as the scalar loop and as NumPy does in sklearn's expression: the same bits, 4 doubles (8
 * floats) at a time. The float32 update runs in double, as in sklearn (see _optim.pyx); GCC did not vectorise
 * that mixed-precision loop on its own (79,510 floats: 67 us, against 52 us with these intrinsics; the
 * double division and the float sqrt share the divider, which binds both). */
__attribute__((target("avx2"))) static void fnn_sk_adam_avx2_f64(
        long lo, long hi, double* restrict param, const double* restrict grad, double* restrict ms,
        double* restrict vs, double b1, double omb1, double b2, double omb2, double nlr, double eps) {
    const __m256d B1 = _mm256_set1_pd(b1), OMB1 = _mm256_set1_pd(omb1), B2 = _mm256_set1_pd(b2);
    const __m256d OMB2 = _mm256_set1_pd(omb2), NLR = _mm256_set1_pd(nlr), EPS = _mm256_set1_pd(eps);
    long i = lo;
    for (; i + 4 <= hi; i += 4) {
        const __m256d g = _mm256_loadu_pd(grad + i);
        const __m256d m = _mm256_add_pd(_mm256_mul_pd(B1, _mm256_loadu_pd(ms + i)), _mm256_mul_pd(OMB1, g));
        const __m256d v = _mm256_add_pd(_mm256_mul_pd(B2, _mm256_loadu_pd(vs + i)),
                                        _mm256_mul_pd(OMB2, _mm256_mul_pd(g, g)));
        _mm256_storeu_pd(ms + i, m);
        _mm256_storeu_pd(vs + i, v);
        const __m256d q = _mm256_div_pd(_mm256_mul_pd(NLR, m), _mm256_add_pd(_mm256_sqrt_pd(v), EPS));
        _mm256_storeu_pd(param + i, _mm256_add_pd(_mm256_loadu_pd(param + i), q));
    }
    for (; i < hi; i++) {   /* the tail: the same operations, one lane */
        const double g = grad[i];
        const double m = b1 * ms[i] + omb1 * g;
        const double v = b2 * vs[i] + omb2 * (g * g);
        ms[i] = m;
        vs[i] = v;
        param[i] = param[i] + (nlr * m) / (__builtin_sqrt(v) + eps);
    }
}
/* float32: m, v, sqrt(v) + eps in float (NumPy's weak Python scalars keep sklearn's expressions float32); the
 * update -lr_t * m / (...) and param + update in double (lr_t is a NumPy float64), rounded back to float once. */
__attribute__((target("avx2"))) static inline __m256d fnn_sk_adam_upd_f64(__m128 p, __m128 m, __m128 d, __m256d nlr) {
    const __m256d q = _mm256_div_pd(_mm256_mul_pd(nlr, _mm256_cvtps_pd(m)), _mm256_cvtps_pd(d));
    return _mm256_add_pd(_mm256_cvtps_pd(p), q);
}
__attribute__((target("avx2"))) static void fnn_sk_adam_avx2_f32(
        long lo, long hi, float* restrict param, const float* restrict grad, float* restrict ms,
        float* restrict vs, float b1, float omb1, float b2, float omb2, double nlr, float eps) {
    const __m256 B1 = _mm256_set1_ps(b1), OMB1 = _mm256_set1_ps(omb1), B2 = _mm256_set1_ps(b2);
    const __m256 OMB2 = _mm256_set1_ps(omb2), EPS = _mm256_set1_ps(eps);
    const __m256d NLR = _mm256_set1_pd(nlr);
    long i = lo;
    for (; i + 8 <= hi; i += 8) {
        const __m256 g = _mm256_loadu_ps(grad + i);
        const __m256 m = _mm256_add_ps(_mm256_mul_ps(B1, _mm256_loadu_ps(ms + i)), _mm256_mul_ps(OMB1, g));
        const __m256 v = _mm256_add_ps(_mm256_mul_ps(B2, _mm256_loadu_ps(vs + i)),
                                       _mm256_mul_ps(OMB2, _mm256_mul_ps(g, g)));
        _mm256_storeu_ps(ms + i, m);
        _mm256_storeu_ps(vs + i, v);
        const __m256 d = _mm256_add_ps(_mm256_sqrt_ps(v), EPS);
        const __m256 p = _mm256_loadu_ps(param + i);
        const __m256d lo4 = fnn_sk_adam_upd_f64(_mm256_castps256_ps128(p), _mm256_castps256_ps128(m),
                                                _mm256_castps256_ps128(d), NLR);
        const __m256d hi4 = fnn_sk_adam_upd_f64(_mm256_extractf128_ps(p, 1), _mm256_extractf128_ps(m, 1),
                                                _mm256_extractf128_ps(d, 1), NLR);
        _mm256_storeu_ps(param + i, _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(lo4)),
                                                         _mm256_cvtpd_ps(hi4), 1));
    }
    for (; i < hi; i++) {   /* the tail: the same operations, one lane */
        const float g = grad[i];
        const float m = b1 * ms[i] + omb1 * g;
        const float v = b2 * vs[i] + omb2 * (g * g);
        ms[i] = m;
        vs[i] = v;
        param[i] = (float)((double)param[i] + (nlr * (double)m) / (double)(__builtin_sqrtf(v) + eps));
    }
}

#if !defined(__clang__)
#pragma GCC pop_options
#endif

#else   /* not x86-64 with GCC/Clang: never available */

static int fnn_optim_avx2_available(void) { return 0; }
static void fnn_adam_avx2_f32(long lo, long hi, int maximize, int coupled, int decoupled, int small, int amsgrad,
                              float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
                              float* max_exp_avg_sq, float w1, float beta2, float omb2, float eps, float wd,
                              float decay, float step, float bc2s) {
    (void)lo; (void)hi; (void)maximize; (void)coupled; (void)decoupled; (void)small; (void)amsgrad; (void)param;
    (void)grad; (void)exp_avg; (void)exp_avg_sq; (void)max_exp_avg_sq; (void)w1; (void)beta2; (void)omb2;
    (void)eps; (void)wd; (void)decay; (void)step; (void)bc2s;
}
static void fnn_adam_avx2_f64(long lo, long hi, int maximize, int coupled, int decoupled, int small, int amsgrad,
                              double* param, const double* grad, double* exp_avg, double* exp_avg_sq,
                              double* max_exp_avg_sq, double w1, double beta2, double omb2, double eps, double wd,
                              double decay, double step, double bc2s) {
    (void)lo; (void)hi; (void)maximize; (void)coupled; (void)decoupled; (void)small; (void)amsgrad; (void)param;
    (void)grad; (void)exp_avg; (void)exp_avg_sq; (void)max_exp_avg_sq; (void)w1; (void)beta2; (void)omb2;
    (void)eps; (void)wd; (void)decay; (void)step; (void)bc2s;
}

static void fnn_sk_adam_avx2_f64(long lo, long hi, double* param, const double* grad, double* ms, double* vs,
                                 double b1, double omb1, double b2, double omb2, double nlr, double eps) {
    (void)lo; (void)hi; (void)param; (void)grad; (void)ms; (void)vs; (void)b1; (void)omb1; (void)b2; (void)omb2;
    (void)nlr; (void)eps;
}
static void fnn_sk_adam_avx2_f32(long lo, long hi, float* param, const float* grad, float* ms, float* vs,
                                 float b1, float omb1, float b2, float omb2, double nlr, float eps) {
    (void)lo; (void)hi; (void)param; (void)grad; (void)ms; (void)vs; (void)b1; (void)omb1; (void)b2; (void)omb2;
    (void)nlr; (void)eps;
}

#endif
#endif
