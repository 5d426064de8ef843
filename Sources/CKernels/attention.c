// Attention of the query heads that share one KV head (grouped-query attention), over an F16
// cache: each key and value is read and widened once for all of the group's heads, instead of
// once per head. The arithmetic per head is the row-by-row one: scaled dot products, a softmax
// with a double-precision sum, weights rounded to F16 (as llama.cpp rounds them before they meet
// F16 values), then the weighted sum of the values.

#include "CKernels.h"
#include "half.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LLK_X86 1
#endif

int llk_isa_id(void);

#if LLK_X86
#define ATTR_ATT __attribute__((target("avx2,fma,f16c")))

// Where a position lives in a cache of `capacity` slots (a ring for sliding-window layers).
static inline int64_t slot_of(int64_t position, int64_t capacity) { return position < capacity ? position : position % capacity; }

ATTR_ATT static void widen(const uint16_t *h, float *f, int n) {
    for (int i = 0; i < n; i += 8) _mm256_storeu_ps(f + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
}

// Lane k = the sum of the lanes of v[k].
ATTR_ATT static inline __m256 sums8(const __m256 v[8]) {
    const __m256 a = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    const __m256 b = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
    // a = (0 1 2 3 | 0 1 2 3) halves of keys 0-3, b the same for keys 4-7.
    return _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
}

// o[0..<8L] += sum over i < m of w[i] x v[i * stride ..< +8L], in that order, in registers.
ATTR_ATT __attribute__((always_inline)) static inline void accumulate_values(const int L, const float *w, int m, const float *v,
                                                                             int stride, float *o) {
    __m256 acc[8];
    for (int l = 0; l < L; l++) acc[l] = _mm256_loadu_ps(o + 8 * l);
    for (int i = 0; i < m; i++) {
        const __m256 wi = _mm256_set1_ps(w[i]);
        for (int l = 0; l < L; l++) acc[l] = _mm256_fmadd_ps(wi, _mm256_load_ps(v + i * stride + 8 * l), acc[l]);
    }
    for (int l = 0; l < L; l++) _mm256_storeu_ps(o + 8 * l, acc[l]);
}

ATTR_ATT static inline float reduce_max8(__m256 v) {
    __m128 r = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    r = _mm_max_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

// e^x for x <= 0 (a softmax's shifted scores) to about 1 ulp: x = n ln 2 + r with |r| <= ln 2 / 2,
// e^r by its Taylor polynomial to r^6, times 2^n built in the exponent bits. Below -87 it gives
// e^-87 (1.6e-38), nothing beside the largest score's 1.
ATTR_ATT static inline __m256 exp8(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

enum { KEYS = 16 };  // positions per tile: their keys or values widened once, then used by every query

// `tokens` query tokens (q_stride apart, `heads` heads each) of one sequence, all attending from
// position `first`; token t to lengths[t] positions. The cache is read a tile of positions at a
// time, widened once for all of the queries. Scores: 8 positions per query at once, each a dot
// product summed in 8 lanes and then across them. Values: each query's output accumulated in
// registers over the tile, 64 floats at a time.
ATTR_ATT static void attend_avx2(const float *q, int64_t q_stride, int tokens, const int64_t *lengths, int heads,
                                 int head_size, const uint16_t *keys, const uint16_t *values, int64_t stride,
                                 int64_t capacity, int64_t first, float scale, float *scores, float *out,
                                 int64_t out_stride) {
    float tile[KEYS * 512] __attribute__((aligned(32)));
    int64_t longest = 0;
    for (int t = 0; t < tokens; t++) longest = lengths[t] > longest ? lengths[t] : longest;
    const __m256 scale8 = _mm256_set1_ps(scale);
    for (int64_t i0 = 0; i0 < longest; i0 += KEYS) {
        const int n = (int)(longest - i0 < KEYS ? longest - i0 : KEYS);
        for (int i = 0; i < n; i++) widen(keys + slot_of(first + i0 + i, capacity) * stride, tile + i * head_size, head_size);
        for (int i = n; i < (n + 7) / 8 * 8; i++) memset(tile + i * head_size, 0, sizeof(float) * (size_t)head_size);
        for (int t = 0; t < tokens; t++) {
            const int m = (int)(lengths[t] - i0 < n ? lengths[t] - i0 : n);
            for (int h = 0; h < heads && m > 0; h++) {
                const float *qh = q + t * q_stride + h * head_size;
                float *s = scores + (t * heads + h) * longest + i0;
                for (int k0 = 0; k0 < m; k0 += 8) {
                    __m256 acc[8];
                    for (int k = 0; k < 8; k++) acc[k] = _mm256_setzero_ps();
                    for (int j = 0; j < head_size; j += 8) {
                        const __m256 qv = _mm256_loadu_ps(qh + j);
                        for (int k = 0; k < 8; k++) acc[k] = _mm256_fmadd_ps(_mm256_load_ps(tile + (k0 + k) * head_size + j), qv, acc[k]);
                    }
                    const __m256 v = _mm256_mul_ps(sums8(acc), scale8);
                    if (m - k0 >= 8) {
                        _mm256_storeu_ps(s + k0, v);
                    } else {
                        float lanes[8];
                        _mm256_storeu_ps(lanes, v);
                        memcpy(s + k0, lanes, sizeof(float) * (size_t)(m - k0));
                    }
                }
            }
        }
    }
    for (int t = 0; t < tokens; t++)
        for (int h = 0; h < heads; h++) {
            float *s = scores + (t * heads + h) * longest;
            const int64_t length = lengths[t];
            __m256 top8 = _mm256_set1_ps(-INFINITY);
            int64_t i = 0;
            for (; i + 8 <= length; i += 8) top8 = _mm256_max_ps(top8, _mm256_loadu_ps(s + i));
            float top = reduce_max8(top8);
            for (; i < length; i++) top = s[i] > top ? s[i] : top;
            __m256d sum4 = _mm256_setzero_pd();
            const __m256 top_v = _mm256_set1_ps(top);
            for (i = 0; i + 8 <= length; i += 8) {
                const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + i), top_v));
                _mm256_storeu_ps(s + i, e);
                sum4 = _mm256_add_pd(sum4, _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(e)), _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1))));
            }
            double lanes[4];
            _mm256_storeu_pd(lanes, sum4);
            double sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
            for (; i < length; i++) {
                const float e = expf(s[i] - top);
                s[i] = e;
                sum += e;
            }
            const float inverse = (float)(1 / sum);
            for (i = 0; i + 8 <= length; i += 8) {
                const __m256 w = _mm256_mul_ps(_mm256_loadu_ps(s + i), _mm256_set1_ps(inverse));
                _mm256_storeu_ps(s + i, _mm256_cvtph_ps(_mm256_cvtps_ph(w, _MM_FROUND_TO_NEAREST_INT)));
            }
            for (; i < length; i++) s[i] = half_to_float(float_to_half(s[i] * inverse));
            memset(out + t * out_stride + h * head_size, 0, sizeof(float) * (size_t)head_size);
        }
    for (int64_t i0 = 0; i0 < longest; i0 += KEYS) {
        const int n = (int)(longest - i0 < KEYS ? longest - i0 : KEYS);
        for (int i = 0; i < n; i++) widen(values + slot_of(first + i0 + i, capacity) * stride, tile + i * head_size, head_size);
        for (int t = 0; t < tokens; t++) {
            const int m = (int)(lengths[t] - i0 < n ? lengths[t] - i0 : n);
            for (int h = 0; h < heads && m > 0; h++) {
                const float *w = scores + (t * heads + h) * longest + i0;
                float *o = out + t * out_stride + h * head_size;
                // 64 outputs in registers at a time; the sum over positions in the same order as one by one.
                int c = 0;
                for (; c + 64 <= head_size; c += 64) accumulate_values(8, w, m, tile + c, head_size, o + c);
                for (; c < head_size; c += 8) accumulate_values(1, w, m, tile + c, head_size, o + c);
            }
        }
    }
}
#endif

