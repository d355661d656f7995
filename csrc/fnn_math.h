/* fnn_math.h - float32 exp and tanh that GCC can vectorise.
 *
 * glibc's expf/tanhf are scalar calls (expf ~4 ns, tanhf ~18 ns an element here), so a loop
 * over them cannot use SIMD. These are branch-free: every path is computed and the answer
 * is selected, and the power of two is built from bits, so GCC vectorises a loop that calls
 * them (SSE2 and up; needs -fno-trapping-math, set in setup.py).
 *
 * fnn_expf: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, and the Cephes expf polynomial
 * (about 1 ulp); 2^n is applied in two halves so that subnormal results and overflow to inf
 * come out right. exp(NaN) = NaN, exp(-inf) = 0, exp(inf) = inf.
 * fnn_tanhf: the Cephes tanhf odd polynomial for |x| < 0.625, else 1 - 2/(exp(2|x|) + 1),
 * with the sign of x (tanh(+-0) = +-0, tanh(+-inf) = +-1, NaN -> NaN). About 2 ulp.
 * fastnn's tests measure both against double-precision libm over all float magnitudes. */
#ifndef FNN_MATH_H
#define FNN_MATH_H

#include <math.h>
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

#endif
