// Integer products of 32-value weight blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) with activations
// rounded to 8-bit blocks, in llama.cpp's arithmetic: inside a block the products are summed
// exactly as integers, then scaled by the weight and activation block scales. Offset types
// (Q4_1, Q5_1) add offset x (half-precision activation block sum), as llama.cpp does.
//
// Code paths: AVX-512 VNNI (64 values per instruction, and a register-tiled matrix product over
// repacked weights for batches), AVX2 (sign trick with maddubs), NEON (SDOT), and portable scalar code.

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

int llk_isa_id(void);  // kernels.c: 0 scalar, 1 avx2, 2 avx512, 3 neon
int llk_has_vnni(void);

enum { TYPE_Q4_0 = 2, TYPE_Q4_1 = 3, TYPE_Q5_0 = 6, TYPE_Q5_1 = 7, TYPE_Q8_0 = 8 };

// Prepared activations for one token: `pairs` of these, then 2 * pairs floats holding each
// block's half-precision sum (scale x sum of its values), as llama.cpp's Q8_1 keeps it, then
// 2 * pairs int32 holding -bias x (sum of the block's values) for the repacked kernels (packed.c).
typedef struct {
    int8_t q[64];      // two blocks of 32 values
    int32_t init[16];  // per 4-value lane: -bias x lane sum, so unsigned weights give signed sums
    float d[16];       // lanes 0-7 the first block's scale, 8-15 the second's
} q8_pair;

// Repacked weights for the batched product: per pair, 64 unsigned values and the scales.
typedef struct {
    uint8_t w[64];
    float d[16];
} packed_pair;

// The 32-value types only (the K types have kquants.c).
static int block_bytes(int type) { return type == TYPE_Q4_0 || type == TYPE_Q4_1 || type == TYPE_Q5_0 || type == TYPE_Q5_1 || type == TYPE_Q8_0 ? llk_block_bytes(type) : 0; }

// What is subtracted from each stored (unsigned) weight value to get the signed value.
static int weight_bias(int type) {
    switch (type) {
    case TYPE_Q4_0: return 8;
    case TYPE_Q5_0: return 16;
    case TYPE_Q8_0: return 128;  // stored signed; we read it as value + 128
    default: return 0;
    }
}

static int has_offset(int type) { return type == TYPE_Q4_1 || type == TYPE_Q5_1; }

int llk_q8_supports(int type) { return block_bytes(type) != 0; }

static int64_t pairs_of(int64_t blocks) { return (blocks + 1) / 2; }

int64_t llk_q8_token_bytes(int64_t blocks) {
    return pairs_of(blocks) * (int64_t)sizeof(q8_pair) + pairs_of(blocks) * 2 * (int64_t)(sizeof(float) + sizeof(int32_t));
}

int64_t llk_q8_scratch_bytes(int64_t blocks) {
    return 64 * (pairs_of(blocks) * (int64_t)sizeof(packed_pair) + pairs_of(blocks) * 2 * (int64_t)sizeof(float));
}

// ---------------------------------------------------------------------------------------------
// Activations: llama.cpp's x86 quantizer (scale amax/127 stored as half, values x 127/amax
// rounded to nearest even).

static void prepare_block_scalar(const float *x, int8_t *q, float *d_out, float *sum_out) {
    float amax = 0;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127.0f, id = amax != 0 ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        const int v = (int)nearbyintf(x[j] * id);
        q[j] = (int8_t)v;
        sum += v;
    }
    *d_out = half_to_float(float_to_half(d));
    *sum_out = half_to_float(float_to_half(d * (float)sum));
}

#if LLK_X86
__attribute__((target("avx512f,avx512bw,avx512vl")))
static void prepare_block_avx512(const float *x, int8_t *q, float *d_out, float *sum_out) {
    const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
    const float d = amax / 127.0f, id = amax != 0 ? 127.0f / amax : 0.0f;
    const __m512 m = _mm512_set1_ps(id);
    // cvtps rounds to nearest even in the default rounding mode, as llama.cpp's _mm256_round_ps.
    const __m512i qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, m)), qb = _mm512_cvtps_epi32(_mm512_mul_ps(b, m));
    _mm_storeu_si128((__m128i *)q, _mm512_cvtsepi32_epi8(qa));
    _mm_storeu_si128((__m128i *)(q + 16), _mm512_cvtsepi32_epi8(qb));
    const int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb));
    *d_out = half_to_float(float_to_half(d));
    *sum_out = half_to_float(float_to_half(d * (float)sum));
}
#endif

