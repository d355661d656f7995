/* fnn_omp.h - OpenMP queries that compile with or without OpenMP.
 *
 * fastnn may be built with FASTNN_NO_OPENMP=1; then _OPENMP is undefined,
 * Cython's prange runs serially and these report a single thread. */
#ifndef FNN_OMP_H
#define FNN_OMP_H

#ifdef _OPENMP
#include <omp.h>
static inline int fnn_omp_enabled(void) { return 1; }
static inline int fnn_omp_get_max_threads(void) { return omp_get_max_threads(); }
static inline void fnn_omp_set_num_threads(int n) { omp_set_num_threads(n); }
static inline int fnn_omp_version(void) { return _OPENMP; }
#else
static inline int fnn_omp_enabled(void) { return 0; }
static inline int fnn_omp_get_max_threads(void) { return 1; }
static inline void fnn_omp_set_num_threads(int n) { (void)n; }
static inline int fnn_omp_version(void) { return 0; }
#endif

#endif
