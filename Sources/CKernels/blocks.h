// Bytes per block of the ggml types the integer kernels know, shared by the kernel files.
#ifndef LLK_BLOCKS_H
#define LLK_BLOCKS_H

static inline int llk_block_bytes(int type) {
    switch (type) {
    case 2: return 18;    // Q4_0: half d, 16 B nibbles
    case 3: return 20;    // Q4_1: half d, half m, 16 B nibbles
    case 6: return 22;    // Q5_0: half d, 4 B high bits, 16 B nibbles
    case 7: return 24;    // Q5_1: half d, half m, 4 B high bits, 16 B nibbles
    case 8: return 34;    // Q8_0: half d, 32 B
    case 10: return 84;   // Q2_K: 16 B scales and mins (4 bits each), 64 B 2-bit values, half d, half dmin
    case 11: return 110;  // Q3_K: 32 B high bits, 64 B 2-bit values, 12 B 6-bit scales, half d
    case 12: return 144;  // Q4_K: half d, half dmin, 12 B scales, 128 B nibbles
    case 13: return 176;  // Q5_K: as Q4_K plus 32 B high bits
    case 14: return 210;  // Q6_K: 128 B low nibbles, 64 B high bits, 16 scales, half d
    default: return 0;
    }
}

// The 256-value "K" types: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
static inline int llk_is_k_type(int type) { return type >= 10 && type <= 14; }

// How far ahead of a streamed weight matrix the kernels prefetch, in bytes; 0 asks for every line
// of the block being read at once. Which is faster depends on the CPU: on a Zen 5 EPYC one core
// needed 8 KB in flight (28 GB/s one block ahead, 38-42 GB/s at 8 KB), on a Zen 4 EPYC the same
// prefetches halved K-type generation. Set at run time (llk_set_prefetch_ahead, PrefetchTuner),
// read once per kernel call.
#include <stdatomic.h>
extern _Atomic int llk_prefetch_ahead_bytes;
static inline int llk_prefetch_ahead(void) { return atomic_load_explicit(&llk_prefetch_ahead_bytes, memory_order_relaxed); }

#if defined(__aarch64__)
#include <arm_neon.h>
// acc + the sums of 4 products of signed bytes, per 32-bit lane: SDOT where the CPU has it
// (ARMv8.2 dot product: every Apple M chip), else widening multiplies and pairwise adds.
static inline int32x4_t llk_neon_dot(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, a, b);
#else
    const int16x8_t lo = vmull_s8(vget_low_s8(a), vget_low_s8(b)), hi = vmull_high_s8(a, b);
    return vpadalq_s16(vpadalq_s16(acc, lo), hi);
#endif
}
#endif

#endif
