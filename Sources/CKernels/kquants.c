// The 256-value "K" block types Q2_K, Q3_K, Q4_K, Q5_K and Q6_K: integer products with
// activations rounded to Q8_K blocks (llama.cpp's arithmetic: exact integer sums per sub-block,
// scaled per super block), and llama.cpp's reference quantizers for Q4_K, Q5_K and Q6_K (no
// importance matrix), written so that the floating-point operations happen in the same order and
// the bytes come out the same.

#include "CKernels.h"
#include "blocks.h"
#include "half.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LLK_X86 1
#elif defined(__aarch64__)
#define LLK_NEON 1
#endif

int llk_isa_id(void);

enum { TYPE_Q2_K = 10, TYPE_Q3_K = 11, TYPE_Q4_K = 12, TYPE_Q5_K = 13, TYPE_Q6_K = 14 };

// One prepared activation super block: 256 values rounded to int8 with one float scale, and the
// sums of each run of 16 (what the mins and the stored offsets are multiplied with).
typedef struct {
    float d;
    int16_t sums[16];
    int8_t q[256];
} q8k_block;  // 4 + 32 + 256 = 292 bytes

static int kblock_bytes(int type) { return llk_is_k_type(type) ? llk_block_bytes(type) : 0; }

int llk_qk_supports(int type) { return kblock_bytes(type) != 0; }

int64_t llk_qk_token_bytes(int64_t blocks) { return blocks * (int64_t)sizeof(q8k_block); }

static void store_half(uint8_t *p, float f) {
    const uint16_t h = float_to_half(f);
    memcpy(p, &h, 2);
}

// Round to nearest, ties to even (the default rounding mode), as ggml's nearest_int.
static inline int round_int(float x) { return (int)nearbyintf(x); }

// ---------------------------------------------------------------------------------------------
// Activations (llama.cpp's Q8_K: scale from the value of largest magnitude, keeping its sign).

#if LLK_X86
// The same rounding eight values at a time: the largest magnitude (then the first value that has
// it, as the scalar loop finds it), one multiply, round to nearest even, the clamp at 127.
__attribute__((target("avx2,fma,f16c"))) static void prepare_avx2(const float *x, int64_t blocks, q8k_block *y) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < blocks; b++, x += 256) {
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < 256; j += 8) m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)), m);
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        if (amax == 0) {
            memset(&y[b], 0, sizeof(q8k_block));
            continue;
        }
        float max = 0;
        for (int j = 0; j < 256; j++)
            if (fabsf(x[j]) == amax) {
                max = x[j];
                break;
            }
        const float iscale = -127.0f / max;
        const __m256 scale = _mm256_set1_ps(iscale), top = _mm256_set1_ps(127.0f);
        for (int j = 0; j < 256; j += 32) {
            __m256i v[4];
            for (int k = 0; k < 4; k++) {
                const __m256 p = _mm256_round_ps(_mm256_mul_ps(scale, _mm256_loadu_ps(x + j + 8 * k)),
                                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                v[k] = _mm256_cvtps_epi32(_mm256_min_ps(p, top));
            }
            const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
            _mm256_storeu_si256((__m256i *)(y[b].q + j), _mm256_permutevar8x32_epi32(packed, order));
        }
        // Sums of 16 through unsigned byte sums: each byte + 128, minus 16 x 128.
        const __m128i flip = _mm_set1_epi8((char)0x80);
        for (int g = 0; g < 16; g++) {
            const __m128i s = _mm_sad_epu8(_mm_xor_si128(_mm_loadu_si128((const __m128i *)(y[b].q + 16 * g)), flip), _mm_setzero_si128());
            y[b].sums[g] = (int16_t)(_mm_cvtsi128_si32(s) + _mm_extract_epi16(s, 4) - 16 * 128);
        }
        y[b].d = 1 / iscale;
    }
}
#endif

