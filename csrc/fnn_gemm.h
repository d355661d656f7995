/* fnn_gemm.h - row-major GEMMs for small operands, AVX2 + FMA, chosen at run time.
 *
 *     C[M, N] := op(A)[M, K] @ op(B)[K, N]        (row-major; beta = 0: C is overwritten)
 *
 *     C[M, N] := C + op(A)[M, K] @ op(B)[K, N]    (the *_acc entry points with accumulate = 1: BLAS's beta = 1)
 *
 * op(A) = A (stored M x K, leading dimension lda) or A^T (stored K x M); op(B) = B (stored K x N)
 * or B^T (stored N x K, then `work` must hold N * K elements); not both transposed. Why: for the operand sizes of small MLPs (a few
 * hundred thousand multiply-adds per GEMM, or a few rows) an OpenBLAS call spends most of its time
 * packing and dispatching (SciPy's OpenBLAS 0.3.30, 1 thread, Zen: 32x64x64 takes 5.4 us, 48
 * GFLOP/s; 4x784x128 takes 67 us). These kernels read the operands in place (no packing) and run
 * at 80-90 GFLOP/s there (2.9 us; 11 us). From ~10^7 multiply-adds on, OpenBLAS's cache blocking
 * wins; fnn_gemm_small_rule() below is the measured rule its callers (_blas.pxd's _small_gemm for the
 * compiled plan, and gemm_auto for the per-layer path) use to decide.
 *
 * Kernels (float: 8 lanes, double: 4):
 *   NN, TN  - MR x (2 vectors) register blocks, MR <= 6: per k, two vector loads of B's row and MR
 *             broadcasts of op(A)'s column, 2*MR FMAs. A's element (i, p) is A[i*ras + p*cas], so the
 *             same kernel serves A (ras = lda, cas = 1) and A^T (ras = 1, cas = lda). A last block of more
 *             than one vector of columns uses masked loads and stores; one of at most one vector goes to
 *             the narrow panel (1 vector, MR <= 12). With AVX-512VL, full 4-vector panels first (the wide
 *             panel, MR <= 6, 24 accumulators in ymm0-31).
 *   NT      - B^T is transposed into a work buffer (N * K elements; 8 x 8 / 4 x 4 register tiles), then NN.
 *   1 row   - 8 vector accumulators side by side (64 floats / 32 doubles), to overlap the FMA chains.
 * Every kernel accumulates each C element over k in order with FMAs, starting from 0, so results differ
 * from BLAS only by rounding - and a row of C does not depend on M or on the row's position: the
 * kernels give the same bits for a sample alone or within a batch.
 * Store epilogue: beta = 1 (accumulate), or for inference (fnn_?gemm_bias_act) + bias and ReLU applied to the
 * accumulators before the one store, with the bits of a separate bias + activation pass (no extra pass over C);
 * or, for the training plan's input gradient (fnn_?gemm_small_gated), ReLU's backward from the previous layer's
 * output. A row's last partial vector is written as whole 128/64/32-bit stores (VMASKMOVPS stores are slow on
 * AMD).
 * B is read in place, never packed: a packed copy would have to be re-made whenever the weights change, and
 * an in-place write through a NumPy view of a weight cannot be detected cheaply.
 * AVX-512: its 32 registers are used (the wide panels, still on 256-bit ymm vectors); zmm vectors are not. On
 * the measured AMD Zen 4 (512-bit FMAs double-pumped on 256-bit units) zmm versions of these kernels (8 x 32
 * and 12 x 32 register blocks, K blocks of 128/256/all) ran at 0.6-1.05x of the AVX2 ones on the inference
 * shapes (32x784x512 and 32x512x512 +2..+4%, 32x784x128 +-2%, 1 row -4%, 64x784x128 and
 * 32x64x64 -5..-13%, N = 10 -40%), 1.3x only at 8 rows x 512 columns (one 8-row block instead of 6 + 2): both
 * run at 95-105 GFLOP/s of the core's 114 (a register-only FMA loop, ymm or zmm alike). bench/README.md,
 * "Inference at one thread against ONNX Runtime".
 *
 * fnn_gemm_available() is 1 when the CPU (and OS) support AVX2 and FMA; otherwise, or on other
 * architectures/compilers, it is 0 and the fnn_*gemm_small functions must not be called. fnn_gemm_wide() is 1
 * when AVX-512F and AVX-512VL are there too (the wide panels; the same bits either way).
 */
#ifndef FNN_GEMM_H
#define FNN_GEMM_H

/* The dispatch rule, shared by the compiled plan (_blas.pxd's _small_gemm) and the per-layer path
 * (_blas.pxd's gemm_auto, used by _dense): whether C[M, N] = op(A)[M, K] @ op(B)[K, N] goes to these
 * kernels rather than to BLAS, for a run with `threads` threads (it does not check availability).
 * Limits in multiply-adds (M*N*K), measured: at one thread the own kernels win up to ~1e7 (float32;
 * 64x784x128: 1.0-1.2x, 128x784x128: 1.03x, 256x784x128: 0.9x) and ~1e6 (float64: 32x64x64 1.2-1.4x,
 * 64x784x128 0.8x). With more threads BLAS threads GEMMs above 2^18 multiply-adds (OpenBLAS's own
 * threshold), so own kernels keep only what BLAS would run on one thread anyway, plus GEMMs of a few
 * rows (<= 16), where BLAS's fixed cost dominates (4x784x128: 11 us vs 67 us, 8x784x128: 21 vs 44
 * threaded). */
#define FNN_GEMM_MAX_F32 (1L << 23)
#define FNN_GEMM_MAX_F64 (1L << 20)
/* With the wide panels (AVX-512VL; measured on Zen 4, whose 512-bit FMAs are double-pumped, so OpenBLAS's zmm
   kernels have the ymm peak) the own kernels win to ~2^24 in both types (own time / SciPy's OpenBLAS: float
   200x784x100 0.93 NN, 0.82 TN; 256x784x128 1.00, 0.94; double 64x784x128 0.84, 0.88; 200x784x100 0.86, 0.97;
   256x784x128 0.87, 1.05), while op(B) fits L2 (1 MiB; double 32x784x512, B 3.2 MB: 1.03). On a CPU with two
   full 512-bit FMA units BLAS would win from smaller sizes: not measured (no such machine). */
#define FNN_GEMM_MAX_WIDE (1L << 24)
#define FNN_GEMM_WIDE_B_BYTES (1L << 20)
static int fnn_gemm_wide(void);
#define FNN_GEMM_MAX_THREADED (1L << 18)
#define FNN_GEMM_FEW_ROWS 16
/* One row over a B larger than L2 (2048x2048 float32: own 1.7 ms, OpenBLAS ?gemv 0.95 ms): BLAS. */
#define FNN_GEMM_ONE_ROW_MAX (1L << 19)

static inline int fnn_gemm_small_rule(long M, long N, long K, int f64, int threads) {
    const long mnk = M * N * K;
    const int wide = fnn_gemm_wide() && N * K * (f64 ? 8 : 4) <= FNN_GEMM_WIDE_B_BYTES;
    if (mnk > (wide ? FNN_GEMM_MAX_WIDE : f64 ? FNN_GEMM_MAX_F64 : FNN_GEMM_MAX_F32)) return 0;
    if (M == 1 && mnk > FNN_GEMM_ONE_ROW_MAX) return 0;   /* BLAS's GEMV streams a big B faster */
    return threads <= 1 || mnk <= FNN_GEMM_MAX_THREADED || M <= FNN_GEMM_FEW_ROWS;
}