void llk_q8_prepare(int type, const float *x, int64_t blocks, void *out) {
    q8_pair *pairs = (q8_pair *)out;
    const int64_t npairs = pairs_of(blocks);
    float *sums = (float *)(pairs + npairs);
    int32_t *bias_sums = (int32_t *)(sums + 2 * npairs);
    const int bias = weight_bias(type);
#if LLK_X86
    const int wide = llk_isa_id() == 2;
#endif
    for (int64_t p = 0; p < npairs; p++) {
        q8_pair *pair = &pairs[p];
        for (int h = 0; h < 2; h++) {
            const int64_t b = 2 * p + h;
            float d = 0, s = 0;
            if (b < blocks) {
#if LLK_X86
                if (wide) prepare_block_avx512(x + 32 * b, pair->q + 32 * h, &d, &s);
                else
#endif
                    prepare_block_scalar(x + 32 * b, pair->q + 32 * h, &d, &s);
            } else {
                memset(pair->q + 32 * h, 0, 32);
            }
            sums[b] = s;
            int32_t block_bias = 0;
            for (int l = 0; l < 8; l++) {
                const int8_t *v = pair->q + 32 * h + 4 * l;
                pair->init[8 * h + l] = -bias * (v[0] + v[1] + v[2] + v[3]);
                block_bias += pair->init[8 * h + l];
                pair->d[8 * h + l] = d;
            }
            bias_sums[b] = block_bias;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scalar products: the portable path and the reference the vector code is tested against.

// The 32 stored (unsigned, biased) values of a weight block.
static void unpack_scalar(int type, const uint8_t *p, uint8_t *u) {
    switch (type) {
    case TYPE_Q8_0:
        for (int j = 0; j < 32; j++) u[j] = (uint8_t)(p[2 + j] ^ 0x80);
        return;
    case TYPE_Q4_0:
    case TYPE_Q4_1: {
        const uint8_t *qs = p + (type == TYPE_Q4_1 ? 4 : 2);
        for (int j = 0; j < 16; j++) { u[j] = qs[j] & 0xF; u[j + 16] = qs[j] >> 4; }
        return;
    }
    default: {  // Q5_0, Q5_1
        const int header = type == TYPE_Q5_1 ? 4 : 2;
        uint32_t qh;
        memcpy(&qh, p + header, 4);
        const uint8_t *qs = p + header + 4;
        for (int j = 0; j < 16; j++) {
            u[j] = (uint8_t)((qs[j] & 0xF) | (((qh >> j) & 1) << 4));
            u[j + 16] = (uint8_t)((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
        }
    }
    }
}

static float dot_row_scalar(int type, const uint8_t *row, const uint8_t *token, int64_t blocks) {
    const q8_pair *pairs = (const q8_pair *)token;
    const float *sums = (const float *)(pairs + pairs_of(blocks));
    const int bytes = block_bytes(type), bias = weight_bias(type), offset = has_offset(type);
    float total = 0;
    uint8_t u[32];
    for (int64_t b = 0; b < blocks; b++) {
        const uint8_t *p = row + b * bytes;
        unpack_scalar(type, p, u);
        const int8_t *q = pairs[b / 2].q + 32 * (b & 1);
        int sum = 0;
        for (int j = 0; j < 32; j++) sum += ((int)u[j] - bias) * q[j];
        total += (load_half(p) * pairs[b / 2].d[8 * (b & 1)]) * (float)sum;
        if (offset) total += load_half(p + 2) * sums[b];
    }
    return total;
}

// ---------------------------------------------------------------------------------------------
// NEON: a block's 32 signed values (stored value - bias) in two registers, multiplied with the
// activations by SDOT. Same integers, same float steps as the scalar code: the same results.

#if LLK_NEON
static inline void unpack_neon(int type, const uint8_t *p, int8x16_t *lo, int8x16_t *hi) {
    if (type == TYPE_Q8_0) {  // stored signed: value + 128 - 128
        *lo = vld1q_s8((const int8_t *)p + 2);
        *hi = vld1q_s8((const int8_t *)p + 18);
        return;
    }
    const int header = type == TYPE_Q4_0 ? 2 : type == TYPE_Q4_1 ? 4 : type == TYPE_Q5_0 ? 6 : 8;
    const uint8x16_t qs = vld1q_u8(p + header), low4 = vdupq_n_u8(0x0F);
    uint8x16_t l = vandq_u8(qs, low4), h = vshrq_n_u8(qs, 4);
    if (type == TYPE_Q5_0 || type == TYPE_Q5_1) {
        // Bit j of the 32 high bits goes to value j as 16: spread byte j/8 to lane j, test bit j%8.
        const uint8_t *qh = p + header - 4;
        static const uint8_t spread_lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
        static const uint8_t bits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
        uint8_t q4[16] = {qh[0], qh[1], qh[2], qh[3]};
        const uint8x16_t bytes = vld1q_u8(q4), bit = vld1q_u8(bits), sixteen = vdupq_n_u8(16);
        const uint8x16_t idx = vld1q_u8(spread_lo);
        l = vorrq_u8(l, vandq_u8(vtstq_u8(vqtbl1q_u8(bytes, idx), bit), sixteen));
        h = vorrq_u8(h, vandq_u8(vtstq_u8(vqtbl1q_u8(bytes, vaddq_u8(idx, vdupq_n_u8(2))), bit), sixteen));
    }
    const int8x16_t bias = vdupq_n_s8((int8_t)weight_bias(type));
    *lo = vsubq_s8(vreinterpretq_s8_u8(l), bias);
    *hi = vsubq_s8(vreinterpretq_s8_u8(h), bias);
}

static float dot_row_neon(int type, const uint8_t *row, const uint8_t *token, int64_t blocks) {
    const q8_pair *pairs = (const q8_pair *)token;
    const float *sums = (const float *)(pairs + pairs_of(blocks));
    const int bytes = block_bytes(type), offset = has_offset(type);
    float total = 0;
    for (int64_t b = 0; b < blocks; b++) {
        const uint8_t *p = row + b * bytes;
        int8x16_t lo, hi;
        unpack_neon(type, p, &lo, &hi);
        const int8_t *q = pairs[b / 2].q + 32 * (b & 1);
        const int sum = vaddvq_s32(llk_neon_dot(llk_neon_dot(vdupq_n_s32(0), lo, vld1q_s8(q)), hi, vld1q_s8(q + 16)));
        total += (load_half(p) * pairs[b / 2].d[8 * (b & 1)]) * (float)sum;
        if (offset) total += load_half(p + 2) * sums[b];
    }
    return total;
}
#endif

// ---------------------------------------------------------------------------------------------
// AVX2: one block per 256-bit register, signed products by the sign trick (no VNNI needed).

#if LLK_X86
#define ATTR_AVX2 __attribute__((target("avx2,fma,f16c")))
#define ATTR_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c")))

ATTR_AVX2 static inline float half_f16c(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

// The 32 stored values of one block as unsigned bytes.
ATTR_AVX2 static inline __m256i unpack_avx2(int type, const uint8_t *p) {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    switch (type) {
    case TYPE_Q8_0:
        return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + 2)), _mm256_set1_epi8((char)0x80));
    case TYPE_Q4_0:
    case TYPE_Q4_1: {
        const __m128i q = _mm_loadu_si128((const __m128i *)(p + (type == TYPE_Q4_1 ? 4 : 2)));
        return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), low4);
    }
    default: {
        const int header = type == TYPE_Q5_1 ? 4 : 2;
        const __m128i q = _mm_loadu_si128((const __m128i *)(p + header + 4));
        const __m256i nibbles = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), low4);
        // Spread the 32 high bits over 32 bytes: byte j tests bit j.
        uint32_t qh;
        memcpy(&qh, p + header, 4);
        const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh),
            _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL, 0x0101010101010101LL, 0));
        const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
        const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
        return _mm256_or_si256(nibbles, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
    }
    }
}

