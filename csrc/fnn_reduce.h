/* fnn_reduce.h - sums accumulated in double: a Dense layer's bias gradient (column sums) and the sum of squared
 * weights (scikit-learn's L2 term), in AVX2 where the CPU has it, with the bits of the plain loops.
 *
 * The wheel is built for x86-64's SSE2 baseline. There GCC keeps _dense's per-column double accumulators in
 * memory, one row at a time, and the sum of squares in four add chains: both wait on the adder's latency. The
 * AVX2 versions (intrinsics) keep their accumulators in registers (8 vectors: 32 columns; 4 vectors: the 16
 * partial sums), so the chains overlap. Each has a plain baseline loop with the same chains in the same order,
 * and the run-time check picks one. No FMA is used (the header turns contraction off), so both give the same
 * bits on every x86-64 CPU; tests compare them.
 *
 * fnn_colsum_block_{f32,f64}(dz, ld, n, w, db, accumulate): db[j] := (accumulate ? db[j] : 0) + sum over the
 *   rows of dz[i, j], j < w: each column one double add chain over the rows in order, then rounded into db,
 *   which is the bits _dense's loop gave before. 200 x 100 float: 2.75 -> 1.47 us (C, 1 thread, Zen 4).
 * fnn_sum_sq_{f32,f64}(w, size, s): s[l] += w[j]^2 in double for j = l mod 16 (16 partial sums; the last
 *   size % 16 elements into s[0], in order). The caller adds the 16 sums. 79,400 floats: 16.3 -> 5.4 us.
 */
#ifndef FNN_REDUCE_H
#define FNN_REDUCE_H

#include "fnn_cpu.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

/* Columns [0, w) of dz (ld elements a row): blocks of 32 columns in 8 vector accumulators (a[v]: columns 4v ..
   4v+3), then the last w % 32 columns as whole vectors and up to 3 scalar chains. LOAD4(p) gives 4 doubles. */
#define FNN_COLSUM_BODY(T, LOAD4, STORE4)                                                                   \
    long j0 = 0;                                                                                            \
    for (; j0 + 32 <= w; j0 += 32) {                                                                        \
        __m256d a[8];                                                                                       \
        for (int v = 0; v < 8; v++) a[v] = accumulate ? LOAD4(db + j0 + 4 * v) : _mm256_setzero_pd();      \
        const T* p = dz + j0;                                                                               \
        for (long i = 0; i < n; i++, p += ld)                                                               \
            for (int v = 0; v < 8; v++) a[v] = _mm256_add_pd(a[v], LOAD4(p + 4 * v));                       \
        for (int v = 0; v < 8; v++) STORE4(db + j0 + 4 * v, a[v]);                                         \
    }                                                                                                       \
    const int nv = (int)((w - j0) / 4), tail = (int)((w - j0) % 4);                                         \
    if (nv == 0 && tail == 0) return;                                                                       \
    __m256d a[8];                                                                                           \
    double t[3] = {0.0, 0.0, 0.0};                                                                          \
    for (int v = 0; v < 8; v++) a[v] = accumulate && v < nv ? LOAD4(db + j0 + 4 * v) : _mm256_setzero_pd(); \
    for (int c = 0; c < tail; c++) t[c] = accumulate ? (double)db[j0 + 4 * nv + c] : 0.0;                   \
    const T* p = dz + j0;                                                                                   \
    for (long i = 0; i < n; i++, p += ld) {                                                                 \
        for (int v = 0; v < 8; v++) if (v < nv) a[v] = _mm256_add_pd(a[v], LOAD4(p + 4 * v));              \
        for (int c = 0; c < 3; c++) if (c < tail) t[c] += (double)p[4 * nv + c];                           \
    }                                                                                                       \
    for (int v = 0; v < nv; v++) STORE4(db + j0 + 4 * v, a[v]);                                            \
    for (int c = 0; c < tail; c++) db[j0 + 4 * nv + c] = (T)t[c];

/* 16 partial sums in 4 vectors: element j + 4v + l of each 16 into s[4v + l] */
#define FNN_SUMSQ_BODY(T, LOAD4)                                                                            \
    __m256d a[4];                                                                                           \
    for (int v = 0; v < 4; v++) a[v] = _mm256_loadu_pd(s + 4 * v);                                          \
    long j = 0;                                                                                             \
    for (; j + 16 <= size; j += 16)                                                                         \
        for (int v = 0; v < 4; v++) {                                                                       \
            const __m256d x = LOAD4(w + j + 4 * v);                                                         \
            a[v] = _mm256_add_pd(a[v], _mm256_mul_pd(x, x));                                                \
        }                                                                                                   \
    for (int v = 0; v < 4; v++) _mm256_storeu_pd(s + 4 * v, a[v]);                                          \
    for (; j < size; j++) s[0] += (double)w[j] * (double)w[j];