/* The inference rule (the eval-mode plan's forward GEMMs, C = A @ B with the bias and activation fused into
 * the store): the rule above, and at one thread also GEMMs of up to FNN_GEMM_INFER_ROWS rows
 * whose B (the weight) has at most FNN_GEMM_INFER_B_F32 / _F64 elements. There BLAS packs all of B on every call
 * for a few rows, and the own kernels stream it from L2 unpacked (64-byte aligned rows, as fastnn's parameter
 * arena gives them). Measured (1 thread, 64-byte aligned B; BLAS time / own time): float32 784x512 at 4-96 rows
 * 1.05-1.6x, 512x512 1.09-1.9x; 1024x1024 (4 MiB) 0.8-1.2x and 2048x2048 0.3-0.7x (B beyond L2: the unpacked
 * column panels stride whole pages, BLAS's packed copy wins); float64 784x128 1.0-1.3x from 16 rows, but
 * 784x512 and 512x512 (2+ MiB) 0.75-1.0x. (2 rows: 0.5-0.6x - OpenBLAS streams B row by row there - but
 * those are within the rule above already, whose limits this rule leaves alone.) */
#define FNN_GEMM_INFER_ROWS 64
#define FNN_GEMM_INFER_B_F32 (1L << 19)
#define FNN_GEMM_INFER_B_F64 (1L << 17)

static inline int fnn_gemm_infer_rule(long M, long N, long K, int f64, int threads) {
    if (fnn_gemm_small_rule(M, N, K, f64, threads)) return 1;
    return threads <= 1 && M <= FNN_GEMM_INFER_ROWS && M > 1
           && N * K <= (f64 ? FNN_GEMM_INFER_B_F64 : FNN_GEMM_INFER_B_F32);
}

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define FNN_GEMM_X86 1
#include <immintrin.h>
#include <stdint.h>
#define FNN_AVX2 __attribute__((target("avx2,fma")))
#define FNN_UNROLL _Pragma("GCC unroll 8")

static int fnn_gemm_available(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
}

/* The wide panels (below) want AVX-512VL for its 32 vector registers; they still compute on 256-bit ymm
   vectors. fnn_gemm_allow_wide(0) turns them off in this module's copy of the kernels (a test hook: the bits
   must not depend on it). */
static int fnn_gemm_wide_allowed = 1;
static void fnn_gemm_allow_wide(int on) { fnn_gemm_wide_allowed = on != 0; }
static int fnn_gemm_wide(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = fnn_gemm_available() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
    }
    return cached && fnn_gemm_wide_allowed;
}
#define FNN_AVX512VL __attribute__((target("avx2,fma,avx512f,avx512vl")))

/* ------------------------------------------------------------------ float */

/* lanes [0, n) of an 8-lane mask, n in [0, 8] */
FNN_AVX2 static inline __m256i fnn_mask8(int n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

/* The store (the epilogue): C := v, or C := C + v when acc (beta = 1: the sum over k is rounded first, then
   added, as BLAS does); then, for the inference entry points, v + bias (bias: the columns' entries, or NULL) and
   ReLU as _activations computes them (z + b, then `x < 0 ? 0 : x`: NaN and -0 pass, +0 for negatives), so the
   fused result has the bits of the GEMM followed by _activations' bias + activation pass. For the training plan's
   input gradient (fnn_?gemm_small_gated), `gate` multiplies by ReLU's derivative instead: the element of the
   gate matrix G at C's position (G has C's leading dimension; `gate` is G's distance from C in bytes) says
   a <= 0 ? +0 : v, the bits of _activations' ReLU backward pass that would follow (no extra pass over C). */
#define FNN_GATE(T, c, gate) ((const T*)((uintptr_t)(c) + (uintptr_t)(gate)))
FNN_AVX2 static inline __m256 fnn_s_relu(__m256 v) {
    return _mm256_andnot_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ), v);
}
FNN_AVX2 static inline __m256 fnn_s_gate(__m256 v, __m256 a) {   /* ReLU's backward: a <= 0 ? +0 : v (NaN a: v) */
    return _mm256_andnot_ps(_mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_LE_OQ), v);
}
FNN_AVX2 static inline void fnn_s_st(float* c, __m256 v, int acc, const float* bias, int relu, long gate) {
    if (acc) v = _mm256_add_ps(_mm256_loadu_ps(c), v);
    if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias));
    if (relu) v = fnn_s_relu(v);
    if (gate) v = fnn_s_gate(v, _mm256_loadu_ps(FNN_GATE(float, c, gate)));
    _mm256_storeu_ps(c, v);
}
/* The last, partial vector of a row: lanes [0, n) of v, n from the prefix mask m, as whole 128-, 64- and 32-bit
   stores. VMASKMOVPS/PD's store form is slow on AMD Zen (microcoded; ~20 cycles measured on Zen 4): the 200
   masked stores of a 200x100x10 float GEMM were 15% of its time. Masked loads are fast and stay. */
FNN_AVX2 static inline void fnn_s_pst(float* c, __m256i m, __m256 v) {
    int n = __builtin_popcount((unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(m)));
    if (n == 8) { _mm256_storeu_ps(c, v); return; }
    __m128 h = _mm256_castps256_ps128(v);
    if (n >= 4) { _mm_storeu_ps(c, h); h = _mm256_extractf128_ps(v, 1); c += 4; n -= 4; }
    if (n >= 2) { _mm_storel_pi((__m64*)c, h); h = _mm_movehl_ps(h, h); c += 2; n -= 2; }
    if (n) _mm_store_ss(c, h);
}
FNN_AVX2 static inline void fnn_s_mst(float* c, __m256i m, __m256 v, int acc, const float* bias, int relu, long gate) {
    if (acc) v = _mm256_add_ps(_mm256_maskload_ps(c, m), v);
    if (bias) v = _mm256_add_ps(v, _mm256_maskload_ps(bias, m));
    if (relu) v = fnn_s_relu(v);
    if (gate) v = fnn_s_gate(v, _mm256_maskload_ps(FNN_GATE(float, c, gate), m));
    fnn_s_pst(c, m, v);
}