ATTR_AVX2 static inline float hsum_avx2(__m256 v) {
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

ATTR_AVX2 static float dot_row_avx2(int type, const uint8_t *row, const uint8_t *token, int64_t blocks) {
    const q8_pair *pairs = (const q8_pair *)token;
    const float *sums = (const float *)(pairs + pairs_of(blocks));
    const int bytes = block_bytes(type), offset = has_offset(type);
    const __m256i bias = _mm256_set1_epi8((char)weight_bias(type)), ones = _mm256_set1_epi16(1);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float offsets[2] = {0, 0};
    for (int64_t b = 0; b < blocks; b++) {
        const uint8_t *p = row + b * bytes;
        const __m256i w = _mm256_sub_epi8(unpack_avx2(type, p), bias);
        const __m256i q = _mm256_loadu_si256((const __m256i *)(pairs[b / 2].q + 32 * (b & 1)));
        const __m256i lanes = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(q, w)), ones);
        const __m256 scale = _mm256_set1_ps(half_f16c(p) * pairs[b / 2].d[8 * (b & 1)]);
        if (b & 1) acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), scale, acc1);
        else acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), scale, acc0);
        if (offset) offsets[b & 1] += half_f16c(p + 2) * sums[b];
    }
    return hsum_avx2(_mm256_add_ps(acc0, acc1)) + (offsets[0] + offsets[1]);
}