void llk_qk_prepare(const float *x, int64_t blocks, void *out) {
    q8k_block *y = (q8k_block *)out;
#if LLK_X86
    const int isa = llk_isa_id();
    if (isa == 1 || isa == 2) {
        prepare_avx2(x, blocks, y);
        return;
    }
#endif
    for (int64_t b = 0; b < blocks; b++, x += 256) {
        float amax = 0, max = 0;
        for (int j = 0; j < 256; j++) {
            const float a = fabsf(x[j]);
            if (a > amax) { amax = a; max = x[j]; }
        }
        if (amax == 0) {
            memset(&y[b], 0, sizeof(q8k_block));
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < 256; j++) {
            const int v = round_int(iscale * x[j]);
            y[b].q[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += y[b].q[16 * g + j];
            y[b].sums[g] = (int16_t)sum;
        }
        y[b].d = 1 / iscale;
    }
}

// The eight 6-bit scales and mins of a Q4_K / Q5_K block.
static void scales_and_mins(const uint8_t *s, uint8_t sc[8], uint8_t mn[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
        sc[j + 4] = (uint8_t)((s[j + 8] & 0xF) | ((s[j] >> 6) << 4));
        mn[j + 4] = (uint8_t)((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
    }
}

// The sixteen signed scales of a Q3_K block: 6 bits each (low 4 in bytes 0-7, high 2 in bytes
// 8-11), stored plus 32.
void llk_q3k_scales(const uint8_t *s, int8_t sc[16]) {
    for (int j = 0; j < 16; j++) {
        const int low = j < 8 ? s[j] & 0xF : s[j - 8] >> 4, high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        sc[j] = (int8_t)((low | high << 4) - 32);
    }
}

// The types with a scale per 16 values (Q2_K, Q3_K, Q6_K): the scales, and what is taken off per
// activation sum of 16: Q2_K's 4-bit min (times dmin, in float), or the stored offset times the
// scale (Q3_K's values are stored plus 4, Q6_K's plus 32), in integers.
typedef struct {
    int8_t sc[16];
    int16_t off[16];
    float d, dmin;
} k16_scales;

static void k16_scales_of(int type, const uint8_t *row, k16_scales *s) {
    if (type == TYPE_Q2_K) {
        for (int g = 0; g < 16; g++) s->sc[g] = (int8_t)(row[g] & 0xF), s->off[g] = (int16_t)(row[g] >> 4);
        s->d = load_half(row + 80), s->dmin = load_half(row + 82);
        return;
    }
    const int bias = type == TYPE_Q3_K ? 4 : 32;
    if (type == TYPE_Q3_K) llk_q3k_scales(row + 96, s->sc);
    else memcpy(s->sc, row + 192, 16);
    for (int g = 0; g < 16; g++) s->off[g] = (int16_t)(bias * s->sc[g]);
    s->d = load_half(row + (type == TYPE_Q3_K ? 108 : 208)), s->dmin = 0;
}

// ---------------------------------------------------------------------------------------------
// Scalar products.

// The 256 unsigned values of a block (Q2_K 0..3, Q3_K 0..7 read with a bias of 4, Q6_K 0..63
// with a bias of 32).
static void unpack_k(int type, const uint8_t *p, uint8_t *u) {
    if (type == TYPE_Q2_K || type == TYPE_Q3_K) {
        // Value 128n + 32j + l: bits 2j of byte 32n + l; Q3_K's third bit is bit 4n + j of hmask[l].
        const uint8_t *qs = p + (type == TYPE_Q2_K ? 16 : 32), *hm = p;
        for (int n = 0; n < 2; n++)
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < 32; l++) {
                    int v = (qs[32 * n + l] >> (2 * j)) & 3;
                    if (type == TYPE_Q3_K) v |= ((hm[l] >> (4 * n + j)) & 1) << 2;
                    u[128 * n + 32 * j + l] = (uint8_t)v;
                }
        return;
    }
    if (type == TYPE_Q6_K) {
        const uint8_t *ql = p, *qh = p + 128;
        for (int n = 0; n < 2; n++, ql += 64, qh += 32, u += 128)
            for (int l = 0; l < 32; l++) {
                u[l] = (uint8_t)((ql[l] & 0xF) | ((qh[l] & 3) << 4));
                u[l + 32] = (uint8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
                u[l + 64] = (uint8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
                u[l + 96] = (uint8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
            }
        return;
    }
    const int five = type == TYPE_Q5_K;
    const uint8_t *qh = p + 16, *qs = p + (five ? 48 : 16);
    for (int k = 0; k < 4; k++, qs += 32)
        for (int l = 0; l < 32; l++) {
            u[64 * k + l] = (uint8_t)((qs[l] & 0xF) | (five ? ((qh[l] >> (2 * k)) & 1) << 4 : 0));
            u[64 * k + 32 + l] = (uint8_t)((qs[l] >> 4) | (five ? ((qh[l] >> (2 * k + 1)) & 1) << 4 : 0));
        }
}

static float dot_k_scalar(int type, const uint8_t *row, const q8k_block *a, int64_t blocks) {
    const int bytes = kblock_bytes(type);
    float total = 0;
    uint8_t u[256];
    for (int64_t b = 0; b < blocks; b++, row += bytes, a++) {
        unpack_k(type, row, u);
        if (type != TYPE_Q4_K && type != TYPE_Q5_K) {
            k16_scales s;
            k16_scales_of(type, row, &s);
            int sum = 0, off = 0;
            for (int g = 0; g < 16; g++) {
                int v = 0;
                for (int j = 0; j < 16; j++) v += u[16 * g + j] * a->q[16 * g + j];
                sum += s.sc[g] * v;
                off += s.off[g] * a->sums[g];
            }
            if (type == TYPE_Q2_K) total += (s.d * a->d) * (float)sum - (s.dmin * a->d) * (float)off;
            else total += (s.d * a->d) * (float)(sum - off);
            continue;
        }
        uint8_t sc[8], mn[8];
        scales_and_mins(row + 4, sc, mn);
        int sum = 0, mins = 0;
        for (int g = 0; g < 8; g++) {
            int s = 0;
            for (int j = 0; j < 32; j++) s += u[32 * g + j] * a->q[32 * g + j];
            sum += sc[g] * s;
            mins += mn[g] * (a->sums[2 * g] + a->sums[2 * g + 1]);
        }
        total += (load_half(row) * a->d) * (float)sum - (load_half(row + 2) * a->d) * (float)mins;
    }
    return total;
}

// ---------------------------------------------------------------------------------------------
// NEON: the scalar steps with the unpacking and the sub-block sums in vectors (SDOT). A row's
// block is unpacked once for up to 16 tokens. Same integers, same float steps: the same results.

#if LLK_NEON
static void unpack_k_neon(int type, const uint8_t *p, uint8_t *u) {
    const uint8x16_t low4 = vdupq_n_u8(0x0F), three = vdupq_n_u8(3), one = vdupq_n_u8(1);
    if (type == TYPE_Q2_K || type == TYPE_Q3_K) {
        const uint8_t *qs = p + (type == TYPE_Q2_K ? 16 : 32), *hm = p;
        for (int n = 0; n < 2; n++)
            for (int o = 0; o < 32; o += 16) {
                const uint8x16_t q = vld1q_u8(qs + 32 * n + o);
                const uint8x16_t h = type == TYPE_Q3_K ? vld1q_u8(hm + o) : vdupq_n_u8(0);
                for (int j = 0; j < 4; j++) {
                    uint8x16_t v = vandq_u8(vshlq_u8(q, vdupq_n_s8((int8_t)(-2 * j))), three);
                    if (type == TYPE_Q3_K) v = vorrq_u8(v, vshlq_n_u8(vandq_u8(vshlq_u8(h, vdupq_n_s8((int8_t)(-(4 * n + j)))), one), 2));
                    vst1q_u8(u + 128 * n + 32 * j + o, v);
                }
            }
        return;
    }
    if (type == TYPE_Q6_K) {
        const uint8_t *ql = p, *qh = p + 128;
        for (int n = 0; n < 2; n++, ql += 64, qh += 32, u += 128)
            for (int o = 0; o < 32; o += 16) {
                const uint8x16_t a = vld1q_u8(ql + o), b = vld1q_u8(ql + 32 + o), h = vld1q_u8(qh + o);
                vst1q_u8(u + o, vorrq_u8(vandq_u8(a, low4), vshlq_n_u8(vandq_u8(h, three), 4)));
                vst1q_u8(u + 32 + o, vorrq_u8(vandq_u8(b, low4), vshlq_n_u8(vandq_u8(vshrq_n_u8(h, 2), three), 4)));
                vst1q_u8(u + 64 + o, vorrq_u8(vshrq_n_u8(a, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(h, 4), three), 4)));
                vst1q_u8(u + 96 + o, vorrq_u8(vshrq_n_u8(b, 4), vshlq_n_u8(vshrq_n_u8(h, 6), 4)));
            }
        return;
    }
    const int five = type == TYPE_Q5_K;
    const uint8_t *qh = p + 16, *qs = p + (five ? 48 : 16);
    for (int k = 0; k < 4; k++, qs += 32)
        for (int o = 0; o < 32; o += 16) {
            const uint8x16_t q = vld1q_u8(qs + o);
            uint8x16_t lo = vandq_u8(q, low4), hi = vshrq_n_u8(q, 4);
            if (five) {
                const uint8x16_t h = vld1q_u8(qh + o);
                lo = vorrq_u8(lo, vshlq_n_u8(vandq_u8(vshlq_u8(h, vdupq_n_s8((int8_t)(-2 * k))), one), 4));
                hi = vorrq_u8(hi, vshlq_n_u8(vandq_u8(vshlq_u8(h, vdupq_n_s8((int8_t)(-(2 * k + 1)))), one), 4));
            }
            vst1q_u8(u + 64 * k + o, lo);
            vst1q_u8(u + 64 * k + 32 + o, hi);
        }
}

// Sum over `n` values (a multiple of 16) of unpacked weight x activation (both fit in int8).
static inline int dot_u8_s8_neon(const uint8_t *u, const int8_t *q, int n) {
    int32x4_t acc = vdupq_n_s32(0);
    for (int j = 0; j < n; j += 16) acc = llk_neon_dot(acc, vreinterpretq_s8_u8(vld1q_u8(u + j)), vld1q_s8(q + j));
    return vaddvq_s32(acc);
}

// One block of a row times one token, from its unpacked values: dot_k_scalar's block step.
static inline float block_k_neon(int type, const uint8_t *row, const uint8_t *u, const q8k_block *a) {
    if (type != TYPE_Q4_K && type != TYPE_Q5_K) {
        k16_scales s;
        k16_scales_of(type, row, &s);
        int sum = 0, off = 0;
        for (int g = 0; g < 16; g++) {
            sum += s.sc[g] * dot_u8_s8_neon(u + 16 * g, a->q + 16 * g, 16);
            off += s.off[g] * a->sums[g];
        }
        if (type == TYPE_Q2_K) return (s.d * a->d) * (float)sum - (s.dmin * a->d) * (float)off;
        return (s.d * a->d) * (float)(sum - off);
    }
    uint8_t sc[8], mn[8];
    scales_and_mins(row + 4, sc, mn);
    int sum = 0, mins = 0;
    for (int g = 0; g < 8; g++) {
        sum += sc[g] * dot_u8_s8_neon(u + 32 * g, a->q + 32 * g, 32);
        mins += mn[g] * (a->sums[2 * g] + a->sums[2 * g + 1]);
    }
    return (load_half(row) * a->d) * (float)sum - (load_half(row + 2) * a->d) * (float)mins;
}

static void rows_k_neon(int type, const uint8_t *w, int64_t row_bytes, int64_t rows, const q8k_block *a, int64_t tokens,
                        int64_t blocks, float *out, int64_t out_stride) {
    const int bytes = kblock_bytes(type);
    uint8_t u[256] __attribute__((aligned(16)));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t t0 = 0; t0 < tokens; t0 += 16) {
            const int64_t n = tokens - t0 < 16 ? tokens - t0 : 16;
            float total[16] = {0};
            for (int64_t b = 0; b < blocks; b++) {
                const uint8_t *block = w + r * row_bytes + b * bytes;
                unpack_k_neon(type, block, u);
                for (int64_t t = 0; t < n; t++) total[t] += block_k_neon(type, block, u, a + (t0 + t) * blocks + b);
            }
            for (int64_t t = 0; t < n; t++) out[(t0 + t) * out_stride + r] = total[t];
        }
}
#endif

// ---------------------------------------------------------------------------------------------
// AVX2 (also the path on AVX-512 machines): 32 values per step; unsigned values x signed
// activations into 16-bit pair sums (no overflow: at most 2 x 63 x 128), then multiplied by the
// sub-block scales into 32-bit sums.

#if LLK_X86
#define ATTR_K __attribute__((target("avx2,fma,f16c")))

ATTR_K static inline int hsum_i32(__m256i v) {
    __m128i r = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0x4E));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0xB1));
    return _mm_cvtsi128_si32(r);
}