#define FNN_S_NN(MR)                                                                                       \
FNN_AVX2 static inline void fnn_s_nn_##MR(int K, const float* A, long ras, long cas, const float* B, long ldb, \
                                          float* C, long ldc, int acc, const float* bias, int relu, long gate) { \
    __m256 c0[MR], c1[MR];                                                                                 \
    FNN_UNROLL for (int r = 0; r < MR; r++) { c0[r] = _mm256_setzero_ps(); c1[r] = _mm256_setzero_ps(); }  \
    for (int p = 0; p < K; p++) {                                                                          \
        const __m256 b0 = _mm256_loadu_ps(B + p * ldb), b1 = _mm256_loadu_ps(B + p * ldb + 8);             \
        FNN_UNROLL for (int r = 0; r < MR; r++) {                                                          \
            const __m256 a = _mm256_broadcast_ss(A + r * ras + p * cas);                                   \
            c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);                                                         \
            c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);                                                         \
        }                                                                                                  \
    }                                                                                                      \
    FNN_UNROLL for (int r = 0; r < MR; r++) {                                                              \
        fnn_s_st(C + r * ldc, c0[r], acc, bias, relu, gate);                                               \
        fnn_s_st(C + r * ldc + 8, c1[r], acc, bias ? bias + 8 : 0, relu, gate);                            \
    }                                                                                                      \
}                                                                                                          \
FNN_AVX2 static inline void fnn_s_nn_tail_##MR(int K, const float* A, long ras, long cas, const float* B,  \
                                               long ldb, float* C, long ldc, int nc, int acc, const float* bias, \
                                               int relu, long gate) {                                      \
    const __m256i m0 = fnn_mask8(nc < 8 ? nc : 8), m1 = fnn_mask8(nc > 8 ? nc - 8 : 0);                    \
    __m256 c0[MR], c1[MR];                                                                                 \
    FNN_UNROLL for (int r = 0; r < MR; r++) { c0[r] = _mm256_setzero_ps(); c1[r] = _mm256_setzero_ps(); }  \
    for (int p = 0; p < K; p++) {                                                                          \
        const __m256 b0 = nc >= 8 ? _mm256_loadu_ps(B + p * ldb) : _mm256_maskload_ps(B + p * ldb, m0);    \
        const __m256 b1 = _mm256_maskload_ps(B + p * ldb + 8, m1);   /* a full first vector: a plain load */ \
        FNN_UNROLL for (int r = 0; r < MR; r++) {                                                          \
            const __m256 a = _mm256_broadcast_ss(A + r * ras + p * cas);                                   \
            c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);                                                         \
            c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);                                                         \
        }                                                                                                  \
    }                                                                                                      \
    FNN_UNROLL for (int r = 0; r < MR; r++) {                                                              \
        fnn_s_mst(C + r * ldc, m0, c0[r], acc, bias, relu, gate);                                          \
        fnn_s_mst(C + r * ldc + 8, m1, c1[r], acc, bias ? bias + 8 : 0, relu, gate);                       \
    }                                                                                                      \
}
FNN_S_NN(1) FNN_S_NN(2) FNN_S_NN(3) FNN_S_NN(4) FNN_S_NN(5) FNN_S_NN(6)

#define FNN_S_NN_CALL(MR) do {                                                                             \
        if (nc == 16) fnn_s_nn_##MR(K, a, ras, cas, b, ldb, c, ldc, acc, bj, relu, gate);                  \
        else fnn_s_nn_tail_##MR(K, a, ras, cas, b, ldb, c, ldc, nc, acc, bj, relu, gate);                  \
    } while (0)

/* The rows of the next block, `left` rows to go: blocks of 6, except that a remainder of 1-3 rows joins the
   last block of 6 and those 7-9 rows run as two blocks (4+3, 4+4, 5+4). A block of 1-3 rows keeps too few
   FMA chains in flight (2 rows: 4 accumulators against a 4-cycle latency on 2 FMA pipes): 32x64x64 float,
   6+6+6+6+6+2 rows 110 GFLOP/s, 6+6+6+6+4+4 113.5 (Zen 4). Each element is one FMA chain over k in order
   whatever the blocking, so the bits do not change. */
static inline int fnn_rows_next(int left) {
    return left > 9 ? 6 : left > 6 ? (left + 1) / 2 : left;
}

/* columns [j, j + nc) of C, nc <= 16, all rows */
FNN_AVX2 static void fnn_s_nn_cols(int M, int K, const float* A, long ras, long cas, const float* B, long ldb,
                                   float* C, long ldc, int j, int nc, int acc, const float* bias, int relu, long gate) {
    const float* b = B + j;
    const float* bj = bias ? bias + j : 0;
    for (int i = 0, mr; i < M; i += mr) {
        const float* a = A + i * ras;
        float* c = C + (long)i * ldc + j;
        switch (mr = fnn_rows_next(M - i)) {
            case 6: FNN_S_NN_CALL(6); break;
            case 5: FNN_S_NN_CALL(5); break;
            case 4: FNN_S_NN_CALL(4); break;
            case 3: FNN_S_NN_CALL(3); break;
            case 2: FNN_S_NN_CALL(2); break;
            default: FNN_S_NN_CALL(1); break;
        }
    }
}

/* columns [0, nc) of one row, nc <= 16 (fnn_?_row's last columns) */
FNN_AVX2 static inline void fnn_s_cols_1(int K, const float* a, long cas, const float* b, long ldb, float* c, int nc,
                                         int acc, const float* bias, int relu, long gate) {
    if (nc == 16) fnn_s_nn_1(K, a, 0, cas, b, ldb, c, 0, acc, bias, relu, gate);
    else fnn_s_nn_tail_1(K, a, 0, cas, b, ldb, c, 0, nc, acc, bias, relu, gate);
}

/* ------------------------------------------------------------------ double */

FNN_AVX2 static inline __m256i fnn_mask4(int n) {
    const __m256i idx = _mm256_setr_epi64x(0, 1, 2, 3);
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), idx);
}

FNN_AVX2 static inline __m256d fnn_d_relu(__m256d v) {   /* as fnn_s_relu */
    return _mm256_andnot_pd(_mm256_cmp_pd(v, _mm256_setzero_pd(), _CMP_LT_OQ), v);
}
FNN_AVX2 static inline __m256d fnn_d_gate(__m256d v, __m256d a) {   /* as fnn_s_gate */
    return _mm256_andnot_pd(_mm256_cmp_pd(a, _mm256_setzero_pd(), _CMP_LE_OQ), v);
}
FNN_AVX2 static inline void fnn_d_st(double* c, __m256d v, int acc, const double* bias, int relu, long gate) {
    if (acc) v = _mm256_add_pd(_mm256_loadu_pd(c), v);
    if (bias) v = _mm256_add_pd(v, _mm256_loadu_pd(bias));
    if (relu) v = fnn_d_relu(v);
    if (gate) v = fnn_d_gate(v, _mm256_loadu_pd(FNN_GATE(double, c, gate)));
    _mm256_storeu_pd(c, v);
}
FNN_AVX2 static inline void fnn_d_pst(double* c, __m256i m, __m256d v) {   /* as fnn_s_pst */
    int n = __builtin_popcount((unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(m)));
    if (n == 4) { _mm256_storeu_pd(c, v); return; }
    __m128d h = _mm256_castpd256_pd128(v);
    if (n >= 2) { _mm_storeu_pd(c, h); h = _mm256_extractf128_pd(v, 1); c += 2; n -= 2; }
    if (n) _mm_store_sd(c, h);
}
FNN_AVX2 static inline void fnn_d_mst(double* c, __m256i m, __m256d v, int acc, const double* bias, int relu,
                                      long gate) {
    if (acc) v = _mm256_add_pd(_mm256_maskload_pd(c, m), v);
    if (bias) v = _mm256_add_pd(v, _mm256_maskload_pd(bias, m));
    if (relu) v = fnn_d_relu(v);
    if (gate) v = fnn_d_gate(v, _mm256_maskload_pd(FNN_GATE(double, c, gate), m));
    fnn_d_pst(c, m, v);
}

