/* fnn_rng.h - Philox4x32-10, a counter-based random number generator
 * (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11).
 *
 * A counter-based RNG is a pure function of (key, counter): the random bits
 * for element i do not depend on which thread computes them or in what order,
 * so dropout masks are identical for any thread count. fastnn uses
 *     key     = the model seed (64 bits)
 *     counter = (block index, stream id, step low, step high)
 * where block = element index / 4 and each call yields 4 words, one per element. */
#ifndef FNN_RNG_H
#define FNN_RNG_H

#include <stdint.h>

static inline void fnn_philox4x32_10(const uint32_t ctr_in[4], uint64_t seed, uint32_t out[4])
{
    uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; ++r) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0;
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* The 4 random words of block `block` in stream (stream, step) under `seed`. */
static inline void fnn_philox_block(uint64_t seed, uint32_t stream, uint64_t step,
                                    uint32_t block, uint32_t out[4])
{
    uint32_t ctr[4] = {block, stream, (uint32_t)step, (uint32_t)(step >> 32)};
    fnn_philox4x32_10(ctr, seed, out);
}

#endif
