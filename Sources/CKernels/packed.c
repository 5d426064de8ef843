// Weights regrouped eight rows at a time ("x8"), for AVX2 products that give one output lane per
// row: a 32-byte register holds 4 consecutive values of each of the 8 rows, so one maddubs with
// 4 activation bytes broadcast to every lane works on 8 rows at once and the lanes never need a
// horizontal sum. The same arithmetic as the per-row kernels (exact integer sums per block or
// sub-block, then the float scales in the same order), so results match their scalar twins.
//
// A group holds, per block (per super block for the K types), the 8 rows' scales and then their
// values. Layouts (r = row in the group, i < 4 a byte of a 4-value run):
//   Q4_0  8 half d | 4 x 32 B: byte 4r+i of run k = qs_r[4k+i] (low nibble value 4k+i, high 16+4k+i)
//   Q4_1  8 half d | 8 half m | as Q4_0
//   Q5_0  8 half d | 8 x 4 B high bits (qh of row r at byte 4r) | as Q4_0
//   Q5_1  8 half d | 8 half m | 8 x 4 B high bits | as Q4_0
//   Q8_0  8 half d | 8 x 32 B: byte 4r+i of run k = qs_r[4k+i]
//   Q4_K  8 half d | 8 half dmin | 4 x 16 B scales (byte 2r+e of pair p = scale 2p+e of row r)
//         | 4 x 16 B mins (same) | 32 x 32 B: run 8c+k byte 4r+i = qs_r[32c+4k+i]
//   Q5_K  as Q4_K | 8 x 32 B high bits: run k byte 4r+i = qh_r[4k+i]
//   Q6_K  8 half d | 8 x 16 B scales (pairs, as Q4_K) | 32 x 32 B low bits: run 16n+k byte
//         4r+i = ql_r[64n+4k+i] | 16 x 32 B high bits: run 8n+k byte 4r+i = qh_r[32n+4k+i]
//   Q2_K  8 half d | 8 half dmin | 8 x 16 B scale-and-min bytes (pairs) | 16 x 32 B: run m byte
//         4r+i = qs_r[4m+i]
//   Q3_K  8 half d | 8 x 16 B signed scales (pairs, unpacked from 6 bits) | 16 x 32 B low bits
//         (as Q2_K) | 8 x 32 B high bits: run k byte 4r+i = hmask_r[4k+i]
// Every group is as large as its 8 rows, except Q3_K, Q4_K and Q5_K (32 B more per super block).

#include "CKernels.h"
#include "blocks.h"
#include "half.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LLK_X86 1
#endif

int llk_isa_id(void);
int llk_has_vnni(void);

enum {
    TYPE_Q4_0 = 2, TYPE_Q4_1 = 3, TYPE_Q5_0 = 6, TYPE_Q5_1 = 7, TYPE_Q8_0 = 8,
    TYPE_Q2_K = 10, TYPE_Q3_K = 11, TYPE_Q4_K = 12, TYPE_Q5_K = 13, TYPE_Q6_K = 14
};

void llk_q3k_scales(const uint8_t *s, int8_t sc[16]);  // kquants.c

static int row_block_bytes(int type) { return llk_block_bytes(type); }

static int group_block_bytes(int type) {
    switch (type) {
    case TYPE_Q3_K: return 8 * 110 + 32;
    case TYPE_Q4_K: return 8 * 144 + 32;
    case TYPE_Q5_K: return 8 * 176 + 32;
    default: return 8 * row_block_bytes(type);
    }
}

int llk_x8_supports(int type) { return row_block_bytes(type) != 0; }

int llk_x8_preferred(int type) {
    if (!llk_x8_supports(type) || getenv("LLAMA_NO_REGROUP")) return 0;
    const int isa = llk_isa_id();
    return isa == 1 || isa == 2;
}

int64_t llk_x8_group_bytes(int type, int64_t blocks) { return blocks * group_block_bytes(type); }

// Copies 4 bytes of each of the 8 rows into one 32-byte run.
static void gather_run(uint8_t *run, const uint8_t *const rows[8], int64_t offset) {
    for (int r = 0; r < 8; r++) memcpy(run + 4 * r, rows[r] + offset, 4);
}

static void scatter_run(const uint8_t *run, uint8_t *const rows[8], int64_t offset) {
    for (int r = 0; r < 8; r++) memcpy(rows[r] + offset, run + 4 * r, 4);
}