#define FNN_D_NN(MR)                                                                                       \
FNN_AVX2 static inline void fnn_d_nn_##MR(int K, const double* A, long ras, long cas, const double* B,     \
                                          long ldb, double* C, long ldc, int nc, int acc, const double* bias, \
                                          int relu, long gate) {                                           \
    const __m256i m0 = fnn_mask4(nc < 4 ? nc : 4), m1 = fnn_mask4(nc > 4 ? nc - 4 : 0);                    \
    const int full = nc == 8;                                                                              \
    __m256d c0[MR], c1[MR];                                                                                \
    FNN_UNROLL for (int r = 0; r < MR; r++) { c0[r] = _mm256_setzero_pd(); c1[r] = _mm256_setzero_pd(); }  \
    if (full) {                                                                                            \
        for (int p = 0; p < K; p++) {                                                                      \
            const __m256d b0 = _mm256_loadu_pd(B + p * ldb), b1 = _mm256_loadu_pd(B + p * ldb + 4);        \
            FNN_UNROLL for (int r = 0; r < MR; r++) {                                                      \
                const __m256d a = _mm256_broadcast_sd(A + r * ras + p * cas);                              \
                c0[r] = _mm256_fmadd_pd(a, b0, c0[r]);                                                     \
                c1[r] = _mm256_fmadd_pd(a, b1, c1[r]);                                                     \
            }                                                                                              \
        }                                                                                                  \
        FNN_UNROLL for (int r = 0; r < MR; r++) {                                                          \
            fnn_d_st(C + r * ldc, c0[r], acc, bias, relu, gate);                                           \
            fnn_d_st(C + r * ldc + 4, c1[r], acc, bias ? bias + 4 : 0, relu, gate);                        \
        }                                                                                                  \
        return;                                                                                            \
    }                                                                                                      \
    for (int p = 0; p < K; p++) {                                                                          \
        const __m256d b0 = nc >= 4 ? _mm256_loadu_pd(B + p * ldb) : _mm256_maskload_pd(B + p * ldb, m0);   \
        const __m256d b1 = _mm256_maskload_pd(B + p * ldb + 4, m1);                                        \
        FNN_UNROLL for (int r = 0; r < MR; r++) {                                                          \
            const __m256d a = _mm256_broadcast_sd(A + r * ras + p * cas);                                  \
            c0[r] = _mm256_fmadd_pd(a, b0, c0[r]);                                                         \
            c1[r] = _mm256_fmadd_pd(a, b1, c1[r]);                                                         \
        }                                                                                                  \
    }                                                                                                      \
    FNN_UNROLL for (int r = 0; r < MR; r++) {                                                              \
        fnn_d_mst(C + r * ldc, m0, c0[r], acc, bias, relu, gate);                                          \
        fnn_d_mst(C + r * ldc + 4, m1, c1[r], acc, bias ? bias + 4 : 0, relu, gate);                       \
    }                                                                                                      \
}
FNN_D_NN(1) FNN_D_NN(2) FNN_D_NN(3) FNN_D_NN(4) FNN_D_NN(5) FNN_D_NN(6)

FNN_AVX2 static void fnn_d_nn_cols(int M, int K, const double* A, long ras, long cas, const double* B, long ldb,
                                   double* C, long ldc, int j, int nc, int acc, const double* bias, int relu,
                                   long gate) {
    const double* b = B + j;
    const double* bj = bias ? bias + j : 0;
    for (int i = 0, mr; i < M; i += mr) {   /* row blocks as fnn_s_nn_cols */
        const double* a = A + i * ras;
        double* c = C + (long)i * ldc + j;
        switch (mr = fnn_rows_next(M - i)) {
            case 6: fnn_d_nn_6(K, a, ras, cas, b, ldb, c, ldc, nc, acc, bj, relu, gate); break;
            case 5: fnn_d_nn_5(K, a, ras, cas, b, ldb, c, ldc, nc, acc, bj, relu, gate); break;
            case 4: fnn_d_nn_4(K, a, ras, cas, b, ldb, c, ldc, nc, acc, bj, relu, gate); break;
            case 3: fnn_d_nn_3(K, a, ras, cas, b, ldb, c, ldc, nc, acc, bj, relu, gate); break;
            case 2: fnn_d_nn_2(K, a, ras, cas, b, ldb, c, ldc, nc, acc, bj, relu, gate); break;
            default: fnn_d_nn_1(K, a, ras, cas, b, ldb, c, ldc, nc, acc, bj, relu, gate); break;
        }
    }
}

FNN_AVX2 static inline void fnn_d_cols_1(int K, const double* a, long cas, const double* b, long ldb, double* c,
                                         int nc, int acc, const double* bias, int relu,
                                         long gate) {   /* as fnn_s_cols_1 */
    fnn_d_nn_1(K, a, 0, cas, b, ldb, c, 0, nc, acc, bias, relu, gate);
}

/* One row (both types; X, T, V, P, S, L as for FNN_PANELS below): 16 vector accumulators (16L columns) per
   pass, then 8, so the FMA chains (still one per C element, over k in order: the same numbers as the MR-row
   kernels) overlap instead of waiting on each other; the last columns in 2-vector blocks (fnn_?_cols_1).
   L2-bandwidth bound (float 784x128: 3.5 us with B in L2). With B out of L2 (a batch-1 forward between other
   work), a 16-vector pass streams each row of B whole where two 8-vector passes read it in halves twice:
   784x128 5.7 -> 4.9 us. fnn_?_nn uses it for accumulating GEMMs and narrow rows; wider ones are streamed
   (fnn_?_row_stream). */
#define FNN_ROW_PASS(X, T, V, P, S, L, NV, j, N, K, a, cas, B, ldb, c, acc, bias, relu, gate)              \
    for (; j + NV * L <= N; j += NV * L) {                                                                 \
        V sum[NV];                                                                                         \
        _Pragma("GCC unroll 16") for (int v = 0; v < NV; v++) sum[v] = _mm256_setzero_##P();               \
        const T* b = B + j;                                                                                \
        for (int p = 0; p < K; p++, b += ldb) {                                                            \
            const V x = _mm256_broadcast_##S(a + p * cas);                                                 \
            _Pragma("GCC unroll 16") for (int v = 0; v < NV; v++)                                          \
                sum[v] = _mm256_fmadd_##P(x, _mm256_loadu_##P(b + L * v), sum[v]);                         \
        }                                                                                                  \
        _Pragma("GCC unroll 16") for (int v = 0; v < NV; v++)                                              \
            fnn_##X##_st(c + j + L * v, sum[v], acc, bias ? bias + j + L * v : 0, relu, gate);             \
    }
#define FNN_ROW(X, T, V, P, S, L)                                                                          \
FNN_AVX2 static void fnn_##X##_row(int N, int K, const T* a, long cas, const T* B, long ldb, T* c, int acc, \
                                   const T* bias, int relu, long gate) {                                   \
    int j = 0;                                                                                             \
    FNN_ROW_PASS(X, T, V, P, S, L, 16, j, N, K, a, cas, B, ldb, c, acc, bias, relu, gate)                  \
    FNN_ROW_PASS(X, T, V, P, S, L, 8, j, N, K, a, cas, B, ldb, c, acc, bias, relu, gate)                   \
    for (; j < N; j += 2 * L)                                                                              \
        fnn_##X##_cols_1(K, a, cas, B + j, ldb, c + j, N - j < 2 * L ? N - j : 2 * L, acc, bias ? bias + j : 0, \
                         relu, gate);                                                                      \
}
FNN_ROW(s, float, __m256, ps, ss, 8)
FNN_ROW(d, double, __m256d, pd, sd, 4)

/* ------------------------------------------------------------------ narrow and wide panels (both types) */

