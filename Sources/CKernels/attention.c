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

ATTR_ATT static inline float hsum8(__m256 v) {
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

// Where a position lives in a cache of `capacity` slots (a ring for sliding-window layers).
static inline int64_t slot_of(int64_t position, int64_t capacity) { return position < capacity ? position : position % capacity; }

ATTR_ATT static void widen(const uint16_t *h, float *f, int n) {
    for (int i = 0; i < n; i += 8) _mm256_storeu_ps(f + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
}

// `tokens` query tokens (q_stride apart, `heads` heads each) of one sequence, all attending from
// position `first`; token t to lengths[t] positions. Each key and value is widened once for all.
ATTR_ATT static void attend_avx2(const float *q, int64_t q_stride, int tokens, const int64_t *lengths, int heads,
                                 int head_size, const uint16_t *keys, const uint16_t *values, int64_t stride,
                                 int64_t capacity, int64_t first, float scale, float *scores, float *out,
                                 int64_t out_stride) {
    float row[512] __attribute__((aligned(32)));
    int64_t longest = 0;
    for (int t = 0; t < tokens; t++) longest = lengths[t] > longest ? lengths[t] : longest;
    for (int64_t i = 0; i < longest; i++) {
        widen(keys + slot_of(first + i, capacity) * stride, row, head_size);
        for (int t = 0; t < tokens; t++) {
            if (i >= lengths[t]) continue;
            for (int h = 0; h < heads; h++) {
                const float *qh = q + t * q_stride + h * head_size;
                __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
                int j = 0;
                for (; j + 16 <= head_size; j += 16) {
                    a0 = _mm256_fmadd_ps(_mm256_load_ps(row + j), _mm256_loadu_ps(qh + j), a0);
                    a1 = _mm256_fmadd_ps(_mm256_load_ps(row + j + 8), _mm256_loadu_ps(qh + j + 8), a1);
                }
                if (j < head_size) a0 = _mm256_fmadd_ps(_mm256_load_ps(row + j), _mm256_loadu_ps(qh + j), a0);
                scores[(t * heads + h) * longest + i] = hsum8(_mm256_add_ps(a0, a1)) * scale;
            }
        }
    }
    for (int t = 0; t < tokens; t++)
        for (int h = 0; h < heads; h++) {
            float *s = scores + (t * heads + h) * longest;
            const int64_t length = lengths[t];
            float top = -INFINITY;
            for (int64_t i = 0; i < length; i++) top = s[i] > top ? s[i] : top;
            double sum = 0;
            for (int64_t i = 0; i < length; i++) {
                const float e = expf(s[i] - top);
                s[i] = e;
                sum += e;
            }
            const float inverse = (float)(1 / sum);
            int64_t i = 0;
            for (; i + 8 <= length; i += 8) {
                const __m256 w = _mm256_mul_ps(_mm256_loadu_ps(s + i), _mm256_set1_ps(inverse));
                _mm256_storeu_ps(s + i, _mm256_cvtph_ps(_mm256_cvtps_ph(w, _MM_FROUND_TO_NEAREST_INT)));
            }
            for (; i < length; i++) s[i] = half_to_float(float_to_half(s[i] * inverse));
            memset(out + t * out_stride + h * head_size, 0, sizeof(float) * (size_t)head_size);
        }
    for (int64_t i = 0; i < longest; i++) {
        widen(values + slot_of(first + i, capacity) * stride, row, head_size);
        for (int t = 0; t < tokens; t++) {
            if (i >= lengths[t]) continue;
            for (int h = 0; h < heads; h++) {
                const __m256 w = _mm256_set1_ps(scores[(t * heads + h) * longest + i]);
                float *o = out + t * out_stride + h * head_size;
                for (int j = 0; j < head_size; j += 8)
                    _mm256_storeu_ps(o + j, _mm256_fmadd_ps(w, _mm256_load_ps(row + j), _mm256_loadu_ps(o + j)));
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