// Packs (pack = 1) or unpacks (pack = 0) one block of 8 rows; `rows` point at the block in each row.
static void convert_block(int type, int pack, uint8_t *const rows[8], uint8_t *g) {
#define MOVE(dst_packed, src_row, n)                     \
    do {                                                 \
        if (pack) memcpy((dst_packed), (src_row), (n));  \
        else memcpy((void *)(src_row), (dst_packed), (n)); \
    } while (0)
#define RUN(run, offset)                                           \
    do {                                                           \
        if (pack) gather_run((run), (const uint8_t *const *)rows, (offset)); \
        else scatter_run((run), rows, (offset));                   \
    } while (0)
    switch (type) {
    case TYPE_Q4_0:
    case TYPE_Q4_1:
    case TYPE_Q5_0:
    case TYPE_Q5_1: {
        const int header = type == TYPE_Q4_1 || type == TYPE_Q5_1 ? 4 : 2, five = type == TYPE_Q5_0 || type == TYPE_Q5_1;
        for (int r = 0; r < 8; r++) {
            MOVE(g + 2 * r, rows[r], 2);
            if (header == 4) MOVE(g + 16 + 2 * r, rows[r] + 2, 2);
        }
        uint8_t *runs = g + 8 * header + (five ? 32 : 0);
        if (five) RUN(g + 8 * header, header);  // the 32 high bits of each row
        for (int k = 0; k < 4; k++) RUN(runs + 32 * k, header + (five ? 4 : 0) + 4 * k);
        return;
    }
    case TYPE_Q8_0:
        for (int r = 0; r < 8; r++) MOVE(g + 2 * r, rows[r], 2);
        for (int k = 0; k < 8; k++) RUN(g + 16 + 32 * k, 2 + 4 * k);
        return;
    case TYPE_Q4_K:
    case TYPE_Q5_K: {
        for (int r = 0; r < 8; r++) {
            MOVE(g + 2 * r, rows[r], 2);
            MOVE(g + 16 + 2 * r, rows[r] + 2, 2);
        }
        // The 6-bit scales and mins, spread to bytes (pack) or packed back (unpack).
        for (int r = 0; r < 8; r++) {
            uint8_t *s = rows[r] + 4;
            if (pack) {
                for (int j = 0; j < 8; j++) {
                    const uint8_t sc = j < 4 ? s[j] & 63 : (uint8_t)((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
                    const uint8_t mn = j < 4 ? s[j + 4] & 63 : (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
                    g[32 + 16 * (j / 2) + 2 * r + (j & 1)] = sc;
                    g[96 + 16 * (j / 2) + 2 * r + (j & 1)] = mn;
                }
            } else {
                memset(s, 0, 12);
                for (int j = 0; j < 8; j++) {
                    const uint8_t sc = g[32 + 16 * (j / 2) + 2 * r + (j & 1)], mn = g[96 + 16 * (j / 2) + 2 * r + (j & 1)];
                    if (j < 4) {
                        s[j] |= sc & 63;
                        s[j + 4] |= mn & 63;
                    } else {
                        s[j + 4] = (uint8_t)((sc & 0xF) | ((mn & 0xF) << 4));
                        s[j - 4] |= (uint8_t)((sc >> 4) << 6);
                        s[j] |= (uint8_t)((mn >> 4) << 6);
                    }
                }
            }
        }
        const int five = type == TYPE_Q5_K;
        uint8_t *runs = g + 160;
        for (int c = 0; c < 4; c++)
            for (int k = 0; k < 8; k++) RUN(runs + 32 * (8 * c + k), (five ? 48 : 16) + 32 * c + 4 * k);
        if (five)
            for (int k = 0; k < 8; k++) RUN(runs + 1024 + 32 * k, 16 + 4 * k);
        return;
    }
    case TYPE_Q2_K:
        for (int r = 0; r < 8; r++) {
            MOVE(g + 2 * r, rows[r] + 80, 2);
            MOVE(g + 16 + 2 * r, rows[r] + 82, 2);
            for (int j = 0; j < 16; j++) MOVE(g + 32 + 16 * (j / 2) + 2 * r + (j & 1), rows[r] + j, 1);
        }
        for (int m = 0; m < 16; m++) RUN(g + 160 + 32 * m, 16 + 4 * m);
        return;
    case TYPE_Q3_K:
        for (int r = 0; r < 8; r++) {
            MOVE(g + 2 * r, rows[r] + 108, 2);
            // The 6-bit scales, spread to signed bytes (pack) or packed back (unpack).
            uint8_t *s = rows[r] + 96;
            if (pack) {
                int8_t sc[16];
                llk_q3k_scales(s, sc);
                for (int j = 0; j < 16; j++) g[16 + 16 * (j / 2) + 2 * r + (j & 1)] = (uint8_t)sc[j];
            } else {
                memset(s, 0, 12);
                for (int j = 0; j < 16; j++) {
                    const int l = (int8_t)g[16 + 16 * (j / 2) + 2 * r + (j & 1)] + 32;
                    if (j < 8) s[j] |= (uint8_t)(l & 0xF);
                    else s[j - 8] |= (uint8_t)((l & 0xF) << 4);
                    s[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
                }
            }
        }
        for (int m = 0; m < 16; m++) RUN(g + 144 + 32 * m, 32 + 4 * m);
        for (int k = 0; k < 8; k++) RUN(g + 144 + 512 + 32 * k, 4 * k);
        return;
    case TYPE_Q6_K: {
        for (int r = 0; r < 8; r++) {
            MOVE(g + 2 * r, rows[r] + 208, 2);
            for (int j = 0; j < 16; j++) MOVE(g + 16 + 16 * (j / 2) + 2 * r + (j & 1), rows[r] + 192 + j, 1);
        }
        uint8_t *low = g + 144, *high = g + 144 + 1024;
        for (int n = 0; n < 2; n++) {
            for (int k = 0; k < 16; k++) RUN(low + 32 * (16 * n + k), 64 * n + 4 * k);
            for (int k = 0; k < 8; k++) RUN(high + 32 * (8 * n + k), 128 + 32 * n + 4 * k);
        }
        return;
    }
    default: return;
    }
#undef MOVE
#undef RUN
}

static void convert_group(int type, int pack, const uint8_t *rows, int64_t row_bytes, int64_t blocks, uint8_t *group) {
    const int bytes = row_block_bytes(type), gbytes = group_block_bytes(type);
    for (int64_t b = 0; b < blocks; b++) {
        uint8_t *r8[8];
        for (int r = 0; r < 8; r++) r8[r] = (uint8_t *)rows + r * row_bytes + b * bytes;
        convert_block(type, pack, r8, group + b * gbytes);
    }
}

void llk_x8_pack(int type, const void *rows, int64_t row_bytes, int64_t blocks, void *group) {
    convert_group(type, 1, (const uint8_t *)rows, row_bytes, blocks, (uint8_t *)group);
}

void llk_x8_unpack(int type, const void *group, int64_t blocks, void *rows, int64_t row_bytes) {
    convert_group(type, 0, (const uint8_t *)rows, row_bytes, blocks, (uint8_t *)group);
}

void llk_x8_unpack_row(int type, const void *group, int64_t blocks, int row, void *out) {
    const int bytes = row_block_bytes(type), gbytes = group_block_bytes(type);
    uint8_t block[8][256];
    uint8_t *r8[8];
    for (int r = 0; r < 8; r++) r8[r] = block[r];
    for (int64_t b = 0; b < blocks; b++) {
        convert_block(type, 0, r8, (uint8_t *)group + b * gbytes);
        memcpy((uint8_t *)out + b * bytes, block[row & 7], (size_t)bytes);
    }
}

// The layout of llk_qk_prepare (kquants.c).
typedef struct {
    float d;
    int16_t sums[16];
    int8_t q[256];
} q8k_block;

// The layout of llk_q8_prepare (quantized.c): pairs of blocks, then the float sums, then the
// int32 bias sums.
typedef struct {
    int8_t q[64];
    int32_t init[16];
    float d[16];
} q8_pair;

// ---------------------------------------------------------------------------------------------
// AVX2 kernels.

#if LLK_X86
#define ATTR_X8 __attribute__((target("avx2,fma,f16c")))

ATTR_X8 static inline __m256i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

ATTR_X8 static inline __m256 halves8(const uint8_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

// --- The 32-value types: tokens TT at a time (1..4), each run decoded once for all of them. ---

ATTR_X8 __attribute__((always_inline)) static inline void legacy_tile(
    const int type, const int TT, const int stream, const int prefetch, const uint8_t *group, int64_t blocks, const uint8_t *acts,
    int64_t token_bytes, float *out, int64_t out_stride) {
    const int64_t npairs = (blocks + 1) / 2;
    const int gbytes = group_block_bytes(type), ahead = prefetch / gbytes * gbytes;
    const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256 acc[4];
    for (int t = 0; t < TT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < blocks; b++) {
        const uint8_t *g = group + b * gbytes;
        // Generation reads each group once, from memory: ask for the blocks ahead.
        if (stream)
            for (int off = 0; off < gbytes; off += 64) _mm_prefetch((const char *)g + ahead + off, _MM_HINT_T0);
        __m256i isum[4];
        if (type == TYPE_Q8_0) {
            for (int t = 0; t < TT; t++) isum[t] = _mm256_setzero_si256();
            for (int k = 0; k < 8; k++) {
                const __m256i w = _mm256_loadu_si256((const __m256i *)(g + 16 + 32 * k));
                const __m256i aw = _mm256_sign_epi8(w, w);
                for (int t = 0; t < TT; t++) {
                    const q8_pair *pair = (const q8_pair *)(acts + t * token_bytes) + b / 2;
                    const __m256i q = _mm256_sign_epi8(bcast4(pair->q + 32 * (b & 1) + 4 * k), w);
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, q), ones));
                }
            }
        } else if (type == TYPE_Q5_0 || type == TYPE_Q5_1) {
            const uint8_t *high = g + (type == TYPE_Q5_1 ? 32 : 16), *runs = high + 32;
            const __m256i h = _mm256_loadu_si256((const __m256i *)high);
            // Byte 4r+i of a run takes bit i of its lane's low byte after the shift.
            const __m256i spread = _mm256_set_epi8(12, 12, 12, 12, 8, 8, 8, 8, 4, 4, 4, 4, 0, 0, 0, 0,
                                                   12, 12, 12, 12, 8, 8, 8, 8, 4, 4, 4, 4, 0, 0, 0, 0);
            const __m256i bit = _mm256_set1_epi32(0x08040201), fifth = _mm256_set1_epi8(0x10);
            __m256i s16[4];
            for (int t = 0; t < TT; t++) isum[t] = s16[t] = _mm256_setzero_si256();
#define HIGH(shift) _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(_mm256_srli_epi32(h, shift), spread), bit), bit), fifth)
            for (int k = 0; k < 4; k++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(runs + 32 * k));
                const __m256i lo = _mm256_or_si256(_mm256_and_si256(v, low4), HIGH(4 * k));
                const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), low4), HIGH(16 + 4 * k));
                for (int t = 0; t < TT; t++) {
                    const int8_t *q = ((const q8_pair *)(acts + t * token_bytes) + b / 2)->q + 32 * (b & 1);
                    // 5-bit values: four pair sums of at most 2 x 31 x 127 fit int16.
                    s16[t] = _mm256_add_epi16(s16[t], _mm256_maddubs_epi16(lo, bcast4(q + 4 * k)));
                    s16[t] = _mm256_add_epi16(s16[t], _mm256_maddubs_epi16(hi, bcast4(q + 16 + 4 * k)));
                    if (k & 1) {
                        isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(s16[t], ones));
                        s16[t] = _mm256_setzero_si256();
                    }
                }
            }