/* X type prefix (s, d), T scalar, V vector, P/S intrinsic suffixes (ps/ss, pd/sd), L lanes (8, 4).
   Narrow: the last nc <= L columns (masked when nc < L), up to 12 rows: 12 FMA chains per k for one load of B
   (the 2-vector kernels spent a whole 2L-column block on them: N = 100 float, 96 + 4 columns, ran at 94
   GFLOP/s against 113 for N = 96; now 101-104). Wide: full 4L-column panels, up to 6 rows, 24 accumulators,
   AVX-512VL only (ymm16-31): per k 4 loads of B and 6 broadcasts feed 24 FMAs instead of 12 - float 784x200x100
   TN 80 -> 100 GFLOP/s, 200x784x512 96 -> 112; double 64x784x128 52 -> 57, its TN 47 -> 55 (Zen 4; the core's
   FMA peak is about 118 / 59). Each element is still one FMA chain over k in order from 0, so neither changes
   a bit. */
#define FNN_NV(X, T, V, P, S, MR)                                                                          \
FNN_AVX2 static inline void fnn_##X##_nv_##MR(int K, const T* A, long ras, long cas, const T* B, long ldb, \
                                              T* C, long ldc, __m256i m, int acc, const T* bias, int relu, \
                                              long gate) {                                                 \
    V c0[MR];                                                                                              \
    _Pragma("GCC unroll 12") for (int r = 0; r < MR; r++) c0[r] = _mm256_setzero_##P();                    \
    for (int p = 0; p < K; p++) {                                                                          \
        const V b0 = _mm256_maskload_##P(B + p * ldb, m);                                                  \
        _Pragma("GCC unroll 12") for (int r = 0; r < MR; r++)                                              \
            c0[r] = _mm256_fmadd_##P(_mm256_broadcast_##S(A + r * ras + p * cas), b0, c0[r]);              \
    }                                                                                                      \
    _Pragma("GCC unroll 12") for (int r = 0; r < MR; r++) fnn_##X##_mst(C + r * ldc, m, c0[r], acc, bias, relu, gate); \
}
#define FNN_NW(X, T, V, P, S, L, MR)                                                                       \
FNN_AVX512VL static inline void fnn_##X##_nw_##MR(int K, const T* A, long ras, long cas, const T* B, long ldb, \
                                                  T* C, long ldc, int acc, const T* bias, int relu, long gate) { \
    V c0[MR][4];                                                                                           \
    FNN_UNROLL for (int r = 0; r < MR; r++) FNN_UNROLL for (int v = 0; v < 4; v++) c0[r][v] = _mm256_setzero_##P(); \
    for (int p = 0; p < K; p++) {                                                                          \
        V b[4];                                                                                            \
        FNN_UNROLL for (int v = 0; v < 4; v++) b[v] = _mm256_loadu_##P(B + p * ldb + L * v);               \
        FNN_UNROLL for (int r = 0; r < MR; r++) {                                                          \
            const V a = _mm256_broadcast_##S(A + r * ras + p * cas);                                       \
            FNN_UNROLL for (int v = 0; v < 4; v++) c0[r][v] = _mm256_fmadd_##P(a, b[v], c0[r][v]);         \
        }                                                                                                  \
    }                                                                                                      \
    FNN_UNROLL for (int r = 0; r < MR; r++) FNN_UNROLL for (int v = 0; v < 4; v++)                         \
        fnn_##X##_st(C + r * ldc + L * v, c0[r][v], acc, bias ? bias + L * v : 0, relu, gate);             \
}
/* the drivers: all rows of one panel (narrow: blocks of 12, the last 13-19 rows as two; wide: fnn_rows_next) */
#define FNN_PANELS(X, T, V, P, S, L)                                                                       \
FNN_NV(X, T, V, P, S, 1) FNN_NV(X, T, V, P, S, 2) FNN_NV(X, T, V, P, S, 3) FNN_NV(X, T, V, P, S, 4)        \
FNN_NV(X, T, V, P, S, 5) FNN_NV(X, T, V, P, S, 6) FNN_NV(X, T, V, P, S, 7) FNN_NV(X, T, V, P, S, 8)        \
FNN_NV(X, T, V, P, S, 9) FNN_NV(X, T, V, P, S, 10) FNN_NV(X, T, V, P, S, 11) FNN_NV(X, T, V, P, S, 12)     \
FNN_NW(X, T, V, P, S, L, 1) FNN_NW(X, T, V, P, S, L, 2) FNN_NW(X, T, V, P, S, L, 3)                        \
FNN_NW(X, T, V, P, S, L, 4) FNN_NW(X, T, V, P, S, L, 5) FNN_NW(X, T, V, P, S, L, 6)                        \
FNN_AVX2 static void fnn_##X##_nv_cols(int M, int K, const T* A, long ras, long cas, const T* B, long ldb, \
                                       T* C, long ldc, int nc, int acc, const T* bias, int relu, long gate) { \
    const __m256i m = fnn_mask##L(nc);                                                                     \
    for (int i = 0, mr; i < M; i += mr) {                                                                  \
        const T* a = A + i * ras;                                                                          \
        T* c = C + (long)i * ldc;                                                                          \
        const int left = M - i;                                                                            \
        switch (mr = left > 19 ? 12 : left > 12 ? (left + 1) / 2 : left) {                                 \
            case 12: fnn_##X##_nv_12(K, a, ras, cas, B, ldb, c, ldc, m, acc, bias, relu, gate); break;     \
            case 11: fnn_##X##_nv_11(K, a, ras, cas, B, ldb, c, ldc, m, acc, bias, relu, gate); break;     \
            case 10: fnn_##X##_nv_10(K, a, ras, cas, B, ldb, c, ldc, m, acc, bias, relu, gate); break;     \
            case 9: fnn_##X##_nv_9(K, a, ras, cas, B, ldb, c, ldc, m, acc, bias, relu, gate); break;       \
            case 8: fnn_##X##_nv_8(K, a, ras, cas, B, ldb, c, ldc, m, acc, bias, relu, gate); break;       \
            case 7: fnn_##X##_nv_7(K, a, ras, cas, B, ldb, c, ldc, m, acc, bias, relu, gate); break;       \
            case 6: fnn_##X##_nv_6(K, a, ras, cas, B, ldb, c, ldc, m, acc, bias, relu, gate); break;       \
            case 5: fnn_##X##_nv_5(K, a, ras, cas, B, ldb, c, ldc, m, acc, bias, relu, gate); break;       \
            case 4: fnn_##X##_nv_4(K, a, ras, cas, B, ldb, c, ldc, m, acc, bias, relu, gate); break;       \
            case 3: fnn_##X##_nv_3(K, a, ras, cas, B, ldb, c, ldc, m, acc, bias, relu, gate); break;       \
            case 2: fnn_##X##_nv_2(K, a, ras, cas, B, ldb, c, ldc, m, acc, bias, relu, gate); break;       \
            default: fnn_##X##_nv_1(K, a, ras, cas, B, ldb, c, ldc, m, acc, bias, relu, gate); break;      \
        }                                                                                                  \
    }                                                                                                      \
}                                                                                                          \
FNN_AVX512VL static void fnn_##X##_nw_cols(int M, int K, const T* A, long ras, long cas, const T* B, long ldb, \
                                           T* C, long ldc, int acc, const T* bias, int relu, long gate) {  \
    for (int i = 0, mr; i < M; i += mr) {                                                                  \
        const T* a = A + i * ras;                                                                          \
        T* c = C + (long)i * ldc;                                                                          \
        switch (mr = fnn_rows_next(M - i)) {                                                               \
            case 6: fnn_##X##_nw_6(K, a, ras, cas, B, ldb, c, ldc, acc, bias, relu, gate); break;          \
            case 5: fnn_##X##_nw_5(K, a, ras, cas, B, ldb, c, ldc, acc, bias, relu, gate); break;          \
            case 4: fnn_##X##_nw_4(K, a, ras, cas, B, ldb, c, ldc, acc, bias, relu, gate); break;          \
            case 3: fnn_##X##_nw_3(K, a, ras, cas, B, ldb, c, ldc, acc, bias, relu, gate); break;          \
            case 2: fnn_##X##_nw_2(K, a, ras, cas, B, ldb, c, ldc, acc, bias, relu, gate); break;          \
            default: fnn_##X##_nw_1(K, a, ras, cas, B, ldb, c, ldc, acc, bias, relu, gate); break;         \
        }                                                                                                  \
    }                                                                                                      \
}
FNN_PANELS(s, float, __m256, ps, ss, 8)
FNN_PANELS(d, double, __m256d, pd, sd, 4)