// ---------------------------------------------------------------------------------------------
// AVX-512 VNNI: two blocks per 512-bit register; unsigned weights x signed activations, with the
// bias folded into the accumulator's starting value (the activation's `init`).

// Blocks p0 and p1 (NULL: a zero block) as 64 unsigned bytes.
ATTR_VNNI static inline __m512i unpack_pair_vnni(int type, const uint8_t *p0, const uint8_t *p1) {
    const __m256i lo = unpack_avx2(type, p0);
    const __m256i hi = p1 ? unpack_avx2(type, p1) : _mm256_setzero_si256();
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

ATTR_VNNI static inline __m512 pair_scales(const uint8_t *p0, const uint8_t *p1) {
    return _mm512_insertf32x8(_mm512_set1_ps(half_f16c(p0)), _mm256_set1_ps(p1 ? half_f16c(p1) : 0.0f), 1);
}

// One row times one token; `type` is a constant in each caller below, so the unpacking is
// specialized and the loop has no branches on it.
ATTR_VNNI __attribute__((always_inline)) static inline float dot_row_vnni_typed(const int type, const uint8_t *row,
                                                                                const uint8_t *token, int64_t blocks) {
    const q8_pair *pairs = (const q8_pair *)token;
    const float *sums = (const float *)(pairs + pairs_of(blocks));
    const int bytes = block_bytes(type), offset = has_offset(type), ahead = llk_prefetch_ahead();
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    float offsets[2] = {0, 0};
    const int64_t full = blocks / 2;
    for (int64_t p = 0; p < full; p++) {
        const uint8_t *b0 = row + 2 * p * bytes, *b1 = b0 + bytes;
        _mm_prefetch((const char *)b0 + ahead, _MM_HINT_T0);
        const q8_pair *a = &pairs[p];
        const __m512i lanes = _mm512_dpbusd_epi32(_mm512_loadu_si512(a->init), unpack_pair_vnni(type, b0, b1), _mm512_loadu_si512(a->q));
        const __m512 scale = _mm512_mul_ps(pair_scales(b0, b1), _mm512_loadu_ps(a->d));
        if (p & 1) acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes), scale, acc1);
        else acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes), scale, acc0);
        if (offset) offsets[p & 1] += half_f16c(b0 + 2) * sums[2 * p] + half_f16c(b1 + 2) * sums[2 * p + 1];
    }
    if (blocks & 1) {
        const uint8_t *b0 = row + 2 * full * bytes;
        const q8_pair *a = &pairs[full];
        const __m512i lanes = _mm512_dpbusd_epi32(_mm512_loadu_si512(a->init), unpack_pair_vnni(type, b0, NULL), _mm512_loadu_si512(a->q));
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes), _mm512_mul_ps(pair_scales(b0, NULL), _mm512_loadu_ps(a->d)), acc0);
        if (offset) offsets[0] += half_f16c(b0 + 2) * sums[2 * full];
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + (offsets[0] + offsets[1]);
}