#undef HIGH
            if (type == TYPE_Q5_0)
                for (int t = 0; t < TT; t++) {
                    const int32_t *bias = (const int32_t *)((const float *)((const q8_pair *)(acts + t * token_bytes) + npairs) + 2 * npairs);
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_set1_epi32(bias[b]));
                }
        } else {
            const uint8_t *runs = g + (type == TYPE_Q4_1 ? 32 : 16);
            __m256i s16[4];
            for (int t = 0; t < TT; t++) s16[t] = _mm256_setzero_si256();
            for (int k = 0; k < 4; k++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(runs + 32 * k));
                const __m256i lo = _mm256_and_si256(v, low4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
                for (int t = 0; t < TT; t++) {
                    const int8_t *q = ((const q8_pair *)(acts + t * token_bytes) + b / 2)->q + 32 * (b & 1);
                    // 4-bit values x 8-bit activations: 8 pair sums of at most 2 x 15 x 127 fit int16.
                    s16[t] = _mm256_add_epi16(s16[t], _mm256_maddubs_epi16(lo, bcast4(q + 4 * k)));
                    s16[t] = _mm256_add_epi16(s16[t], _mm256_maddubs_epi16(hi, bcast4(q + 16 + 4 * k)));
                }
            }
            for (int t = 0; t < TT; t++) {
                isum[t] = _mm256_madd_epi16(s16[t], ones);
                if (type == TYPE_Q4_0) {
                    const int32_t *bias = (const int32_t *)((const float *)((const q8_pair *)(acts + t * token_bytes) + npairs) + 2 * npairs);
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_set1_epi32(bias[b]));
                }
            }
        }
        const __m256 dw = halves8(g);
        for (int t = 0; t < TT; t++) {
            const q8_pair *pair = (const q8_pair *)(acts + t * token_bytes) + b / 2;
            const __m256 scale = _mm256_mul_ps(dw, _mm256_set1_ps(pair->d[8 * (b & 1)]));
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(scale, _mm256_cvtepi32_ps(isum[t])));
            if (type == TYPE_Q4_1 || type == TYPE_Q5_1) {
                const float *sums = (const float *)((const q8_pair *)(acts + t * token_bytes) + npairs);
                acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(halves8(g + 16), _mm256_set1_ps(sums[b])));
            }
        }
    }
    for (int t = 0; t < TT; t++) _mm256_storeu_ps(out + t * out_stride, acc[t]);
}

ATTR_X8 static void legacy_groups(int type, const uint8_t *packed, int64_t groups, int64_t blocks, const uint8_t *acts,
                                  int64_t tokens, float *out, int64_t out_stride) {
    const int64_t token_bytes = llk_q8_token_bytes(blocks), group_bytes = llk_x8_group_bytes(type, blocks);
    const int prefetch = llk_prefetch_ahead();
    // Token blocks of 64 keep their activations in L2 while every group of rows meets them.
    for (int64_t t0 = 0; t0 < tokens; t0 += 64) {
        const int64_t tend = tokens - t0 < 64 ? tokens : t0 + 64;
        for (int64_t gi = 0; gi < groups; gi++) {
            const uint8_t *g = packed + gi * group_bytes;
            for (int64_t t = t0; t < tend; t += 4) {
                const int tt = (int)(tend - t < 4 ? tend - t : 4);
                const uint8_t *a = acts + t * token_bytes;
                float *o = out + t * out_stride + 8 * gi;
#define TILE(T, N) case N: legacy_tile(T, N, tokens <= 4, prefetch, g, blocks, a, token_bytes, o, out_stride); break;
#define TYPE_TILES(T) case T: switch (tt) { TILE(T, 1) TILE(T, 2) TILE(T, 3) TILE(T, 4) } break;
                switch (type) {
                    TYPE_TILES(TYPE_Q4_0) TYPE_TILES(TYPE_Q4_1) TYPE_TILES(TYPE_Q5_0) TYPE_TILES(TYPE_Q5_1) TYPE_TILES(TYPE_Q8_0)
                }
#undef TYPE_TILES
#undef TILE
            }
        }
    }
}

// --- The K types. A super block of a group is decoded into 64 runs of 8-bit values (run j:
// values 4j..4j+3 of each row), 16 per-sub-block scale vectors (int16 lanes 2r, 2r+1: the scale
// of row r for 16 values) and 8 bias vectors (lanes 2r, 2r+1: what row r's sub-blocks 2p and
// 2p+1 subtract per activation sum). ---

typedef struct {
    __m256i runs[64];
    __m256i scales[16];
    __m256i bias[8];
    __m256 d, dmin;  // dmin unused where the bias is subtracted in integers (Q3_K, Q6_K)
} decoded_k;

ATTR_X8 static inline void duplicate_scales(__m256i pair, __m256i *even, __m256i *odd) {
    *even = _mm256_shufflehi_epi16(_mm256_shufflelo_epi16(pair, 0xA0), 0xA0);  // lanes 0,0,2,2
    *odd = _mm256_shufflehi_epi16(_mm256_shufflelo_epi16(pair, 0xF5), 0xF5);   // lanes 1,1,3,3
}

// Loops whose index picks shift counts: unrolled, so every count is an immediate.
#define UNROLL _Pragma("clang loop unroll(full)")

// Where run j of a packed super block (values 4j..4j+3 of each row) lives: its value bits are
// (v >> vshift) & vmask, and, where there is a high-bit run (h > 0), ((h >> hshift) & hmask) << hleft
// on top. Offsets are from the super block's start.
typedef struct {
    int v, vshift, vmask, h, hshift, hmask, hleft;
} k_run_bits;

static inline k_run_bits k_run_bits_of(const int type, const int j) {
    if (type == TYPE_Q2_K || type == TYPE_Q3_K) {
        // Value 128n + 32m + 4k + i: bits 2m of packed run 8n + k (Q3_K: the third bit is bit
        // 4n + m of high-bit run k).
        const int n = j / 32, m = j / 8 % 4, k = j % 8, low = type == TYPE_Q2_K ? 160 : 144;
        return (k_run_bits){low + 32 * (8 * n + k), 2 * m, 3, type == TYPE_Q3_K ? low + 512 + 32 * k : 0, 4 * n + m, 1, 2};
    }
    if (type == TYPE_Q6_K) {
        // Run 32n + 8m + k: the low nibbles of packed run 16n + k (m 0) or 16n + k + 8 (m 1), their
        // high nibbles for m 2 and 3; bits 2m, 2m + 1 of high run 8n + k on top.
        const int n = j / 32, m = j / 8 % 4, k = j % 8;
        return (k_run_bits){144 + 32 * (16 * n + k + 8 * (m & 1)), m < 2 ? 0 : 4, 15, 144 + 1024 + 32 * (8 * n + k), 2 * m, 3, 4};
    }
    // Q4_K, Q5_K: run 16c + k is the low nibbles of packed run 8c + k, run 16c + 8 + k their high
    // nibbles (Q5_K: bit 2c or 2c + 1 of high-bit run k on top).
    const int c = j / 16, upper = j / 8 % 2, k = j % 8;
    return (k_run_bits){160 + 32 * (8 * c + k), 4 * upper, 15, type == TYPE_Q5_K ? 160 + 1024 + 32 * k : 0, 2 * c + upper, 1, 4};
}