/* One row, streamed (not acc, N >= FNN_ROW_STREAM_N): C's row itself holds the sums (L1: up to a few KiB), and
   each pass over it adds 4 rows of B in order, c = fma(a3, b3, fma(a2, b2, fma(a1, b1, fma(a0, b0, c)))): the
   same FMA chain per element as the register kernel (fnn_?_row), while B is read row after row, 4 rows at a
   time, as BLAS's GEMV reads it, instead of in 64-column strips of every row. Then bias and ReLU in one pass.
   C, 1 thread (register kernel -> streamed): float 784x128 4.4 -> 3.5 us, 784x512 20.3 -> 17.5 (SciPy's
   OpenBLAS sgemv 21.5), 512x512 13.0 -> 10.1, double 784x512 40.9 -> 34.9, and with B from DRAM float
   784x512 29.9 -> 26.5, double 70.4 -> 48.6 (Zen 4). Narrow rows (N < 64) keep the register kernel. */
#define FNN_ROW_STREAM_N 64
#define FNN_ROW_STREAM(X, T, V, P, S, L)                                                                   \
FNN_AVX2 static void fnn_##X##_row_stream(int N, int K, const T* a, long cas, const T* B, long ldb, T* c,  \
                                          const T* bias, int relu, long gate) {                            \
    const int nv = N - N % (2 * L);                                                                        \
    int j, p = 0;                                                                                          \
    for (j = 0; j < N; j++) c[j] = 0;                                                                      \
    for (; p + 4 <= K; p += 4) {                                                                           \
        const T a0 = a[p * cas], a1 = a[(p + 1) * cas], a2 = a[(p + 2) * cas], a3 = a[(p + 3) * cas];      \
        const V x0 = _mm256_set1_##P(a0), x1 = _mm256_set1_##P(a1), x2 = _mm256_set1_##P(a2);              \
        const V x3 = _mm256_set1_##P(a3);                                                                  \
        const T *b0 = B + (long)p * ldb, *b1 = b0 + ldb, *b2 = b1 + ldb, *b3 = b2 + ldb;                   \
        for (j = 0; j < nv; j += 2 * L) {                                                                  \
            V v = _mm256_loadu_##P(c + j), w = _mm256_loadu_##P(c + j + L);                                \
            v = _mm256_fmadd_##P(x0, _mm256_loadu_##P(b0 + j), v);                                         \
            w = _mm256_fmadd_##P(x0, _mm256_loadu_##P(b0 + j + L), w);                                     \
            v = _mm256_fmadd_##P(x1, _mm256_loadu_##P(b1 + j), v);                                         \
            w = _mm256_fmadd_##P(x1, _mm256_loadu_##P(b1 + j + L), w);                                     \
            v = _mm256_fmadd_##P(x2, _mm256_loadu_##P(b2 + j), v);                                         \
            w = _mm256_fmadd_##P(x2, _mm256_loadu_##P(b2 + j + L), w);                                     \
            v = _mm256_fmadd_##P(x3, _mm256_loadu_##P(b3 + j), v);                                         \
            w = _mm256_fmadd_##P(x3, _mm256_loadu_##P(b3 + j + L), w);                                     \
            _mm256_storeu_##P(c + j, v);                                                                   \
            _mm256_storeu_##P(c + j + L, w);                                                               \
        }                                                                                                  \
        for (; j < N; j++) c[j] = FNN_FMA_##X(a3, b3[j], FNN_FMA_##X(a2, b2[j], FNN_FMA_##X(a1, b1[j],     \
                                                         FNN_FMA_##X(a0, b0[j], c[j]))));                  \
    }                                                                                                      \
    for (; p < K; p++) {                                                                                   \
        const T a0 = a[p * cas];                                                                           \
        const V x0 = _mm256_set1_##P(a0);                                                                  \
        const T* b0 = B + (long)p * ldb;                                                                   \
        for (j = 0; j < nv; j += L) _mm256_storeu_##P(c + j, _mm256_fmadd_##P(x0, _mm256_loadu_##P(b0 + j), \
                                                                            _mm256_loadu_##P(c + j)));     \
        for (; j < N; j++) c[j] = FNN_FMA_##X(a0, b0[j], c[j]);                                            \
    }                                                                                                      \
    if (bias || relu || gate) {                                                                            \
        for (j = 0; j + L <= N; j += L)                                                                    \
            fnn_##X##_st(c + j, _mm256_loadu_##P(c + j), 0, bias ? bias + j : 0, relu, gate);              \
        if (j < N) {                                                                                       \
            const __m256i m = fnn_mask##L(N - j);                                                          \
            fnn_##X##_mst(c + j, m, _mm256_maskload_##P(c + j, m), 0, bias ? bias + j : 0, relu, gate);    \
        }                                                                                                  \
    }                                                                                                      \
}
#define FNN_FMA_s __builtin_fmaf
#define FNN_FMA_d __builtin_fma
FNN_ROW_STREAM(s, float, __m256, ps, ss, 8)
FNN_ROW_STREAM(d, double, __m256d, pd, sd, 4)

/* C's columns left to right: wide panels of 4L while they fit (AVX-512VL, K >= 64: below that the 24
   accumulators' stores are not paid back - float 64x32x64 112 -> 109 GFLOP/s), then 2L-column blocks
   (the last one masked) while more than L columns are left, then one narrow panel. Rows of B 64-byte aligned
   run fastest (784x128 float weights 32 bytes past a line: 180 us instead of 158 for 64 rows - each block
   then reads two lines per row; starting the blocks at the line with a masked head block costs as much as it
   saves). */
#define FNN_NN(X, T, L)                                                                                    \
FNN_AVX2 static void fnn_##X##_nn(int M, int N, int K, const T* A, long ras, long cas, const T* B, long ldb, \
                                  T* C, long ldc, int acc, const T* bias, int relu, long gate) {           \
    if (M == 1) {                                                                                          \
        if (acc || N < FNN_ROW_STREAM_N) fnn_##X##_row(N, K, A, cas, B, ldb, C, acc, bias, relu, gate);    \
        else fnn_##X##_row_stream(N, K, A, cas, B, ldb, C, bias, relu, gate);                              \
        return;                                                                                            \
    }                                                                                                      \
    int j = 0;                                                                                             \
    if (K >= 64 && fnn_gemm_wide())                                                                        \
        for (; j + 4 * L <= N; j += 4 * L)                                                                 \
            fnn_##X##_nw_cols(M, K, A, ras, cas, B + j, ldb, C + j, ldc, acc, bias ? bias + j : 0, relu, gate); \
    for (; N - j > L; j += 2 * L)                                                                          \
        fnn_##X##_nn_cols(M, K, A, ras, cas, B, ldb, C, ldc, j, N - j < 2 * L ? N - j : 2 * L, acc, bias, relu, gate); \
    if (j < N)                                                                                             \
        fnn_##X##_nv_cols(M, K, A, ras, cas, B + j, ldb, C + j, ldc, N - j, acc, bias ? bias + j : 0, relu, gate); \
}
FNN_NN(s, float, 8)
FNN_NN(d, double, 4)