// One row times TT tokens (a few: the tokens of several sequences in one generation step).
// Each weight pair is unpacked once, in registers, for all of them; repacking rows into scratch,
// as the prompt-sized kernel does, costs more than it saves when only a few tokens share it.
// Every token's sum is formed exactly as dot_row_vnni_typed forms it (two accumulators by pair
// parity, the odd block in the first, the offsets in two partial sums), so a sequence batched with
// others gets the very logits it gets alone.
ATTR_VNNI __attribute__((always_inline)) static inline void row_tokens_vnni_typed(
    const int type, const int TT, const uint8_t *row, const uint8_t *acts, int64_t pa_stride, int64_t blocks,
    float *out, int64_t out_stride) {
    const int64_t npairs = pairs_of(blocks), full = blocks / 2;
    const int bytes = block_bytes(type), offset = has_offset(type), ahead = llk_prefetch_ahead();
    __m512 acc[2][7];
    float offsets[7][2];
    for (int j = 0; j < TT; j++) {
        acc[0][j] = acc[1][j] = _mm512_setzero_ps();
        offsets[j][0] = offsets[j][1] = 0;
    }
    for (int64_t p = 0; p < npairs; p++) {
        const uint8_t *b0 = row + 2 * p * bytes, *b1 = p < full ? b0 + bytes : NULL;
        _mm_prefetch((const char *)b0 + ahead, _MM_HINT_T0);
        const __m512i w = unpack_pair_vnni(type, b0, b1);
        const __m512 dw = pair_scales(b0, b1);
        const int k = p < full ? (int)(p & 1) : 0;
        for (int j = 0; j < TT; j++) {
            const q8_pair *a = (const q8_pair *)(acts + j * pa_stride) + p;
            const __m512i lanes = _mm512_dpbusd_epi32(_mm512_loadu_si512(a->init), w, _mm512_loadu_si512(a->q));
            acc[k][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes), _mm512_mul_ps(dw, _mm512_loadu_ps(a->d)), acc[k][j]);
            if (offset) {
                const float *sums = (const float *)((const q8_pair *)(acts + j * pa_stride) + npairs);
                if (b1) offsets[j][k] += half_f16c(b0 + 2) * sums[2 * p] + half_f16c(b1 + 2) * sums[2 * p + 1];
                else offsets[j][0] += half_f16c(b0 + 2) * sums[2 * p];
            }
        }
    }
    for (int j = 0; j < TT; j++)
        out[j * out_stride] = _mm512_reduce_add_ps(_mm512_add_ps(acc[0][j], acc[1][j])) + (offsets[j][0] + offsets[j][1]);
}

// Rows times 2 to 7 tokens, the type and the token count constants in each case.
ATTR_VNNI static void few_tokens_vnni(int type, int tokens, const uint8_t *w, int64_t row_bytes, int64_t rows,
                                      const uint8_t *acts, int64_t pa_stride, int64_t blocks, float *out, int64_t out_stride) {
#define FEW_CASE(T, N) \
    case N: for (int64_t r = 0; r < rows; r++) row_tokens_vnni_typed(T, N, w + r * row_bytes, acts, pa_stride, blocks, out + r, out_stride); return;
#define FEW_TYPE(T) \
    case T: switch (tokens) { FEW_CASE(T, 2) FEW_CASE(T, 3) FEW_CASE(T, 4) FEW_CASE(T, 5) FEW_CASE(T, 6) FEW_CASE(T, 7) default: return; }
    switch (type) {
        FEW_TYPE(TYPE_Q4_0) FEW_TYPE(TYPE_Q4_1) FEW_TYPE(TYPE_Q5_0) FEW_TYPE(TYPE_Q5_1) FEW_TYPE(TYPE_Q8_0)
    default: return;
    }
#undef FEW_TYPE
#undef FEW_CASE
}