// Run j decoded straight from the group.
ATTR_X8 __attribute__((always_inline)) static inline __m256i k_run(const int type, const uint8_t *g, const int j) {
    const k_run_bits w = k_run_bits_of(type, j);
    __m256i r = _mm256_and_si256(_mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)(g + w.v)), w.vshift), _mm256_set1_epi8((char)w.vmask));
    if (w.h) {
        // Moved by hleft - hshift in 16-bit lanes, then masked: no bit of the next byte lands inside the mask.
        const __m256i h = _mm256_loadu_si256((const __m256i *)(g + w.h));
        const __m256i moved = w.hleft >= w.hshift ? _mm256_slli_epi16(h, w.hleft - w.hshift) : _mm256_srli_epi16(h, w.hshift - w.hleft);
        r = _mm256_or_si256(r, _mm256_and_si256(moved, _mm256_set1_epi8((char)(w.hmask << w.hleft))));
    }
    return r;
}

// The scales, biases and float scales of a packed super block (all of decode_k but the runs).
ATTR_X8 __attribute__((always_inline)) static inline void decode_k_consts(const int type, const uint8_t *g, const int ahead, decoded_k *out) {
    // Groups are read in order: ask for the super block `ahead` bytes on (whole blocks; 0: this one).
    const int gbytes = group_block_bytes(type);
    for (int off = 0; off < gbytes; off += 64) _mm_prefetch((const char *)g + ahead + off, _MM_HINT_T0);
    out->d = halves8(g);
    if (type == TYPE_Q2_K) {
        out->dmin = halves8(g + 16);
        for (int p = 0; p < 8; p++) {
            const __m256i pair = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(g + 32 + 16 * p)));
            duplicate_scales(_mm256_and_si256(pair, _mm256_set1_epi16(0xF)), &out->scales[2 * p], &out->scales[2 * p + 1]);
            out->bias[p] = _mm256_srli_epi16(pair, 4);  // the mins
        }
    } else if (type == TYPE_Q3_K || type == TYPE_Q6_K) {
        for (int p = 0; p < 8; p++) {
            const __m256i pair = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(g + 16 + 16 * p)));
            duplicate_scales(pair, &out->scales[2 * p], &out->scales[2 * p + 1]);
            // The values are stored plus 4 (Q3_K) or plus 32 (Q6_K).
            out->bias[p] = type == TYPE_Q3_K ? _mm256_slli_epi16(pair, 2) : _mm256_slli_epi16(pair, 5);
        }
    } else {
        out->dmin = halves8(g + 16);
        for (int p = 0; p < 4; p++) {
            __m256i even, odd;
            duplicate_scales(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(g + 32 + 16 * p))), &even, &odd);
            out->scales[4 * p] = out->scales[4 * p + 1] = even;
            out->scales[4 * p + 2] = out->scales[4 * p + 3] = odd;
            duplicate_scales(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(g + 96 + 16 * p))), &even, &odd);
            out->bias[2 * p] = even;
            out->bias[2 * p + 1] = odd;
        }
    }
}

// A whole super block decoded, for prompts whose tokens meet it many times.
ATTR_X8 __attribute__((always_inline)) static inline void decode_k(const int type, const uint8_t *g, const int ahead, decoded_k *out) {
    decode_k_consts(type, g, ahead, out);
    UNROLL for (int j = 0; j < 64; j++) out->runs[j] = k_run(type, g, j);
}

// A super block's end for TT tokens: the biases against the tokens' sums, then the float steps.
ATTR_X8 __attribute__((always_inline)) static inline void k_finish(const int type, const int TT, const decoded_k *dk,
                                                                    const q8k_block *const a[4], const __m256i isum[4], __m256 acc[4]) {
    __m256i bsum[4];
    for (int t = 0; t < TT; t++) bsum[t] = _mm256_setzero_si256();
    for (int p = 0; p < 8; p++)
        for (int t = 0; t < TT; t++) {
            int32_t s;
            memcpy(&s, a[t]->sums + 2 * p, 4);
            bsum[t] = _mm256_add_epi32(bsum[t], _mm256_madd_epi16(dk->bias[p], _mm256_set1_epi32(s)));
        }
    for (int t = 0; t < TT; t++) {
        const __m256 da = _mm256_set1_ps(a[t]->d);
        if (type == TYPE_Q6_K || type == TYPE_Q3_K) {
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_mul_ps(dk->d, da), _mm256_cvtepi32_ps(_mm256_sub_epi32(isum[t], bsum[t]))));
        } else {
            const __m256 v = _mm256_sub_ps(_mm256_mul_ps(_mm256_mul_ps(dk->d, da), _mm256_cvtepi32_ps(isum[t])),
                                           _mm256_mul_ps(_mm256_mul_ps(dk->dmin, da), _mm256_cvtepi32_ps(bsum[t])));
            acc[t] = _mm256_add_ps(acc[t], v);
        }
    }
}

// One super block times TT tokens, added into acc (one float lane per row). Its runs come from
// dk, or when `g` is given, are decoded from the group as they are used (generation, where each
// run meets one to four tokens: no round trip through memory).
ATTR_X8 __attribute__((always_inline)) static inline void k_tile(const int type, const int TT, const decoded_k *dk,
                                                                  const uint8_t *g, const q8k_block *const a[4], __m256 acc[4]) {
#define RUNS(h, n)                                                  \
    __m256i run[n];                                                 \
    for (int j = 0; j < (n); j++) run[j] = g ? k_run(type, g, 4 * (h) + j) : dk->runs[4 * (h) + j]
    __m256i isum[4];
    for (int t = 0; t < TT; t++) isum[t] = _mm256_setzero_si256();
    if (type == TYPE_Q4_K) {
        // 4-bit values: the pair sums of a whole 32-value sub-block (at most 8 x 2 x 15 x 127) fit int16.
        UNROLL for (int h = 0; h < 16; h += 2) {
            RUNS(h, 8);
            for (int t = 0; t < TT; t++) {
                const int8_t *q = a[t]->q + 16 * h;
                __m256i s = _mm256_maddubs_epi16(run[0], bcast4(q));
                for (int j = 1; j < 8; j++) s = _mm256_add_epi16(s, _mm256_maddubs_epi16(run[j], bcast4(q + 4 * j)));
                isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(s, dk->scales[h]));
            }
        }
    } else if (type != TYPE_Q6_K) {
        // 2, 3 and 5-bit values: four pair sums of at most 2 x 31 x 128 fit int16.
        UNROLL for (int h = 0; h < 16; h++) {
            RUNS(h, 4);
            for (int t = 0; t < TT; t++) {
                const int8_t *q = a[t]->q + 16 * h;
                const __m256i s = _mm256_add_epi16(
                    _mm256_add_epi16(_mm256_maddubs_epi16(run[0], bcast4(q)), _mm256_maddubs_epi16(run[1], bcast4(q + 4))),
                    _mm256_add_epi16(_mm256_maddubs_epi16(run[2], bcast4(q + 8)), _mm256_maddubs_epi16(run[3], bcast4(q + 12))));
                isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(s, dk->scales[h]));
            }
        }
    } else {
        UNROLL for (int h = 0; h < 16; h++) {
            RUNS(h, 4);
            for (int t = 0; t < TT; t++) {
                const int8_t *q = a[t]->q + 16 * h;
                // 6-bit values: two pair sums of at most 2 x 63 x 127 fit int16, not four.
                const __m256i s0 = _mm256_add_epi16(_mm256_maddubs_epi16(run[0], bcast4(q)), _mm256_maddubs_epi16(run[1], bcast4(q + 4)));
                const __m256i s1 = _mm256_add_epi16(_mm256_maddubs_epi16(run[2], bcast4(q + 8)), _mm256_maddubs_epi16(run[3], bcast4(q + 12)));
                isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(_mm256_madd_epi16(s0, dk->scales[h]), _mm256_madd_epi16(s1, dk->scales[h])));
            }
        }
    }