// One Q4_K or Q5_K row times one token. `type` is a constant in each caller (see rows_k_avx2).
ATTR_K __attribute__((always_inline)) static inline float dot_q45k_avx2(const int type, const uint8_t *row, const q8k_block *a, int64_t blocks) {
    const int bytes = kblock_bytes(type);
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    float total = 0;
    for (int64_t b = 0; b < blocks; b++, row += bytes, a++) {
        __m256i acc = _mm256_setzero_si256();
        uint8_t sc[8], mn[8];
        scales_and_mins(row + 4, sc, mn);
        const int five = type == TYPE_Q5_K;
        const uint8_t *qs = row + (five ? 48 : 16);
        const __m256i hbits = five ? _mm256_loadu_si256((const __m256i *)(row + 16)) : _mm256_setzero_si256();
        for (int k = 0; k < 4; k++, qs += 32) {
            const __m256i q4 = _mm256_loadu_si256((const __m256i *)qs);
            __m256i lo = _mm256_and_si256(q4, low4), hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), low4);
            if (five) {
                const __m256i one = _mm256_set1_epi8(1);
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * k), one), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * k + 1), one), 4));
            }
            const __m256i plo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(a->q + 64 * k)));
            const __m256i phi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(a->q + 64 * k + 32)));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(plo, _mm256_set1_epi16(sc[2 * k])));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(phi, _mm256_set1_epi16(sc[2 * k + 1])));
        }
        int mins = 0;
        for (int g = 0; g < 8; g++) mins += mn[g] * (a->sums[2 * g] + a->sums[2 * g + 1]);
        total += (load_half(row) * a->d) * (float)hsum_i32(acc) - (load_half(row + 2) * a->d) * (float)mins;
    }
    return total;
}

