/* fnn_math.h - float32 exp, expm1, tanh and erf that GCC can vectorise.
 *
 * glibc's expf/expm1f/tanhf/erff are scalar calls (~4-18 ns an element here), so a loop
 * over them cannot use SIMD. These are branch-free: every path is computed and the answer
 * is selected, and the power of two is built from bits, so GCC vectorises a loop that calls
 * them (SSE2 and up; needs -fno-trapping-math, set in setup.py).
 *
 * fnn_expf: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, and the Cephes expf polynomial
 * (about 1 ulp); 2^n is applied in two halves so that subnormal results and overflow to inf
 * come out right. exp(NaN) = NaN, exp(-inf) = 0, exp(inf) = inf.
 * fnn_tanhf: the Cephes tanhf odd polynomial for |x| < 0.625, else 1 - 2/(exp(2|x|) + 1),
 * with the sign of x (tanh(+-0) = +-0, tanh(+-inf) = +-1, NaN -> NaN). About 2 ulp.
 * fastnn's tests measure both against double-precision libm over all float magnitudes.
 *
 * fnn_exp (double; scikit-learn's softmax loss): fdlibm's e_exp.c algorithm, branch-free. x = n ln2 + hi - lo
 * with ln2 in two parts (hi exact), exp(r) = 1 - ((lo - r c/(2 - c)) - hi) with c = r - r^2 P(r^2), P fdlibm's
 * degree-5 Remez polynomial; 2^n applied in two halves. Under 1 ulp (0.9 measured against long double over
 * 20 million points; glibc's exp: 0.51), subnormal results, overflow, +-inf and NaN as libm. It is written
 * without fused multiply-adds (contraction is off for it), so SSE2 and the AVX2 loop below, which are the same
 * operations lane by lane, give the same bits on every x86-64 CPU; 2.7x glibc's exp per element in a loop. */
#ifndef FNN_MATH_H
#define FNN_MATH_H

#include <math.h>
#include "fnn_cpu.h"
#include <stdint.h>
#include <string.h>