#undef RUNS
    k_finish(type, TT, dk, a, isum, acc);
}


ATTR_X8 __attribute__((always_inline)) static inline void k_groups_typed(
    const int type, const uint8_t *packed, int64_t groups, int64_t blocks, const q8k_block *acts, int64_t tokens,
    float *out, int64_t out_stride) {
    const int64_t group_bytes = llk_x8_group_bytes(type, blocks);
    const int gbytes = group_block_bytes(type), ahead = llk_prefetch_ahead() / gbytes * gbytes;
    decoded_k dk __attribute__((aligned(32)));
    if (tokens <= 4) {
        // Generation: the group is read once, each run decoded in registers for the few tokens.
        for (int64_t gi = 0; gi < groups; gi++) {
            __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
            for (int64_t b = 0; b < blocks; b++) {
                const uint8_t *g = packed + gi * group_bytes + b * gbytes;
                decode_k_consts(type, g, ahead, &dk);
                const q8k_block *a[4];
                for (int t = 0; t < 4; t++) a[t] = acts + (t < tokens ? t : 0) * blocks + b;
                switch (tokens) {
                case 1: k_tile(type, 1, &dk, g, a, acc); break;
                case 2: k_tile(type, 2, &dk, g, a, acc); break;
                case 3: k_tile(type, 3, &dk, g, a, acc); break;
                default: k_tile(type, 4, &dk, g, a, acc); break;
                }
            }
            for (int64_t t = 0; t < tokens; t++) _mm256_storeu_ps(out + t * out_stride + 8 * gi, acc[t]);
        }
        return;
    }
    // Prompts: per group and super block, decode once, then meet a block of up to 64 tokens four
    // at a time, their sums kept in `out` between super blocks.
    for (int64_t t0 = 0; t0 < tokens; t0 += 64) {
        const int64_t tend = tokens - t0 < 64 ? tokens : t0 + 64;
        for (int64_t gi = 0; gi < groups; gi++) {
            for (int64_t t = t0; t < tend; t++) _mm256_storeu_ps(out + t * out_stride + 8 * gi, _mm256_setzero_ps());
            for (int64_t b = 0; b < blocks; b++) {
                decode_k(type, packed + gi * group_bytes + b * gbytes, ahead, &dk);
                for (int64_t t = t0; t < tend; t += 4) {
                    const int tt = (int)(tend - t < 4 ? tend - t : 4);
                    const q8k_block *a[4];
                    __m256 acc[4];
                    for (int j = 0; j < 4; j++) {
                        const int64_t tj = j < tt ? t + j : t;
                        a[j] = acts + tj * blocks + b;
                        acc[j] = _mm256_loadu_ps(out + tj * out_stride + 8 * gi);
                    }
                    switch (tt) {
                    case 1: k_tile(type, 1, &dk, NULL, a, acc); break;
                    case 2: k_tile(type, 2, &dk, NULL, a, acc); break;
                    case 3: k_tile(type, 3, &dk, NULL, a, acc); break;
                    default: k_tile(type, 4, &dk, NULL, a, acc); break;
                    }
                    for (int j = 0; j < tt; j++) _mm256_storeu_ps(out + (t + j) * out_stride + 8 * gi, acc[j]);
                }
            }
        }
    }
}

ATTR_X8 static void k_groups(int type, const uint8_t *packed, int64_t groups, int64_t blocks, const q8k_block *acts,
                             int64_t tokens, float *out, int64_t out_stride) {
    switch (type) {
    case TYPE_Q2_K: k_groups_typed(TYPE_Q2_K, packed, groups, blocks, acts, tokens, out, out_stride); return;
    case TYPE_Q3_K: k_groups_typed(TYPE_Q3_K, packed, groups, blocks, acts, tokens, out, out_stride); return;
    case TYPE_Q4_K: k_groups_typed(TYPE_Q4_K, packed, groups, blocks, acts, tokens, out, out_stride); return;
    case TYPE_Q5_K: k_groups_typed(TYPE_Q5_K, packed, groups, blocks, acts, tokens, out, out_stride); return;
    case TYPE_Q6_K: k_groups_typed(TYPE_Q6_K, packed, groups, blocks, acts, tokens, out, out_stride); return;
    default: return;
    }
}
#endif

// --- AVX-512 VNNI prompt tiles for the K types: 8 rows x 16 tokens, one zmm lane per token. The
// tokens are interleaved first (llk_x8_interleave): per super block, k-group j (values 4j..4j+3)
// holds 4 bytes of each of 16 tokens, shifted by +128 so they are the unsigned side of vpdpbusd;
// the weights (0..63, the signed side) are broadcast 4 bytes at a time straight from the decoded
// runs. The +128 adds 128 x (the row's value sums) to every product: a per-row constant of the
// super block, taken off once. Same integers as k_tile, same float steps, same results. ---

typedef struct {
    uint8_t q[64][64];    // k-group j: token t's 4 values (+128) at bytes 4t..4t+3
    int32_t bsum[8][16];  // pair p: token t's sums of values 32p..32p+15 and 32p+16..32p+31, two int16
    float d[16];
} k_tile16;

// The same for the 32-value types, per block: the weights are the signed side here too (Q4_0 and
// Q5_0 values before their offset, which the token's bias sum carries, as in legacy_tile).
typedef struct {
    uint8_t q[8][64];   // k-group j: token t's 4 values (+128) at bytes 4t..4t+3
    int32_t bias[16];   // Q4_0, Q5_0: the token's bias sum for the block (llk_q8_prepare)
    float d[16];
    float sums[16];     // Q4_1, Q5_1: the token's scaled sum, for the rows' offsets
} q8_tile16;

int64_t llk_x8_tiles_bytes(int type, int64_t blocks, int64_t tokens) {
    return (tokens + 15) / 16 * blocks * (int64_t)(llk_is_k_type(type) ? sizeof(k_tile16) : sizeof(q8_tile16));
}

// 4 bytes of values shifted by +128 into the unsigned side.
static void put_shifted(uint8_t *dst, const int8_t *src) {
    uint32_t v;
    memcpy(&v, src, 4);
    v ^= 0x80808080u;
    memcpy(dst, &v, 4);
}