ATTR_VNNI static void rows_vnni(int type, const uint8_t *w, int64_t row_bytes, int64_t rows, const uint8_t *token,
                                int64_t blocks, float *out) {
#define ROWS_CASE(T) \
    case T: for (int64_t r = 0; r < rows; r++) out[r] = dot_row_vnni_typed(T, w + r * row_bytes, token, blocks); return;
    switch (type) {
        ROWS_CASE(TYPE_Q4_0) ROWS_CASE(TYPE_Q4_1) ROWS_CASE(TYPE_Q5_0) ROWS_CASE(TYPE_Q5_1) ROWS_CASE(TYPE_Q8_0)
    default: return;
    }
#undef ROWS_CASE
}

// Repacks `count` rows for the batched kernel: per pair the 64 unsigned values and the scales,
// then the offsets of every block.
ATTR_VNNI static void pack_rows_vnni(int type, const uint8_t *w, int64_t row_bytes, int64_t count, int64_t blocks,
                                     uint8_t *packed, int64_t packed_stride) {
    const int bytes = block_bytes(type), offset = has_offset(type);
    const int64_t npairs = pairs_of(blocks);
    for (int64_t r = 0; r < count; r++) {
        const uint8_t *row = w + r * row_bytes;
        packed_pair *out = (packed_pair *)(packed + r * packed_stride);
        float *mins = (float *)(out + npairs);
        for (int64_t p = 0; p < npairs; p++) {
            const uint8_t *b0 = row + 2 * p * bytes, *b1 = 2 * p + 1 < blocks ? b0 + bytes : NULL;
            _mm512_storeu_si512(out[p].w, unpack_pair_vnni(type, b0, b1));
            _mm512_storeu_ps(out[p].d, pair_scales(b0, b1));
            mins[2 * p] = offset ? half_f16c(b0 + 2) : 0.0f;
            mins[2 * p + 1] = offset && b1 ? half_f16c(b1 + 2) : 0.0f;
        }
    }
}

// RT packed rows x TT tokens over all pairs, each pair of (row, token) its own accumulator.
ATTR_VNNI __attribute__((always_inline)) static inline void tile_vnni(
    const int RT, const int TT, const uint8_t *pw, int64_t pw_stride, const uint8_t *pa, int64_t pa_stride,
    int64_t npairs, float *out, int64_t out_stride) {
    __m512 acc[4][4];
    for (int i = 0; i < RT; i++)
        for (int j = 0; j < TT; j++) acc[i][j] = _mm512_setzero_ps();
    for (int64_t p = 0; p < npairs; p++) {
        __m512i w[4];
        __m512 dw[4];
        for (int i = 0; i < RT; i++) {
            const packed_pair *pp = (const packed_pair *)(pw + i * pw_stride) + p;
            w[i] = _mm512_loadu_si512(pp->w);
            dw[i] = _mm512_loadu_ps(pp->d);
        }
        for (int j = 0; j < TT; j++) {
            const q8_pair *a = (const q8_pair *)(pa + j * pa_stride) + p;
            const __m512i q = _mm512_loadu_si512(a->q), init = _mm512_loadu_si512(a->init);
            const __m512 d = _mm512_loadu_ps(a->d);
            for (int i = 0; i < RT; i++) {
                const __m512i lanes = _mm512_dpbusd_epi32(init, w[i], q);
                acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes), _mm512_mul_ps(dw[i], d), acc[i][j]);
            }
        }
    }
    for (int i = 0; i < RT; i++)
        for (int j = 0; j < TT; j++) out[j * out_stride + i] = _mm512_reduce_add_ps(acc[i][j]);
}

ATTR_VNNI static void tile_any_vnni(int rt, int tt, const uint8_t *pw, int64_t pw_stride, const uint8_t *pa,
                                    int64_t pa_stride, int64_t npairs, float *out, int64_t out_stride) {
#define TILE_CASE(R, T) \
    case (R) * 8 + (T): tile_vnni(R, T, pw, pw_stride, pa, pa_stride, npairs, out, out_stride); return;
    switch (rt * 8 + tt) {
        TILE_CASE(4, 4) TILE_CASE(4, 3) TILE_CASE(4, 2) TILE_CASE(4, 1)
        TILE_CASE(3, 4) TILE_CASE(3, 3) TILE_CASE(3, 2) TILE_CASE(3, 1)
        TILE_CASE(2, 4) TILE_CASE(2, 3) TILE_CASE(2, 2) TILE_CASE(2, 1)
        TILE_CASE(1, 4) TILE_CASE(1, 3) TILE_CASE(1, 2) TILE_CASE(1, 1)
    default: return;
    }
#undef TILE_CASE
}