static inline float fnn_pow2f(int32_t k)  /* 2^k for k in [-126, 127] */
{
    int32_t bits = (k + 127) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline float fnn_expf(float x)
{
    float xc = x < -104.0f ? -104.0f : (x > 89.0f ? 89.0f : x);   /* exp(-104) = 0, exp(89) = inf in float */
    float t = xc * 1.44269504088896341f + 12582912.0f;             /* round(x log2 e) via 1.5 * 2^23 */
    float n = t - 12582912.0f;
    float r = xc - n * 0.693359375f;                                /* ln 2, split in two (Cody-Waite) */
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    int32_t k = (int32_t)n;                                         /* in [-150, 129] */
    int32_t k1 = k >> 1;
    float y = p * fnn_pow2f(k1) * fnn_pow2f(k - k1);
    return x != x ? x : y;                                          /* NaN passes through */
}

static inline float fnn_tanhf(float x)
{
    float ax = x < 0 ? -x : x;
    float z = x * x;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z
                    + 1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
    float big = 1.0f - 2.0f / (fnn_expf(2.0f * ax) + 1.0f);
    float y = copysignf(ax < 0.625f ? small : big, x);             /* also keeps tanh(-0) = -0 */
    return x != x ? x : y;
}

/* fnn_expm1f: |x| < 0.5: x R(x), R a degree-6 least-squares Chebyshev fit of expm1(x)/x made
 * for fastnn (relative error 3.8e-9 in exact arithmetic); otherwise fnn_expf(x) - 1, whose
 * result is at least 0.39 in magnitude there. About 2 ulp. */
static inline float fnn_expm1f(float x)
{
    float r = 1.997950636e-04f;
    r = r * x + 1.399779199e-03f;
    r = r * x + 8.333117095e-03f;
    r = r * x + 4.166530366e-02f;
    r = r * x + 1.666666775e-01f;
    r = r * x + 5.000000426e-01f;
    r = r * x + 1.0f;
    float small = x * r;
    float big = fnn_expf(x) - 1.0f;
    float ax = x < 0 ? -x : x;
    return ax < 0.5f ? small : big;                                 /* NaN: big is NaN */
}

/* fnn_erff: |x| < 1: x P(x^2); 1 <= |x| < 4: 1 - exp(-x^2) Q(1/|x|), where Q approximates
 * erfcx(x) = exp(x^2) erfc(x); |x| >= 4: +-1 (erfc(4) < 2e-8 is below half an ulp of 1).
 * P (degree 6 in x^2) and Q (degree 9 in 1/|x|) are least-squares Chebyshev fits made for
 * fastnn (relative error 1.4e-9 and 3.1e-8 in exact arithmetic); float32 evaluation keeps
 * the result within about 2 ulp. erf(+-0) = +-0, erf(+-inf) = +-1, NaN -> NaN. */
static inline float fnn_erff(float x)
{
    float ax = x < 0 ? -x : x;
    float z = x * x;
    float p = 7.882500382e-05f;
    p = p * z - 8.018858995e-04f;
    p = p * z + 5.189312810e-03f;
    p = p * z - 2.685432954e-02f;
    p = p * z + 1.128359749e-01f;
    p = p * z - 3.761262691e-01f;
    p = p * z + 1.128379166e+00f;
    float small = x * p;
    float ab = ax < 1.0f ? 1.0f : (ax > 4.0f ? 4.0f : ax);        /* the large branch's domain */
    float u = 1.0f / ab;
    float q = 2.602572314e-02f;
    q = q * u - 1.535019039e-01f;
    q = q * u + 3.745980240e-01f;
    q = q * u - 4.490048258e-01f;
    q = q * u + 1.622374772e-01f;
    q = q * u + 2.730871113e-01f;
    q = q * u - 3.913706328e-01f;
    q = q * u + 2.404867047e-02f;
    q = q * u + 5.613180419e-01f;
    q = q * u + 1.458936411e-04f;
    float big = 1.0f - fnn_expf(-ab * ab) * q;
    big = ax > 4.0f ? 1.0f : big;
    float y = ax < 1.0f ? small : copysignf(big, x);
    return x != x ? x : y;
}

/* ---- double exp -------------------------------------------------------------------------------------- */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
#if defined(__clang__)
#define FNN_MATH_NO_CONTRACT _Pragma("clang fp contract(off)")
#else
#define FNN_MATH_NO_CONTRACT
#endif

static inline double fnn_pow2(int64_t k)  /* 2^k for k in [-1022, 1023] */
{
    int64_t bits = (k + 1023) * ((int64_t)1 << 52);
    double f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline double fnn_exp(double x)
{
    FNN_MATH_NO_CONTRACT
    double xc = x < -746.0 ? -746.0 : (x > 710.0 ? 710.0 : x);      /* exp(-746) = 0, exp(710) = inf */
    double t = xc * 1.44269504088896338700 + 6755399441055744.0;    /* round(x log2 e) via 1.5 * 2^52 */
    double n = t - 6755399441055744.0;
    double hi = xc - n * 6.93147180369123816490e-01;                 /* ln 2's leading 32 bits: exact */
    double lo = n * 1.90821492927058770002e-10;
    double r = hi - lo;
    double rr = r * r;
    double c = r - rr * (1.66666666666666019037e-01 + rr * (-2.77777777770155933842e-03 + rr * (
               6.61375632143793436117e-05 + rr * (-1.65339022054652515390e-06 + rr * 4.13813679705723846039e-08))));
    double e = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi);
    int64_t tb;
    memcpy(&tb, &t, sizeof tb);
    int64_t k = tb - (int64_t)0x4338000000000000LL;                  /* n, |n| <= 1077 */
    int64_t k1 = (int64_t)((uint64_t)(k + 2048) >> 1) - 1024;       /* floor(n / 2) with SSE2's shifts */
    double y = e * fnn_pow2(k1) * fnn_pow2(k - k1);
    return x != x ? x : y;                                          /* NaN passes through */
}

/* x[i] := fnn_exp(x[i]), i < n: scikit-learn's softmax rows, a block at a time. The loop is written once and
 * compiled twice on x86-64, for the SSE2 baseline and for AVX2 (no FMA: the same bits), picked at run time. */
#define FNN_EXP_LOOP for (long i = 0; i < n; i++) x[i] = fnn_exp(x[i]);
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
__attribute__((target("avx2"))) static void fnn_exp_inplace_avx2(long n, double* restrict x) { FNN_EXP_LOOP }
static void fnn_exp_inplace_base(long n, double* restrict x) { FNN_EXP_LOOP }
static inline void fnn_exp_inplace(long n, double* x)
{
    if (fnn_cpu_avx2())
        fnn_exp_inplace_avx2(n, x);
    else
        fnn_exp_inplace_base(n, x);
}
#else
static void fnn_exp_inplace_base(long n, double* restrict x) { FNN_EXP_LOOP }
static inline void fnn_exp_inplace(long n, double* x) { fnn_exp_inplace_base(n, x); }
#endif

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

#endif