static void interleave_k(const q8k_block *acts, int64_t tokens, int64_t blocks, int64_t c, k_tile16 *tiles) {
    for (int64_t b = 0; b < blocks; b++) {
        k_tile16 *o = tiles + c * blocks + b;
        for (int t = 0; t < 16; t++) {
            const int64_t token = 16 * c + t;
            if (token >= tokens) {  // padding: zero activations and scale, so the lane adds 0
                for (int j = 0; j < 64; j++) memset(o->q[j] + 4 * t, 0x80, 4);
                for (int p = 0; p < 8; p++) o->bsum[p][t] = 0;
                o->d[t] = 0;
                continue;
            }
            const q8k_block *x = acts + token * blocks + b;
            for (int j = 0; j < 64; j++) put_shifted(o->q[j] + 4 * t, x->q + 4 * j);
            for (int p = 0; p < 8; p++) memcpy(&o->bsum[p][t], x->sums + 2 * p, 4);
            o->d[t] = x->d;
        }
    }
}

// The prepared tokens of llk_q8_prepare: pairs of blocks, then the float sums, then the bias sums.
static void interleave_legacy(const uint8_t *acts, int64_t tokens, int64_t blocks, int64_t c, q8_tile16 *tiles) {
    const int64_t npairs = (blocks + 1) / 2, token_bytes = llk_q8_token_bytes(blocks);
    for (int64_t b = 0; b < blocks; b++) {
        q8_tile16 *o = tiles + c * blocks + b;
        for (int t = 0; t < 16; t++) {
            const int64_t token = 16 * c + t;
            if (token >= tokens) {
                for (int j = 0; j < 8; j++) memset(o->q[j] + 4 * t, 0x80, 4);
                o->bias[t] = 0, o->d[t] = 0, o->sums[t] = 0;
                continue;
            }
            const q8_pair *pair = (const q8_pair *)(acts + token * token_bytes) + b / 2;
            const float *sums = (const float *)((const q8_pair *)(acts + token * token_bytes) + npairs);
            for (int j = 0; j < 8; j++) put_shifted(o->q[j] + 4 * t, pair->q + 32 * (b & 1) + 4 * j);
            memcpy(&o->bias[t], (const int32_t *)(sums + 2 * npairs) + b, 4);
            o->d[t] = pair->d[8 * (b & 1)];
            o->sums[t] = sums[b];
        }
    }
}

void llk_x8_interleave(int type, const void *activations, int64_t tokens, int64_t blocks, int64_t first_tile,
                       int64_t end_tile, void *tiles) {
    for (int64_t c = first_tile; c < end_tile; c++) {
        if (llk_is_k_type(type)) interleave_k((const q8k_block *)activations, tokens, blocks, c, (k_tile16 *)tiles);
        else interleave_legacy((const uint8_t *)activations, tokens, blocks, c, (q8_tile16 *)tiles);
    }
}

#if LLK_X86
#define ATTR_VNNI __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")))

// A group's sums for tiles c0..c0+cn (row r: lanes = tokens) into out, token by token.
ATTR_VNNI static void store_tile_sums(__m512 sums[][8], int64_t c0, int64_t cn, int64_t tokens, float *out, int64_t out_stride) {
    for (int64_t c = 0; c < cn; c++) {
        float lanes[8][16];
        for (int r = 0; r < 8; r++) _mm512_storeu_ps(lanes[r], sums[c][r]);
        for (int t = 0; t < 16 && 16 * (c0 + c) + t < tokens; t++) {
            float *o = out + (16 * (c0 + c) + t) * out_stride;
            for (int r = 0; r < 8; r++) o[r] = lanes[r][t];
        }
    }
}

// What the tiles read of one decoded super block of a group besides its runs.
typedef struct {
    int32_t scale[16][8];  // the scale of row r for values 16h..16h+15
    int32_t corr[8];       // 128 x sum over h of scale x (sum of row r's values 16h..16h+15)
} k_rowconst;

ATTR_VNNI static void k_rowconsts(const decoded_k *dk, k_rowconst *rc) {
    const __m256i ones = _mm256_set1_epi8(1);
    __m256i corr = _mm256_setzero_si256();
    for (int h = 0; h < 16; h++) {
        const __m256i scale = _mm256_srai_epi32(_mm256_slli_epi32(dk->scales[h], 16), 16);
        _mm256_storeu_si256((__m256i *)rc->scale[h], scale);
        __m256i sum = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) sum = _mm256_dpbusd_epi32(sum, ones, dk->runs[4 * h + j]);
        corr = _mm256_add_epi32(corr, _mm256_mullo_epi32(sum, scale));
    }
    _mm256_storeu_si256((__m256i *)rc->corr, _mm256_slli_epi32(corr, 7));
}

// One super block of 8 rows times one tile of 16 tokens, added into facc (row r: lanes = tokens).
ATTR_VNNI __attribute__((always_inline)) static inline void k_vnni_tile(const int type, const decoded_k *dk,
                                                                         const k_rowconst *rc, const k_tile16 *a,
                                                                         __m512 facc[8]) {
    const int32_t *runs = (const int32_t *)dk->runs;  // run j, row r at 8j + r
    const int per_scale = type == TYPE_Q4_K || type == TYPE_Q5_K ? 8 : 4;  // k-groups that share one scale
    __m512i s1[8], s2[8];
    for (int r = 0; r < 8; r++) s1[r] = s2[r] = _mm512_setzero_si512();
    for (int j0 = 0; j0 < 64; j0 += per_scale) {
        __m512i acc[8];
        for (int r = 0; r < 8; r++) acc[r] = _mm512_setzero_si512();
        for (int j = j0; j < j0 + per_scale; j++) {
            const __m512i q = _mm512_loadu_si512(a->q[j]);
            for (int r = 0; r < 8; r++) acc[r] = _mm512_dpbusd_epi32(acc[r], q, _mm512_set1_epi32(runs[8 * j + r]));
        }
        for (int r = 0; r < 8; r++)
            s1[r] = _mm512_add_epi32(s1[r], _mm512_mullo_epi32(acc[r], _mm512_set1_epi32(rc->scale[j0 / 4][r])));
    }
    const int32_t *bias = (const int32_t *)dk->bias;  // pair p, row r at 8p + r
    for (int p = 0; p < 8; p++) {
        const __m512i sums = _mm512_loadu_si512(a->bsum[p]);
        for (int r = 0; r < 8; r++) s2[r] = _mm512_dpwssd_epi32(s2[r], sums, _mm512_set1_epi32(bias[8 * p + r]));
    }
    const __m512 da = _mm512_loadu_ps(a->d);
    const float *d = (const float *)&dk->d, *dmin = (const float *)&dk->dmin;
    for (int r = 0; r < 8; r++) {
        const __m512i isum = _mm512_sub_epi32(s1[r], _mm512_set1_epi32(rc->corr[r]));
        const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(d[r]), da);
        __m512 v;
        if (type == TYPE_Q6_K || type == TYPE_Q3_K) {
            v = _mm512_mul_ps(scale, _mm512_cvtepi32_ps(_mm512_sub_epi32(isum, s2[r])));
        } else {
            v = _mm512_sub_ps(_mm512_mul_ps(scale, _mm512_cvtepi32_ps(isum)),
                              _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(dmin[r]), da), _mm512_cvtepi32_ps(s2[r])));
        }
        facc[r] = _mm512_add_ps(facc[r], v);
    }
}

// --- AVX-512 VNNI prompt tiles for the 32-value types: 8 rows x 16 tokens per block, as the K
// types' tiles. Per block the integer sum equals legacy_tile's, and the float steps are its
// steps in its order: same results. ---

// One block of a group, decoded: run j, row r (values 4j..4j+3, signed) at runs[8j + r].
typedef struct {
    int32_t runs[64];
    int32_t corr[8];  // 128 x the row's value sum: what the +128 of the activations adds
    float d[8], m[8];
} legacy_decoded;