/* The baseline loops. Column sums: per-column double accumulators in a block of 256, row by row (GCC vectorises
   the inner loop over the columns); the same chains as the AVX2 version. */
#define FNN_COLSUM_BASE(NAME, T)                                                                            \
static void NAME(const T* dz, long ld, long n, long w, T* db, int accumulate) {                             \
    double acc[256];                                                                                        \
    for (long j0 = 0; j0 < w; j0 += 256) {                                                                  \
        const long wb = w - j0 < 256 ? w - j0 : 256;                                                        \
        for (long j = 0; j < wb; j++) acc[j] = accumulate ? (double)db[j0 + j] : 0.0;                       \
        for (long i = 0; i < n; i++)                                                                        \
            for (long j = 0; j < wb; j++) acc[j] += (double)dz[i * ld + j0 + j];                           \
        for (long j = 0; j < wb; j++) db[j0 + j] = (T)acc[j];                                               \
    }                                                                                                       \
}
FNN_COLSUM_BASE(fnn_colsum_block_f32_base, float)
FNN_COLSUM_BASE(fnn_colsum_block_f64_base, double)
#define FNN_SUMSQ_BASE(NAME, T)                                                                             \
static void NAME(const T* w, long size, double* s) {                                                       \
    long j = 0;                                                                                             \
    for (; j + 16 <= size; j += 16)                                                                         \
        for (int l = 0; l < 16; l++) s[l] += (double)w[j + l] * (double)w[j + l];                           \
    for (; j < size; j++) s[0] += (double)w[j] * (double)w[j];                                             \
}
FNN_SUMSQ_BASE(fnn_sum_sq_f32_base, float)
FNN_SUMSQ_BASE(fnn_sum_sq_f64_base, double)

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>
#define FNN_R_AVX2 __attribute__((target("avx2")))
FNN_R_AVX2 static inline __m256d fnn_r_load_float(const float* p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }
FNN_R_AVX2 static inline void fnn_r_store_float(float* p, __m256d a) { _mm_storeu_ps(p, _mm256_cvtpd_ps(a)); }
FNN_R_AVX2 static inline __m256d fnn_r_load_double(const double* p) { return _mm256_loadu_pd(p); }
FNN_R_AVX2 static inline void fnn_r_store_double(double* p, __m256d a) { _mm256_storeu_pd(p, a); }
FNN_R_AVX2 static void fnn_colsum_block_f32_avx2(const float* dz, long ld, long n, long w, float* db, int accumulate)
    { FNN_COLSUM_BODY(float, fnn_r_load_float, fnn_r_store_float) }
FNN_R_AVX2 static void fnn_colsum_block_f64_avx2(const double* dz, long ld, long n, long w, double* db,
                                                 int accumulate)
    { FNN_COLSUM_BODY(double, fnn_r_load_double, fnn_r_store_double) }
FNN_R_AVX2 static void fnn_sum_sq_f32_avx2(const float* w, long size, double* s)
    { FNN_SUMSQ_BODY(float, fnn_r_load_float) }
FNN_R_AVX2 static void fnn_sum_sq_f64_avx2(const double* w, long size, double* s)
    { FNN_SUMSQ_BODY(double, fnn_r_load_double) }
#define FNN_R_PICK(NAME, ARGS) (fnn_cpu_avx2() && fnn_reduce_simd ? NAME##_avx2 ARGS : NAME##_base ARGS)
#else
#define FNN_R_PICK(NAME, ARGS) (NAME##_base ARGS)
#endif

/* fnn_reduce_allow_simd(0): the baseline loops even where AVX2 is there (a test hook: the same bits). */
static int fnn_reduce_simd = 1;
static void fnn_reduce_allow_simd(int on) { fnn_reduce_simd = on != 0; }

static inline void fnn_colsum_block_f32(const float* dz, long ld, long n, long w, float* db, int accumulate)
    { FNN_R_PICK(fnn_colsum_block_f32, (dz, ld, n, w, db, accumulate)); }
static inline void fnn_colsum_block_f64(const double* dz, long ld, long n, long w, double* db, int accumulate)
    { FNN_R_PICK(fnn_colsum_block_f64, (dz, ld, n, w, db, accumulate)); }
static inline void fnn_sum_sq_f32(const float* w, long size, double* s) { FNN_R_PICK(fnn_sum_sq_f32, (w, size, s)); }
static inline void fnn_sum_sq_f64(const double* w, long size, double* s) { FNN_R_PICK(fnn_sum_sq_f64, (w, size, s)); }

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

#endif