// One Q2_K, Q3_K or Q6_K row times up to 8 tokens: each block is unpacked once into 8 runs of 32
// values (run m: values 32m..32m+31, scales 2m and 2m+1) for all of them. Per token the scalar
// twin's integer sums, then the same float steps.
ATTR_K __attribute__((always_inline)) static inline void k16_row_tokens_avx2(
    const int type, const uint8_t *row, const q8k_block *a, int64_t tokens, int64_t blocks, float *out, int64_t out_stride) {
    const int bytes = kblock_bytes(type);
    const __m256i low4 = _mm256_set1_epi8(0x0F), three = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    float total[8] = {0};
    for (int64_t b = 0; b < blocks; b++, row += bytes) {
        k16_scales s;
        k16_scales_of(type, row, &s);
        __m256i v[8], scale[8];
        if (type == TYPE_Q6_K) {
            for (int n = 0; n < 2; n++) {
                const uint8_t *ql = row + 64 * n, *qh = row + 128 + 32 * n;
                const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql), l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
                const __m256i h = _mm256_loadu_si256((const __m256i *)qh);
                v[4 * n] = _mm256_or_si256(_mm256_and_si256(l0, low4), _mm256_slli_epi16(_mm256_and_si256(h, three), 4));
                v[4 * n + 1] = _mm256_or_si256(_mm256_and_si256(l1, low4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), three), 4));
                v[4 * n + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), three), 4));
                v[4 * n + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), three), 4));
            }
        } else {
            const __m256i hm = _mm256_loadu_si256((const __m256i *)row);
            for (int n = 0; n < 2; n++) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(row + (type == TYPE_Q2_K ? 16 : 32) + 32 * n));
                for (int j = 0; j < 4; j++) {
                    v[4 * n + j] = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), three);
                    if (type == TYPE_Q3_K)
                        v[4 * n + j] = _mm256_or_si256(v[4 * n + j], _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, 4 * n + j), one), 2));
                }
            }
        }
        for (int m = 0; m < 8; m++) scale[m] = _mm256_set_m128i(_mm_set1_epi16(s.sc[2 * m + 1]), _mm_set1_epi16(s.sc[2 * m]));
        const __m256i off = _mm256_loadu_si256((const __m256i *)s.off);
        for (int64_t t = 0; t < tokens; t++) {
            const q8k_block *at = a + t * blocks + b;
            __m256i acc = _mm256_setzero_si256();
            for (int m = 0; m < 8; m++) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(at->q + 32 * m));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(v[m], q), scale[m]));
            }
            const int offs = hsum_i32(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)at->sums), off));
            if (type == TYPE_Q2_K) total[t] += (s.d * at->d) * (float)hsum_i32(acc) - (s.dmin * at->d) * (float)offs;
            else total[t] += (s.d * at->d) * (float)(hsum_i32(acc) - offs);
        }
    }
    for (int64_t t = 0; t < tokens; t++) out[t * out_stride] = total[t];
}