/* A narrow TN product, C (M x N) := A^T B with N < 16 columns, not a whole number of 2-vector blocks, and
   M >= 4L rows (the output layer's weight gradient, 100 x 10): its transpose C^T = B^T A runs instead, N rows
   across M columns, whose panels fill every lane (a 10-wide float C uses 10 of a 2-vector block's 16 lanes),
   into a buffer on the stack, then C takes it transposed. Each element is still one FMA chain over k in order
   from 0 (fma(a, b, c) = fma(b, a, c)), and beta = 1 adds it to C as the kernels' store does: the same bits.
   GFLOP/s, C, 1 thread, Zen 4, direct -> swapped: float 100x200x10 56 -> 92, 256x200x10 56 -> 107, 100x200x1
   11 -> 32, 100x200x4 40 -> 81; double 100x200x10 40 -> 54, 100x200x4 44 -> 52, 64x200x3 33 -> 55 (whole
   blocks, double N = 8 or 16 and float 16, stay: 57 -> 54, 114 -> 93). Returns 0 (nothing done) otherwise. */
#define FNN_TN_SWAP_BYTES 16384   /* C^T on the stack: 4096 floats, 2048 doubles */
#define FNN_TN_SWAP(X, T, L)                                                                               \
FNN_AVX2 static int fnn_##X##_tn_swap(int acc, int M, int N, int K, const T* A, int lda, const T* B, int ldb, \
                                      T* C, int ldc) {                                                     \
    if (N >= 16 || N % (2 * L) == 0 || M < 4 * L || (long)M * N * (long)sizeof(T) > FNN_TN_SWAP_BYTES)     \
        return 0;                                                                                          \
    T ct[FNN_TN_SWAP_BYTES / sizeof(T)];                                                                   \
    fnn_##X##_nn(N, M, K, B, 1, ldb, A, lda, ct, M, 0, 0, 0, 0);                                           \
    for (int i = 0; i < M; i++) {                                                                          \
        T* c = C + (long)i * ldc;                                                                          \
        for (int j = 0; j < N; j++) c[j] = acc ? c[j] + ct[(long)j * M + i] : ct[(long)j * M + i];         \
    }                                                                                                      \
    return 1;                                                                                              \
}
FNN_TN_SWAP(s, float, 8)
FNN_TN_SWAP(d, double, 4)

/* ------------------------------------------------------------------ entry points */

/* T (cols x rows, leading dimension rows) := B^T for B (rows x cols, leading dimension ldb): full 8 x 8
   (float) / 4 x 4 (double) tiles in registers, the edges element by element. */
FNN_AVX2 static void fnn_s_transpose(int rows, int cols, const float* B, long ldb, float* T) {
    int i0 = 0;
    for (; i0 + 8 <= rows; i0 += 8) {
        int j0 = 0;
        for (; j0 + 8 <= cols; j0 += 8) {
            const float* b = B + (long)i0 * ldb + j0;
            __m256 r0 = _mm256_loadu_ps(b), r1 = _mm256_loadu_ps(b + ldb), r2 = _mm256_loadu_ps(b + 2 * ldb),
                   r3 = _mm256_loadu_ps(b + 3 * ldb), r4 = _mm256_loadu_ps(b + 4 * ldb),
                   r5 = _mm256_loadu_ps(b + 5 * ldb), r6 = _mm256_loadu_ps(b + 6 * ldb),
                   r7 = _mm256_loadu_ps(b + 7 * ldb);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
                   t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
                   t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            r0 = _mm256_shuffle_ps(t0, t2, 0x44); r1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            r2 = _mm256_shuffle_ps(t1, t3, 0x44); r3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            r4 = _mm256_shuffle_ps(t4, t6, 0x44); r5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            r6 = _mm256_shuffle_ps(t5, t7, 0x44); r7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float* t = T + (long)j0 * rows + i0;
            _mm256_storeu_ps(t, _mm256_permute2f128_ps(r0, r4, 0x20));
            _mm256_storeu_ps(t + rows, _mm256_permute2f128_ps(r1, r5, 0x20));
            _mm256_storeu_ps(t + 2 * (long)rows, _mm256_permute2f128_ps(r2, r6, 0x20));
            _mm256_storeu_ps(t + 3 * (long)rows, _mm256_permute2f128_ps(r3, r7, 0x20));
            _mm256_storeu_ps(t + 4 * (long)rows, _mm256_permute2f128_ps(r0, r4, 0x31));
            _mm256_storeu_ps(t + 5 * (long)rows, _mm256_permute2f128_ps(r1, r5, 0x31));
            _mm256_storeu_ps(t + 6 * (long)rows, _mm256_permute2f128_ps(r2, r6, 0x31));
            _mm256_storeu_ps(t + 7 * (long)rows, _mm256_permute2f128_ps(r3, r7, 0x31));
        }
        for (int i = i0; i < i0 + 8; i++)
            for (int j = j0; j < cols; j++) T[(long)j * rows + i] = B[(long)i * ldb + j];
    }
    for (int i = i0; i < rows; i++)
        for (int j = 0; j < cols; j++) T[(long)j * rows + i] = B[(long)i * ldb + j];
}

FNN_AVX2 static void fnn_d_transpose(int rows, int cols, const double* B, long ldb, double* T) {
    int i0 = 0;
    for (; i0 + 4 <= rows; i0 += 4) {
        int j0 = 0;
        for (; j0 + 4 <= cols; j0 += 4) {
            const double* b = B + (long)i0 * ldb + j0;
            const __m256d r0 = _mm256_loadu_pd(b), r1 = _mm256_loadu_pd(b + ldb), r2 = _mm256_loadu_pd(b + 2 * ldb),
                          r3 = _mm256_loadu_pd(b + 3 * ldb);
            const __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1),
                          t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
            double* t = T + (long)j0 * rows + i0;
            _mm256_storeu_pd(t, _mm256_permute2f128_pd(t0, t2, 0x20));
            _mm256_storeu_pd(t + rows, _mm256_permute2f128_pd(t1, t3, 0x20));
            _mm256_storeu_pd(t + 2 * (long)rows, _mm256_permute2f128_pd(t0, t2, 0x31));
            _mm256_storeu_pd(t + 3 * (long)rows, _mm256_permute2f128_pd(t1, t3, 0x31));
        }
        for (int i = i0; i < i0 + 4; i++)
            for (int j = j0; j < cols; j++) T[(long)j * rows + i] = B[(long)i * ldb + j];
    }
    for (int i = i0; i < rows; i++)
        for (int j = 0; j < cols; j++) T[(long)j * rows + i] = B[(long)i * ldb + j];
}

/* op(B) = B^T (trans_b) is first transposed into work (N * K elements), then multiplied as NN: a dot
   product kernel along k loses to OpenBLAS when k is small (the last layer's 10 outputs).
   accumulate: C := C + op(A) @ op(B) (BLAS's beta = 1; the sum over k is rounded, then added to C). */
