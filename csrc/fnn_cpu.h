/* fnn_cpu.h - what the CPU can run, asked once: the headers whose loops have an AVX2 version (fnn_math.h,
 * fnn_reduce.h) pick it at run time with fnn_cpu_avx2(). The wheel itself is built for x86-64's SSE2 baseline. */
#ifndef FNN_CPU_H
#define FNN_CPU_H

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
static int fnn_cpu_avx2(void)
{
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2");
    }
    return cached;
}
#else
static int fnn_cpu_avx2(void) { return 0; }
#endif

#endif