// One Q4_K or Q5_K row times up to 8 tokens, each block unpacked once for all of them; per token
// the same steps as dot_q45k_avx2, in the same order.
ATTR_K __attribute__((always_inline)) static inline void q45k_row_tokens_avx2(const int type, const uint8_t *row, const q8k_block *a, int64_t tokens,
                                        int64_t blocks, float *out, int64_t out_stride) {
    const int bytes = kblock_bytes(type), five = type == TYPE_Q5_K;
    const __m256i low4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    float total[8] = {0};
    for (int64_t b = 0; b < blocks; b++, row += bytes) {
        uint8_t sc[8], mn[8];
        scales_and_mins(row + 4, sc, mn);
        const uint8_t *qs = row + (five ? 48 : 16);
        const __m256i hbits = five ? _mm256_loadu_si256((const __m256i *)(row + 16)) : _mm256_setzero_si256();
        __m256i v[8], scale[8];
        for (int k = 0; k < 4; k++) {
            const __m256i q4 = _mm256_loadu_si256((const __m256i *)(qs + 32 * k));
            __m256i lo = _mm256_and_si256(q4, low4), hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), low4);
            if (five) {
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * k), one), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * k + 1), one), 4));
            }
            v[2 * k] = lo;
            v[2 * k + 1] = hi;
            scale[2 * k] = _mm256_set1_epi16(sc[2 * k]);
            scale[2 * k + 1] = _mm256_set1_epi16(sc[2 * k + 1]);
        }
        const float d = load_half(row), dmin = load_half(row + 2);
        for (int64_t t = 0; t < tokens; t++) {
            const q8k_block *at = a + t * blocks + b;
            __m256i acc = _mm256_setzero_si256();
            for (int k = 0; k < 4; k++) {
                const __m256i plo = _mm256_maddubs_epi16(v[2 * k], _mm256_loadu_si256((const __m256i *)(at->q + 64 * k)));
                const __m256i phi = _mm256_maddubs_epi16(v[2 * k + 1], _mm256_loadu_si256((const __m256i *)(at->q + 64 * k + 32)));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(plo, scale[2 * k]));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(phi, scale[2 * k + 1]));
            }
            int mins = 0;
            for (int g = 0; g < 8; g++) mins += mn[g] * (at->sums[2 * g] + at->sums[2 * g + 1]);
            total[t] += (d * at->d) * (float)hsum_i32(acc) - (dmin * at->d) * (float)mins;
        }
    }
    for (int64_t t = 0; t < tokens; t++) out[t * out_stride] = total[t];
}