ATTR_VNNI static void decode_legacy(int type, const uint8_t *g, legacy_decoded *out) {
    const int header = type == TYPE_Q4_1 || type == TYPE_Q5_1 ? 4 : 2;
    for (int r = 0; r < 8; r++) {
        out->d[r] = load_half(g + 2 * r);
        out->m[r] = header == 4 ? load_half(g + 16 + 2 * r) : 0;
    }
    uint8_t *runs = (uint8_t *)out->runs;
    if (type == TYPE_Q8_0) {
        memcpy(runs, g + 16, 256);
    } else {
        const int five = type == TYPE_Q5_0 || type == TYPE_Q5_1;
        const uint8_t *packed = g + 8 * header + (five ? 32 : 0);
        // Packed run k: row r's bytes 4k..4k+3, values 4k+i (low nibbles) and 16+4k+i (high).
        const __m256i low4 = _mm256_set1_epi8(0x0F);
        for (int k = 0; k < 4; k++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(packed + 32 * k));
            _mm256_storeu_si256((__m256i *)(runs + 32 * k), _mm256_and_si256(v, low4));
            _mm256_storeu_si256((__m256i *)(runs + 32 * (k + 4)), _mm256_and_si256(_mm256_srli_epi16(v, 4), low4));
        }
        if (five) {
            // Bits 4j..4j+3 of a row's high bits, one per byte, as the fifth bit of run j.
            static const uint32_t spread[16] = {
                0x00000000, 0x00000010, 0x00001000, 0x00001010, 0x00100000, 0x00100010, 0x00101000, 0x00101010,
                0x10000000, 0x10000010, 0x10001000, 0x10001010, 0x10100000, 0x10100010, 0x10101000, 0x10101010};
            for (int r = 0; r < 8; r++) {
                uint32_t high;
                memcpy(&high, g + 8 * header + 4 * r, 4);
                for (int j = 0; j < 8; j++) out->runs[8 * j + r] |= (int32_t)spread[(high >> (4 * j)) & 0xF];
            }
        }
    }
    __m256i sum = _mm256_setzero_si256();
    for (int j = 0; j < 8; j++) sum = _mm256_dpbusd_epi32(sum, _mm256_set1_epi8(1), _mm256_loadu_si256((const __m256i *)(runs + 32 * j)));
    _mm256_storeu_si256((__m256i *)out->corr, _mm256_slli_epi32(sum, 7));
}

ATTR_VNNI __attribute__((always_inline)) static inline void legacy_vnni_tile(const int type, const legacy_decoded *w,
                                                                              const q8_tile16 *a, __m512 facc[8]) {
    __m512i acc[8];
    for (int r = 0; r < 8; r++) acc[r] = _mm512_setzero_si512();
    for (int j = 0; j < 8; j++) {
        const __m512i q = _mm512_loadu_si512(a->q[j]);
        for (int r = 0; r < 8; r++) acc[r] = _mm512_dpbusd_epi32(acc[r], q, _mm512_set1_epi32(w->runs[8 * j + r]));
    }
    const __m512 da = _mm512_loadu_ps(a->d);
    for (int r = 0; r < 8; r++) {
        __m512i isum = _mm512_sub_epi32(acc[r], _mm512_set1_epi32(w->corr[r]));
        if (type == TYPE_Q4_0 || type == TYPE_Q5_0) isum = _mm512_add_epi32(isum, _mm512_loadu_si512(a->bias));
        facc[r] = _mm512_add_ps(facc[r], _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(w->d[r]), da), _mm512_cvtepi32_ps(isum)));
        if (type == TYPE_Q4_1 || type == TYPE_Q5_1)
            facc[r] = _mm512_add_ps(facc[r], _mm512_mul_ps(_mm512_set1_ps(w->m[r]), _mm512_loadu_ps(a->sums)));
    }
}

// Every type's prompt tiles: per group, each block decoded once for up to 16 tiles.
ATTR_VNNI __attribute__((always_inline)) static inline void groups_vnni_typed(
    const int type, const uint8_t *packed, int64_t groups, int64_t blocks, const void *tiles, int64_t tokens,
    float *out, int64_t out_stride) {
    enum { CHUNK = 16 };  // tiles (256 tokens) whose sums stay on the stack while a group is decoded
    const int64_t group_bytes = llk_x8_group_bytes(type, blocks), ntiles = (tokens + 15) / 16;
    const int gbytes = group_block_bytes(type), ahead = llk_prefetch_ahead() / gbytes * gbytes;
    decoded_k dk __attribute__((aligned(64)));
    k_rowconst rc __attribute__((aligned(64)));
    legacy_decoded w __attribute__((aligned(64)));
    __m512 sums[CHUNK][8];
    for (int64_t c0 = 0; c0 < ntiles; c0 += CHUNK) {
        const int64_t cn = ntiles - c0 < CHUNK ? ntiles - c0 : CHUNK;
        for (int64_t gi = 0; gi < groups; gi++) {
            for (int64_t c = 0; c < cn; c++)
                for (int r = 0; r < 8; r++) sums[c][r] = _mm512_setzero_ps();
            for (int64_t b = 0; b < blocks; b++) {
                const uint8_t *g = packed + gi * group_bytes + b * gbytes;
                if (llk_is_k_type(type)) {
                    decode_k(type, g, ahead, &dk);
                    k_rowconsts(&dk, &rc);
                    for (int64_t c = 0; c < cn; c++) k_vnni_tile(type, &dk, &rc, (const k_tile16 *)tiles + (c0 + c) * blocks + b, sums[c]);
                } else {
                    decode_legacy(type, g, &w);
                    for (int64_t c = 0; c < cn; c++) legacy_vnni_tile(type, &w, (const q8_tile16 *)tiles + (c0 + c) * blocks + b, sums[c]);
                }
            }
            store_tile_sums(sums, c0, cn, tokens, out + 8 * gi, out_stride);
        }
    }
}

// --- AVX-512 VNNI generation for the K types: a zmm holds two neighbouring runs of one group
// (one 64-byte load: runs 2i and 2i + 1, 8 rows each), met by up to 4 tokens through vpdpbusd
// (weights the unsigned side; each token's two activation words spread over the halves). The
// halves are added at the super block's end: the integer sums equal k_tile's, and k_finish does
// the rest: same results. ---

ATTR_VNNI __attribute__((always_inline)) static inline __m512i k_run_pair(const int type, const uint8_t *g, const int i) {
    const k_run_bits w = k_run_bits_of(type, 2 * i);  // run 2i + 1 is 32 bytes on, with the same bits
    __m512i r = _mm512_and_si512(_mm512_srli_epi16(_mm512_loadu_si512(g + w.v), w.vshift), _mm512_set1_epi8((char)w.vmask));
    if (w.h) {  // as in k_run
        const __m512i h = _mm512_loadu_si512(g + w.h);
        const __m512i moved = w.hleft >= w.hshift ? _mm512_slli_epi16(h, w.hleft - w.hshift) : _mm512_srli_epi16(h, w.hshift - w.hleft);
        r = _mm512_or_si512(r, _mm512_and_si512(moved, _mm512_set1_epi8((char)(w.hmask << w.hleft))));
    }
    return r;
}