int llk_attention_f16_supported(int head_size) {
#if LLK_X86
    const int isa = llk_isa_id();
    return (isa == 1 || isa == 2) && head_size % 8 == 0 && head_size <= 512;
#else
    (void)head_size;
    return 0;
#endif
}

int llk_attention_f16(const float *q, int heads, int head_size, const uint16_t *keys, const uint16_t *values,
                      int64_t stride, int64_t capacity, int64_t first, int64_t length, float scale, float *scores,
                      float *out) {
    return llk_attention_f16_tokens(q, 0, 1, &length, heads, head_size, keys, values, stride, capacity, first, scale,
                                    scores, out, 0);
}

int llk_attention_f16_tokens(const float *q, int64_t q_stride, int tokens, const int64_t *lengths, int heads,
                             int head_size, const uint16_t *keys, const uint16_t *values, int64_t stride,
                             int64_t capacity, int64_t first, float scale, float *scores, float *out,
                             int64_t out_stride) {
#if LLK_X86
    if (llk_attention_f16_supported(head_size)) {
        attend_avx2(q, q_stride, tokens, lengths, heads, head_size, keys, values, stride, capacity, first, scale,
                    scores, out, out_stride);
        return 1;
    }
#endif
    (void)q; (void)q_stride; (void)tokens; (void)lengths; (void)heads; (void)head_size; (void)keys; (void)values;
    (void)stride; (void)capacity; (void)first; (void)scale; (void)scores; (void)out; (void)out_stride;
    return 0;
}