ATTR_VNNI static void matmul_vnni(int type, const uint8_t *w, int64_t row_bytes, int64_t rows, const uint8_t *acts,
                                  int64_t tokens, int64_t blocks, float *out, int64_t out_stride, uint8_t *scratch) {
    const int64_t npairs = pairs_of(blocks);
    const int64_t pw_stride = npairs * (int64_t)sizeof(packed_pair) + npairs * 2 * (int64_t)sizeof(float);
    const int64_t pa_stride = llk_q8_token_bytes(blocks);
    const int offset = has_offset(type);
    // 64 rows repacked at a time (they stay in L2); every 4-token group then meets each 4-row tile.
    for (int64_t r0 = 0; r0 < rows; r0 += 64) {
        const int64_t count = rows - r0 < 64 ? rows - r0 : 64;
        pack_rows_vnni(type, w + r0 * row_bytes, row_bytes, count, blocks, scratch, pw_stride);
        for (int64_t t0 = 0; t0 < tokens; t0 += 4) {
            const int tt = (int)(tokens - t0 < 4 ? tokens - t0 : 4);
            for (int64_t i0 = 0; i0 < count; i0 += 4) {
                const int rt = (int)(count - i0 < 4 ? count - i0 : 4);
                float *o = out + t0 * out_stride + r0 + i0;
                tile_any_vnni(rt, tt, scratch + i0 * pw_stride, pw_stride, acts + t0 * pa_stride, pa_stride, npairs, o, out_stride);
                if (!offset) continue;
                for (int j = 0; j < tt; j++) {
                    const float *sums = (const float *)((const q8_pair *)(acts + (t0 + j) * pa_stride) + npairs);
                    for (int i = 0; i < rt; i++) {
                        const float *mins = (const float *)((const packed_pair *)(scratch + (i0 + i) * pw_stride) + npairs);
                        o[j * out_stride + i] += llk_dot_f32(mins, sums, 2 * npairs);
                    }
                }
            }
        }
    }
}
#endif

// ---------------------------------------------------------------------------------------------

// Up to this many tokens, rows are multiplied without repacking (few_tokens_vnni).
#ifndef FEW_TOKENS
#define FEW_TOKENS 7
#endif

void llk_q8_matmul(int type, const void *weights, int64_t row_bytes, int64_t rows, const void *activations,
                   int64_t tokens, int64_t blocks, float *out, int64_t out_stride, void *scratch) {
    const uint8_t *w = (const uint8_t *)weights, *a = (const uint8_t *)activations;
    const int64_t token_bytes = llk_q8_token_bytes(blocks);
#if LLK_X86
    const int isa = llk_isa_id();
    if (isa == 2 && llk_has_vnni()) {
        if (tokens >= 2 && tokens <= FEW_TOKENS) {
            few_tokens_vnni(type, (int)tokens, w, row_bytes, rows, a, token_bytes, blocks, out, out_stride);
            return;
        }
        if (tokens >= 2) {
            matmul_vnni(type, w, row_bytes, rows, a, tokens, blocks, out, out_stride, (uint8_t *)scratch);
            return;
        }
        rows_vnni(type, w, row_bytes, rows, a, blocks, out);
        return;
    }
    if (isa == 1 || isa == 2) {
        for (int64_t t = 0; t < tokens; t++)
            for (int64_t r = 0; r < rows; r++)
                out[t * out_stride + r] = dot_row_avx2(type, w + r * row_bytes, a + t * token_bytes, blocks);
        return;
    }
#endif
    (void)scratch;
#if LLK_NEON
    if (llk_isa_id() == 3) {
        for (int64_t t = 0; t < tokens; t++)
            for (int64_t r = 0; r < rows; r++)
                out[t * out_stride + r] = dot_row_neon(type, w + r * row_bytes, a + t * token_bytes, blocks);
        return;
    }
#endif
    for (int64_t t = 0; t < tokens; t++)
        for (int64_t r = 0; r < rows; r++)
            out[t * out_stride + r] = dot_row_scalar(type, w + r * row_bytes, a + t * token_bytes, blocks);
}