// Rows outside, tokens inside: a row stays in L1 while every token meets it. Each type gets
// its own loops (the type is a constant in every case).
ATTR_K static void rows_k_avx2(int type, const uint8_t *w, int64_t row_bytes, int64_t rows, const q8k_block *a,
                               int64_t tokens, int64_t blocks, float *out, int64_t out_stride) {
#define K16_CASE(T)                                                                                          \
    case T:                                                                                                  \
        for (int64_t r = 0; r < rows; r++)                                                                   \
            for (int64_t t0 = 0; t0 < tokens; t0 += 8)                                                       \
                k16_row_tokens_avx2(T, w + r * row_bytes, a + t0 * blocks, tokens - t0 < 8 ? tokens - t0 : 8, \
                                    blocks, out + t0 * out_stride + r, out_stride);                          \
        return;
#define Q45_CASE(T)                                                                                           \
    case T:                                                                                                   \
        for (int64_t r = 0; r < rows; r++) {                                                                  \
            if (tokens == 1) {                                                                                \
                out[r] = dot_q45k_avx2(T, w + r * row_bytes, a, blocks);                                      \
                continue;                                                                                     \
            }                                                                                                 \
            for (int64_t t0 = 0; t0 < tokens; t0 += 8)                                                        \
                q45k_row_tokens_avx2(T, w + r * row_bytes, a + t0 * blocks, tokens - t0 < 8 ? tokens - t0 : 8, \
                                     blocks, out + t0 * out_stride + r, out_stride);                          \
        }                                                                                                     \
        return;
    switch (type) {
        K16_CASE(TYPE_Q2_K) K16_CASE(TYPE_Q3_K) K16_CASE(TYPE_Q6_K) Q45_CASE(TYPE_Q4_K) Q45_CASE(TYPE_Q5_K)
    default: return;
    }
#undef K16_CASE
#undef Q45_CASE
}
#endif

void llk_qk_matmul(int type, const void *weights, int64_t row_bytes, int64_t rows, const void *activations,
                   int64_t tokens, int64_t blocks, float *out, int64_t out_stride) {
    const uint8_t *w = (const uint8_t *)weights;
    const q8k_block *a = (const q8k_block *)activations;
#if LLK_X86
    const int isa = llk_isa_id();
    if (isa == 1 || isa == 2) {
        rows_k_avx2(type, w, row_bytes, rows, a, tokens, blocks, out, out_stride);
        return;
    }
#endif
#if LLK_NEON
    if (llk_isa_id() == 3) {
        rows_k_neon(type, w, row_bytes, rows, a, tokens, blocks, out, out_stride);
        return;
    }
#endif
    for (int64_t r = 0; r < rows; r++)
        for (int64_t t = 0; t < tokens; t++)
            out[t * out_stride + r] = dot_k_scalar(type, w + r * row_bytes, a + t * blocks, blocks);
}