static void fnn_sgemm_small_acc(int trans_a, int trans_b, int accumulate, int M, int N, int K, const float* A,
                                int lda, const float* B, int ldb, float* C, int ldc, float* work) {
    if (trans_b) {
        fnn_s_transpose(N, K, B, ldb, work);
        B = work;
        ldb = N;
    }
    if (trans_a) {
        if (!trans_b && fnn_s_tn_swap(accumulate != 0, M, N, K, A, lda, B, ldb, C, ldc)) return;
        fnn_s_nn(M, N, K, A, 1, lda, B, ldb, C, ldc, accumulate != 0, 0, 0, 0);
    } else fnn_s_nn(M, N, K, A, lda, 1, B, ldb, C, ldc, accumulate != 0, 0, 0, 0);
}

static void fnn_dgemm_small_acc(int trans_a, int trans_b, int accumulate, int M, int N, int K, const double* A,
                                int lda, const double* B, int ldb, double* C, int ldc, double* work) {
    if (trans_b) {
        fnn_d_transpose(N, K, B, ldb, work);
        B = work;
        ldb = N;
    }
    if (trans_a) {
        if (!trans_b && fnn_d_tn_swap(accumulate != 0, M, N, K, A, lda, B, ldb, C, ldc)) return;
        fnn_d_nn(M, N, K, A, 1, lda, B, ldb, C, ldc, accumulate != 0, 0, 0, 0);
    } else fnn_d_nn(M, N, K, A, lda, 1, B, ldb, C, ldc, accumulate != 0, 0, 0, 0);
}

/* beta = 0 (C is overwritten) */
static void fnn_sgemm_small(int trans_a, int trans_b, int M, int N, int K, const float* A, int lda,
                            const float* B, int ldb, float* C, int ldc, float* work) {
    fnn_sgemm_small_acc(trans_a, trans_b, 0, M, N, K, A, lda, B, ldb, C, ldc, work);
}

static void fnn_dgemm_small(int trans_a, int trans_b, int M, int N, int K, const double* A, int lda,
                            const double* B, int ldb, double* C, int ldc, double* work) {
    fnn_dgemm_small_acc(trans_a, trans_b, 0, M, N, K, A, lda, B, ldb, C, ldc, work);
}

/* Inference (the eval-mode plan's Dense): C := act(A @ B + bias), A (M x K) and B (K x N) not transposed, bias
   (N entries) or NULL, act ReLU (relu != 0) or none: the bits of fnn_?gemm_small followed by _activations'
   bias + activation pass, in one pass over C. */
static void fnn_sgemm_bias_act(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C,
                               int ldc, const float* bias, int relu) {
    fnn_s_nn(M, N, K, A, lda, 1, B, ldb, C, ldc, 0, bias, relu != 0, 0);
}

static void fnn_dgemm_bias_act(int M, int N, int K, const double* A, int lda, const double* B, int ldb, double* C,
                               int ldc, const double* bias, int relu) {
    fnn_d_nn(M, N, K, A, lda, 1, B, ldb, C, ldc, 0, bias, relu != 0, 0);
}

/* The training plan's input gradient: C := (op(A) @ op(B)) * relu'(G), i.e. G <= 0 ? +0 : the product, for G
   the previous Dense's ReLU output (M x N, leading dimension ldc like C): the bits of fnn_?gemm_small followed by
   _activations' ReLU backward pass, in one pass over C. A not transposed; B^T needs `work` as in
   fnn_?gemm_small. */
#define FNN_GATED(X, T)                                                                                    \
static void fnn_##X##gemm_small_gated(int trans_b, int M, int N, int K, const T* A, int lda, const T* B,   \
                                      int ldb, T* C, int ldc, T* work, const T* G) {                       \
    if (trans_b) {                                                                                         \
        fnn_##X##_transpose(N, K, B, ldb, work);                                                           \
        B = work;                                                                                          \
        ldb = N;                                                                                           \
    }                                                                                                      \
    fnn_##X##_nn(M, N, K, A, lda, 1, B, ldb, C, ldc, 0, 0, 0, (long)((uintptr_t)G - (uintptr_t)C));        \
}
FNN_GATED(s, float)
FNN_GATED(d, double)

#else   /* not x86-64 with GCC/Clang: never available */

static int fnn_gemm_available(void) { return 0; }
static int fnn_gemm_wide(void) { return 0; }
static void fnn_gemm_allow_wide(int on) { (void)on; }
static void fnn_sgemm_small_acc(int trans_a, int trans_b, int accumulate, int M, int N, int K, const float* A,
                                int lda, const float* B, int ldb, float* C, int ldc, float* work) {
    (void)trans_a; (void)trans_b; (void)accumulate; (void)M; (void)N; (void)K; (void)A; (void)lda; (void)B;
    (void)ldb; (void)C; (void)ldc; (void)work;
}
static void fnn_dgemm_small_acc(int trans_a, int trans_b, int accumulate, int M, int N, int K, const double* A,
                                int lda, const double* B, int ldb, double* C, int ldc, double* work) {
    (void)trans_a; (void)trans_b; (void)accumulate; (void)M; (void)N; (void)K; (void)A; (void)lda; (void)B;
    (void)ldb; (void)C; (void)ldc; (void)work;
}
static void fnn_sgemm_small(int trans_a, int trans_b, int M, int N, int K, const float* A, int lda,
                            const float* B, int ldb, float* C, int ldc, float* work) {
    (void)trans_a; (void)trans_b; (void)M; (void)N; (void)K; (void)A; (void)lda; (void)B; (void)ldb; (void)C;
    (void)ldc; (void)work;
}
static void fnn_dgemm_small(int trans_a, int trans_b, int M, int N, int K, const double* A, int lda,
                            const double* B, int ldb, double* C, int ldc, double* work) {
    (void)trans_a; (void)trans_b; (void)M; (void)N; (void)K; (void)A; (void)lda; (void)B; (void)ldb; (void)C;
    (void)ldc; (void)work;
}
static void fnn_sgemm_bias_act(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C,
                               int ldc, const float* bias, int relu) {
    (void)M; (void)N; (void)K; (void)A; (void)lda; (void)B; (void)ldb; (void)C; (void)ldc; (void)bias; (void)relu;
}
static void fnn_dgemm_bias_act(int M, int N, int K, const double* A, int lda, const double* B, int ldb, double* C,
                               int ldc, const double* bias, int relu) {
    (void)M; (void)N; (void)K; (void)A; (void)lda; (void)B; (void)ldb; (void)C; (void)ldc; (void)bias; (void)relu;
}
static void fnn_sgemm_small_gated(int trans_b, int M, int N, int K, const float* A, int lda, const float* B,
                                  int ldb, float* C, int ldc, float* work, const float* G) {
    (void)trans_b; (void)M; (void)N; (void)K; (void)A; (void)lda; (void)B; (void)ldb; (void)C; (void)ldc;
    (void)work; (void)G;
}
static void fnn_dgemm_small_gated(int trans_b, int M, int N, int K, const double* A, int lda, const double* B,
                                  int ldb, double* C, int ldc, double* work, const double* G) {
    (void)trans_b; (void)M; (void)N; (void)K; (void)A; (void)lda; (void)B; (void)ldb; (void)C; (void)ldc;
    (void)work; (void)G;
}

#endif
#endif
