# The C side of the kernels, declared once: every function of csrc/fnn_*.h that a module calls.
# Modules cimport the names they use from here (never a `cdef extern` block of their own). Each header
# documents its functions; all are static (inline) C, so a module compiles in what it calls.
from libc.stdint cimport uint32_t, uint64_t

cdef extern from "fnn_omp.h" nogil:
    # OpenMP queries that also compile without OpenMP (FASTNN_NO_OPENMP=1: one thread).
    int fnn_omp_enabled()
    int fnn_omp_get_max_threads()
    void fnn_omp_set_num_threads(int n)
    int fnn_omp_version()

cdef extern from "fnn_math.h" nogil:
    # Branch-free float32 transcendentals (vectorisable; within 1-3 ulp).
    float fnn_expf(float x)
    float fnn_tanhf(float x)
    float fnn_erff(float x)
    float fnn_expm1f(float x)
    # Branch-free double exp (under 1 ulp, no FMA: the same bits on every x86-64), and a SIMD loop over it.
    double fnn_exp(double x)
    void fnn_exp_inplace(long n, double* x)        # x := exp(x), SSE2 or AVX2 (same bits)
    void fnn_exp_inplace_base(long n, double* x)   # the baseline (SSE2) loop, for tests

cdef extern from "fnn_reduce.h" nogil:
    # Sums in double, AVX2 where available (the baseline loops' bits): column sums and the sum of squares.
    void fnn_colsum_block_f32(const float* dz, long ld, long n, long w, float* db, int accumulate)
    void fnn_colsum_block_f64(const double* dz, long ld, long n, long w, double* db, int accumulate)
    void fnn_sum_sq_f32(const float* w, long size, double* s)    # s[16] += the partial sums of w^2
    void fnn_sum_sq_f64(const double* w, long size, double* s)
    void fnn_reduce_allow_simd(int on)                            # test hook: 0 runs the baseline loops

cdef extern from "fnn_rng.h" nogil:
    # Philox4x32-10, the dropout masks' counter-based generator.
    void fnn_philox4x32_10(const uint32_t* ctr, uint64_t seed, uint32_t* out)
    void fnn_philox_block(uint64_t seed, uint32_t stream, uint64_t step, uint32_t block, uint32_t* out)

cdef extern from "fnn_gemm.h" nogil:
    # The own small-GEMM kernels (AVX2/FMA) and the rule that picks them over BLAS.
    int fnn_gemm_available()
    int fnn_gemm_wide()                  # AVX-512VL: the wide panels (32 registers) are used
    void fnn_gemm_allow_wide(int on)     # test hook: this module's copy of the kernels only
    int fnn_gemm_small_rule(long M, long N, long K, int f64, int threads)
    int fnn_gemm_infer_rule(long M, long N, long K, int f64, int threads)
    void fnn_sgemm_small(int trans_a, int trans_b, int M, int N, int K, const float* A, int lda,
                         const float* B, int ldb, float* C, int ldc, float* work)
    void fnn_dgemm_small(int trans_a, int trans_b, int M, int N, int K, const double* A, int lda,
                         const double* B, int ldb, double* C, int ldc, double* work)
    void fnn_sgemm_small_acc(int trans_a, int trans_b, int accumulate, int M, int N, int K, const float* A,
                             int lda, const float* B, int ldb, float* C, int ldc, float* work)
    void fnn_dgemm_small_acc(int trans_a, int trans_b, int accumulate, int M, int N, int K, const double* A,
                             int lda, const double* B, int ldb, double* C, int ldc, double* work)
    # the training plan's input gradient with ReLU's backward (G <= 0 ? +0 : the product) in the store
    void fnn_sgemm_small_gated(int trans_b, int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                               float* C, int ldc, float* work, const float* G)
    void fnn_dgemm_small_gated(int trans_b, int M, int N, int K, const double* A, int lda, const double* B,
                               int ldb, double* C, int ldc, double* work, const double* G)
    void fnn_sgemm_bias_act(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C,
                            int ldc, const float* bias, int relu)
    void fnn_dgemm_bias_act(int M, int N, int K, const double* A, int lda, const double* B, int ldb, double* C,
                            int ldc, const double* bias, int relu)

cdef extern from "fnn_optim.h" nogil:
    # Adam's AVX2 update (fastnn._kernels._optim).
    int fnn_optim_avx2_available()
    void fnn_adam_avx2_f32(long lo, long hi, int maximize, int coupled, int decoupled, int small, int amsgrad,
                           float* param, const float* grad, float* exp_avg, float* exp_avg_sq, float* max_exp_avg_sq,
                           float w1, float beta2, float omb2, float eps, float wd, float decay, float step,
                           float bc2s)
    void fnn_adam_avx2_f64(long lo, long hi, int maximize, int coupled, int decoupled, int small, int amsgrad,
                           double* param, const double* grad, double* exp_avg, double* exp_avg_sq,
                           double* max_exp_avg_sq, double w1, double beta2, double omb2, double eps, double wd,
                           double decay, double step, double bc2s)
    # scikit-learn's Adam (SK_ADAM), AVX2 without FMA: the scalar loop's bits
    void fnn_sk_adam_avx2_f64(long lo, long hi, double* param, const double* grad, double* ms, double* vs, double b1,
                              double omb1, double b2, double omb2, double nlr, double eps)
    void fnn_sk_adam_avx2_f32(long lo, long hi, float* param, const float* grad, float* ms, float* vs, float b1,
                              float omb1, float b2, float omb2, double nlr, float eps)