ATTR_VNNI __attribute__((always_inline)) static inline void k_gen_tile(const int type, const int TT, const uint8_t *g, const int ahead,
                                                                        const q8k_block *const a[4], __m256 acc[4]) {
    decoded_k dk;  // its runs stay unused
    decode_k_consts(type, g, ahead, &dk);
    const int per_scale = type == TYPE_Q4_K || type == TYPE_Q5_K ? 8 : 4;  // runs that share one scale
    __m512i isum[4];
    for (int t = 0; t < TT; t++) isum[t] = _mm512_setzero_si512();
    UNROLL for (int j0 = 0; j0 < 64; j0 += per_scale) {
        // Row r's scale in lanes r and 8 + r (dk holds it twice in int16 lanes 2r, 2r + 1).
        const __m256i sc = _mm256_srai_epi32(_mm256_slli_epi32(dk.scales[j0 / 4], 16), 16);
        const __m512i scale = _mm512_inserti64x4(_mm512_castsi256_si512(sc), sc, 1);
        __m512i s[4];
        for (int t = 0; t < TT; t++) s[t] = _mm512_setzero_si512();
        UNROLL for (int i = j0 / 2; i < (j0 + per_scale) / 2; i++) {
            const __m512i run = k_run_pair(type, g, i);
            // Activation words 2i (lanes 0-7) and 2i + 1 (lanes 8-15).
            const __m512i pick = _mm512_set_epi32(2 * i + 1, 2 * i + 1, 2 * i + 1, 2 * i + 1, 2 * i + 1, 2 * i + 1, 2 * i + 1, 2 * i + 1,
                                                  2 * i, 2 * i, 2 * i, 2 * i, 2 * i, 2 * i, 2 * i, 2 * i);
            for (int t = 0; t < TT; t++) {
                const __m512i words = _mm512_loadu_si512(a[t]->q + 64 * (i / 8));
                s[t] = _mm512_dpbusd_epi32(s[t], run, _mm512_permutexvar_epi32(_mm512_and_si512(pick, _mm512_set1_epi32(15)), words));
            }
        }
        for (int t = 0; t < TT; t++) isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(s[t], scale));
    }
    __m256i folded[4];
    for (int t = 0; t < TT; t++) folded[t] = _mm256_add_epi32(_mm512_castsi512_si256(isum[t]), _mm512_extracti64x4_epi64(isum[t], 1));
    k_finish(type, TT, &dk, a, folded, acc);
}

// Generation (1..4 tokens) on AVX-512 VNNI, group by group as k_groups_typed.
ATTR_VNNI __attribute__((always_inline)) static inline void k_gen_vnni_typed(
    const int type, const int prefetch, const uint8_t *packed, int64_t groups, int64_t blocks, const q8k_block *acts,
    int64_t tokens, float *out, int64_t out_stride) {
    const int64_t group_bytes = llk_x8_group_bytes(type, blocks);
    const int gbytes = group_block_bytes(type), ahead = prefetch / gbytes * gbytes;
    for (int64_t gi = 0; gi < groups; gi++) {
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        for (int64_t b = 0; b < blocks; b++) {
            const uint8_t *g = packed + gi * group_bytes + b * gbytes;
            const q8k_block *a[4];
            for (int t = 0; t < 4; t++) a[t] = acts + (t < tokens ? t : 0) * blocks + b;
            switch (tokens) {
            case 1: k_gen_tile(type, 1, g, ahead, a, acc); break;
            case 2: k_gen_tile(type, 2, g, ahead, a, acc); break;
            case 3: k_gen_tile(type, 3, g, ahead, a, acc); break;
            default: k_gen_tile(type, 4, g, ahead, a, acc); break;
            }
        }
        for (int64_t t = 0; t < tokens; t++) _mm256_storeu_ps(out + t * out_stride + 8 * gi, acc[t]);
    }
}

ATTR_VNNI static void k_gen_vnni(int type, const uint8_t *packed, int64_t groups, int64_t blocks, const q8k_block *acts,
                                 int64_t tokens, float *out, int64_t out_stride) {
    // Distance 0 (the block being read) compiled on its own: with the distance a variable the
    // loop's registers fell out differently and it ran 20% slower on a Zen 4.
    const int prefetch = llk_prefetch_ahead();
#define CASE(T)                                                                                              \
    case T:                                                                                                  \
        if (prefetch == 0) k_gen_vnni_typed(T, 0, packed, groups, blocks, acts, tokens, out, out_stride);    \
        else k_gen_vnni_typed(T, prefetch, packed, groups, blocks, acts, tokens, out, out_stride);          \
        return;
    switch (type) {
        CASE(TYPE_Q2_K) CASE(TYPE_Q3_K) CASE(TYPE_Q4_K) CASE(TYPE_Q5_K) CASE(TYPE_Q6_K)
    default: return;
    }
#undef CASE
}

ATTR_VNNI static void groups_vnni(int type, const uint8_t *packed, int64_t groups, int64_t blocks, const void *tiles,
                                  int64_t tokens, float *out, int64_t out_stride) {
#define CASE(T) case T: groups_vnni_typed(T, packed, groups, blocks, tiles, tokens, out, out_stride); return;
    switch (type) {
        CASE(TYPE_Q4_0) CASE(TYPE_Q4_1) CASE(TYPE_Q5_0) CASE(TYPE_Q5_1) CASE(TYPE_Q8_0)
        CASE(TYPE_Q2_K) CASE(TYPE_Q3_K) CASE(TYPE_Q4_K) CASE(TYPE_Q5_K) CASE(TYPE_Q6_K)
    default: return;
    }
#undef CASE
}
#endif

int llk_x8_tiled(int type, int64_t tokens) {
#if LLK_X86
    return llk_x8_supports(type) && tokens >= 8 && llk_has_vnni();
#else
    (void)type, (void)tokens;
    return 0;
#endif
}

void llk_x8_matmul_tiled(int type, const void *packed, int64_t groups, const void *tiles, int64_t tokens, int64_t blocks,
                         float *out, int64_t out_stride) {
#if LLK_X86
    if (llk_x8_tiled(type, tokens)) groups_vnni(type, (const uint8_t *)packed, groups, blocks, tiles, tokens, out, out_stride);
#else
    (void)type, (void)packed, (void)groups, (void)tiles, (void)tokens, (void)blocks, (void)out, (void)out_stride;
#endif
}


// ---------------------------------------------------------------------------------------------

void llk_x8_matmul(int type, const void *packed, int64_t groups, const void *activations, int64_t tokens,
                   int64_t blocks, float *out, int64_t out_stride) {
    const uint8_t *p = (const uint8_t *)packed;
#if LLK_X86
    const int isa = llk_isa_id();
    if (isa == 1 || isa == 2) {
        if (llk_is_k_type(type) && tokens <= 4 && llk_has_vnni())
            k_gen_vnni(type, p, groups, blocks, (const void *)activations, tokens, out, out_stride);
        else if (llk_is_k_type(type)) k_groups(type, p, groups, blocks, (const void *)activations, tokens, out, out_stride);
        else legacy_groups(type, p, groups, blocks, (const uint8_t *)activations, tokens, out, out_stride);
        return;
    }
#endif
    // Elsewhere (and when a test forces scalar code): each group unpacked to rows for the row
    // kernels. Models only repack where llk_x8_preferred says so, so this serves the tests.
    const int64_t row_bytes = blocks * row_block_bytes(type);
    uint8_t *rows = (uint8_t *)malloc((size_t)(8 * row_bytes));
    if (!rows) return;
    for (int64_t gi = 0; gi < groups; gi++) {
        llk_x8_unpack(type, p + gi * llk_x8_group_bytes(type, blocks), blocks, rows, row_bytes);
        if (llk_is_k_type(type)) llk_qk_matmul(type, rows, row_bytes, 8, activations, tokens, blocks, out + 8 * gi, out_stride);
        else llk_q8_matmul(type, rows, row_bytes, 8, activations, tokens, blocks, out + 8 * gi, out_stride, NULL);
    }
    free(rows);
}