// ---------------------------------------------------------------------------------------------
// Quantizers: llama.cpp's reference algorithms without an importance matrix.

// Levels 0..nmax for x with an offset: a weighted least-squares search over 1 + nstep trial
// scales around nmax / (max - min). Returns the scale; *neg_min receives -min (>= 0).
static float fit_scale_and_min(const float *x, const float *w, int nmax, float rmin, float rdelta, int nstep,
                               uint8_t *levels, float *neg_min) {
    float lo = x[0], hi = x[0], sum_w = w[0], sum_x = w[0] * x[0];
    for (int i = 1; i < 32; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (lo > 0) lo = 0;
    if (hi == lo) {
        memset(levels, 0, 32);
        *neg_min = -lo;
        return 0;
    }
    float iscale = nmax / (hi - lo), scale = 1 / iscale, best = 0;
    for (int i = 0; i < 32; i++) {
        int l = round_int(iscale * (x[i] - lo));
        l = l < 0 ? 0 : l > nmax ? nmax : l;
        levels[i] = (uint8_t)l;
        const float diff = scale * levels[i] + lo - x[i];
        best += w[i] * (diff * diff);
    }
    uint8_t trial[32];
    for (int step = 0; step <= nstep; step++) {
        iscale = (rmin + rdelta * step + nmax) / (hi - lo);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < 32; i++) {
            int l = round_int(iscale * (x[i] - lo));
            l = l < 0 ? 0 : l > nmax ? nmax : l;
            trial[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        const float det = sum_w * sum_l2 - sum_l * sum_l;
        if (!(det > 0)) continue;
        float s = (sum_w * sum_xl - sum_x * sum_l) / det, m = (sum_l2 * sum_x - sum_l * sum_xl) / det;
        if (m > 0) {
            m = 0;
            s = sum_xl / sum_l2;
        }
        float error = 0;
        for (int i = 0; i < 32; i++) {
            const float diff = s * trial[i] + m - x[i];
            error += w[i] * (diff * diff);
        }
        if (error < best) {
            memcpy(levels, trial, 32);
            best = error;
            scale = s;
            lo = m;
        }
    }
    *neg_min = -lo;
    return scale;
}

// Q4_K (nmax 15) and Q5_K (nmax 31): eight sub-blocks of 32 with 6-bit scales and mins.
static void quantize_q45k_block(const float *x, uint8_t *out, int five) {
    const int nmax = five ? 31 : 15;
    uint8_t levels[256];
    float scales[8], mins[8], w[32], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *v = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += v[l] * v[l];
        const float av = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av + fabsf(v[l]);
        scales[j] = fit_scale_and_min(v, w, nmax, five ? -0.5f : -1.0f, 0.1f, five ? 15 : 20, levels + 32 * j, &mins[j]);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f, inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    uint8_t *s = out + 4;
    memset(s, 0, 12);
    for (int j = 0; j < 8; j++) {
        uint8_t ls = (uint8_t)round_int(inv_scale * scales[j]), lm = (uint8_t)round_int(inv_min * mins[j]);
        if (ls > 63) ls = 63;
        if (lm > 63) lm = 63;
        if (j < 4) {
            s[j] = ls;
            s[j + 4] = lm;
        } else {
            s[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            s[j - 4] |= (uint8_t)((ls >> 4) << 6);
            s[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    store_half(out, max_scale / 63.0f);
    store_half(out + 2, max_min / 63.0f);
    uint8_t sc[8], mn[8];
    scales_and_mins(s, sc, mn);
    for (int j = 0; j < 8; j++) {
        const float d = load_half(out) * sc[j];
        if (d == 0) continue;
        const float dm = load_half(out + 2) * mn[j];
        for (int i = 0; i < 32; i++) {
            int l = round_int((x[32 * j + i] + dm) / d);
            levels[32 * j + i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        }
    }
    uint8_t *qh = out + 16, *qs = out + (five ? 48 : 16);
    if (five) memset(qh, 0, 32);
    for (int k = 0; k < 4; k++, qs += 32)
        for (int l = 0; l < 32; l++) {
            const uint8_t a = levels[64 * k + l], b = levels[64 * k + 32 + l];
            if (five) qh[l] |= (uint8_t)(((a >> 4) << (2 * k)) | ((b >> 4) << (2 * k + 1)));
            qs[l] = (uint8_t)((a & 0xF) | ((b & 0xF) << 4));
        }
}

// Signed levels -nmax..nmax-1 for 16 values, searching 19 scales around nmax / max, weighted by x^2.
static float fit_signed_scale(const float *x, int nmax, int8_t *levels) {
    float amax = 0, max = 0;
    for (int i = 0; i < 16; i++) {
        const float a = fabsf(x[i]);
        if (a > amax) { amax = a; max = x[i]; }
    }
    if (amax < 1e-15f) {
        memset(levels, 0, 16);
        return 0;
    }
    float iscale = -nmax / max, sum_lx = 0, sum_l2 = 0;
    for (int i = 0; i < 16; i++) {
        int l = round_int(iscale * x[i]);
        l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
        levels[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sum_lx += w * x[i] * l;
        sum_l2 += w * l * l;
    }
    float scale = sum_l2 ? sum_lx / sum_l2 : 0.0f, best = scale * sum_lx;
    for (int step = -9; step <= 9; step++) {
        if (step == 0) continue;
        iscale = -(nmax + 0.1f * step) / max;
        sum_lx = sum_l2 = 0;
        for (int i = 0; i < 16; i++) {
            int l = round_int(iscale * x[i]);
            l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
            const float w = x[i] * x[i];
            sum_lx += w * x[i] * l;
            sum_l2 += w * l * l;
        }
        if (sum_l2 > 0 && sum_lx * sum_lx > best * sum_l2) {
            for (int i = 0; i < 16; i++) {
                int l = round_int(iscale * x[i]);
                levels[i] = (int8_t)(nmax + (l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l));
            }
            scale = sum_lx / sum_l2;
            best = scale * sum_lx;
        }
    }
    return scale;
}

static void quantize_q6k_block(const float *x, uint8_t *out) {
    int8_t levels[256];
    float scales[16], max_scale = 0, max_abs = 0;
    for (int g = 0; g < 16; g++) {
        scales[g] = fit_signed_scale(x + 16 * g, 32, levels + 16 * g);
        if (fabsf(scales[g]) > max_abs) {
            max_abs = fabsf(scales[g]);
            max_scale = scales[g];
        }
    }
    if (max_abs < 1e-15f) {
        memset(out, 0, 210);
        return;
    }
    const float iscale = -128.0f / max_scale;
    store_half(out + 208, 1 / iscale);
    int8_t *sc = (int8_t *)(out + 192);
    for (int g = 0; g < 16; g++) {
        const int v = round_int(iscale * scales[g]);
        sc[g] = (int8_t)(v < 127 ? v : 127);
    }
    for (int g = 0; g < 16; g++) {
        const float d = load_half(out + 208) * sc[g];
        if (d == 0) continue;
        for (int i = 0; i < 16; i++) {
            int l = round_int(x[16 * g + i] / d);
            levels[16 * g + i] = (int8_t)((l < -32 ? -32 : l > 31 ? 31 : l) + 32);
        }
    }
    uint8_t *ql = out, *qh = out + 128;
    for (int n = 0; n < 2; n++, ql += 64, qh += 32) {
        const int8_t *v = levels + 128 * n;
        for (int l = 0; l < 32; l++) {
            ql[l] = (uint8_t)((v[l] & 0xF) | ((v[l + 64] & 0xF) << 4));
            ql[l + 32] = (uint8_t)((v[l + 32] & 0xF) | ((v[l + 96] & 0xF) << 4));
            qh[l] = (uint8_t)((v[l] >> 4) | ((v[l + 32] >> 4) << 2) | ((v[l + 64] >> 4) << 4) | ((v[l + 96] >> 4) << 6));
        }
    }
}

int llk_qk_quantize(int type, const float *x, int64_t blocks, void *out) {
    uint8_t *o = (uint8_t *)out;
    const int bytes = kblock_bytes(type);
    if (type != TYPE_Q4_K && type != TYPE_Q5_K && type != TYPE_Q6_K) return 0;
    for (int64_t b = 0; b < blocks; b++, x += 256, o += bytes) {
        if (type == TYPE_Q6_K) quantize_q6k_block(x, o);
        else quantize_q45k_block(x, o, type == TYPE_Q5_K);
    }
    return 1;
}
