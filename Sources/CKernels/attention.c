// Attention of the query heads that share one KV head (grouped-query attention), over a cache of
// F32, F16, Q8_0 or Q4_0 rows, flash style: the cache is taken in spans of LLK_ATTENTION_SPAN
// positions. Within a span, keys are widened 16 positions at a time, once for every query of the
// call; each query's scores are shifted by the span's largest and exponentiated; values are then
// widened the same way and summed with those weights in registers. Spans are merged by their
// maxima (the online softmax), always one after another from the first, so a token's result
// depends only on its own positions: not on the threads, nor on what it was batched with.

#include "CKernels.h"
#include "exp.h"
#include "half.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LLK_X86 1
#elif defined(__aarch64__)
#include <arm_neon.h>
#define LLK_NEON 1
#endif

int llk_isa_id(void);

enum { KEYS = 16 };  // positions widened at a time: their keys or values, used by every query
enum { TYPE_F32 = 0, TYPE_F16 = 1, TYPE_Q4_0 = 2, TYPE_Q8_0 = 8 };

// Where a position lives in a cache of `capacity` slots (a ring for sliding-window layers).
static inline int64_t slot_of(int64_t position, int64_t capacity) { return position < capacity ? position : position % capacity; }

int64_t llk_kv_row_bytes(int type, int64_t n) {
    if (n < 0) return -1;
    switch (type) {
    case TYPE_F32: return 4 * n;
    case TYPE_F16: return 2 * n;
    case TYPE_Q8_0: return n % 32 ? -1 : n / 32 * 34;
    case TYPE_Q4_0: return n % 32 ? -1 : n / 32 * 18;
    default: return -1;
    }
}

// Rounding as ggml's reference quantizers (quantize_row_q8_0_ref, quantize_row_q4_0_ref).
static void store_q8_0(const float *x, uint8_t *y) {
    float amax = 0;
    for (int j = 0; j < 32; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    const float d = amax / 127, id = d != 0 ? 1 / d : 0;
    const uint16_t h = float_to_half(d);
    memcpy(y, &h, 2);
    for (int j = 0; j < 32; j++) y[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

static void store_q4_0(const float *x, uint8_t *y) {
    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    const float d = max / -8, id = d != 0 ? 1 / d : 0;
    const uint16_t h = float_to_half(d);
    memcpy(y, &h, 2);
    for (int j = 0; j < 16; j++) {
        const int8_t lo = (int8_t)(x[j] * id + 8.5f), hi = (int8_t)(x[16 + j] * id + 8.5f);
        y[2 + j] = (uint8_t)((lo < 15 ? lo : 15) | (hi < 15 ? hi : 15) << 4);
    }
}

int llk_kv_store(int type, const float *x, void *dst, int64_t n) {
    if (llk_kv_row_bytes(type, n) < 0) return 0;
    uint8_t *y = dst;
    switch (type) {
    case TYPE_F32: memcpy(dst, x, sizeof(float) * (size_t)n); break;
    case TYPE_F16:
        if (!llk_to_half(x, dst, n))
            for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = float_to_half(x[i]);
        break;
    case TYPE_Q8_0: for (int64_t b = 0; b < n / 32; b++) store_q8_0(x + 32 * b, y + 34 * b); break;
    case TYPE_Q4_0: for (int64_t b = 0; b < n / 32; b++) store_q4_0(x + 32 * b, y + 18 * b); break;
    }
    return 1;
}

// Each run of `chunk` values (a power of two) times the orthonormal Walsh-Hadamard matrix
// (Sylvester's order, scaled by 1 / sqrt(chunk)), by butterflies. The matrix is its own inverse.
void llk_hadamard(float *x, int64_t n, int64_t chunk) {
    if (chunk < 2 || (chunk & (chunk - 1)) || n % chunk) return;
    const float scale = 1 / sqrtf((float)chunk);
    for (int64_t c = 0; c < n; c += chunk) {
        float *y = x + c;
        for (int64_t h = 1; h < chunk; h *= 2)
            for (int64_t i = 0; i < chunk; i += 2 * h)
                for (int64_t j = i; j < i + h; j++) {
                    const float a = y[j], b = y[j + h];
                    y[j] = a + b;
                    y[j + h] = a - b;
                }
        for (int64_t j = 0; j < chunk; j++) y[j] *= scale;
    }
}

// ---------------------------------------------------------------------------------------------
// The steps, scalar.

static void load_scalar(int type, const uint8_t *row, float *f, int n) {
    switch (type) {
    case TYPE_F32: memcpy(f, row, sizeof(float) * (size_t)n); break;
    case TYPE_F16:
        for (int i = 0; i < n; i++) f[i] = load_half(row + 2 * i);
        break;
    case TYPE_Q8_0:
        for (int b = 0; b < n / 32; b++) {
            const uint8_t *block = row + 34 * b;
            const float d = load_half(block);
            for (int j = 0; j < 32; j++) f[32 * b + j] = d * (float)(int8_t)block[2 + j];
        }
        break;
    case TYPE_Q4_0:
        for (int b = 0; b < n / 32; b++) {
            const uint8_t *block = row + 18 * b;
            const float d = load_half(block);
            for (int j = 0; j < 16; j++) {
                f[32 * b + j] = d * (float)((block[2 + j] & 0xF) - 8);
                f[32 * b + 16 + j] = d * (float)((block[2 + j] >> 4) - 8);
            }
        }
        break;
    }
}

void llk_kv_load(int type, const void *src, float *dst, int64_t n) {
    if (llk_kv_row_bytes(type, n) >= 0) load_scalar(type, src, dst, (int)n);
}

// s[k] = scale x (tile row k . q) for k < m.
static void scores_scalar(const float *tile, int m, const float *q, int n, float scale, float *s) {
    for (int k = 0; k < m; k++) {
        float sum = 0;
        for (int j = 0; j < n; j++) sum += tile[k * n + j] * q[j];
        s[k] = sum * scale;
    }
}

static float max_scalar(const float *s, int n) {
    float top = -INFINITY;
    for (int i = 0; i < n; i++) top = s[i] > top ? s[i] : top;
    return top;
}

// s[i] = e^(s[i] - top) for i < n; returns their sum.
static double exp_scalar(float *s, int n, float top) {
    double sum = 0;
    for (int i = 0; i < n; i++) {
        s[i] = expf(s[i] - top);
        sum += s[i];
    }
    return sum;
}

// o[0..<n] += sum over i < m of w[i] x tile row i.
static void accumulate_scalar(const float *w, int m, const float *tile, int n, float *o) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) o[j] += w[i] * tile[i * n + j];
}

// o = o * a + p * b.
static void blend_scalar(float *o, float a, const float *p, float b, int n) {
    for (int j = 0; j < n; j++) o[j] = o[j] * a + p[j] * b;
}

// ---------------------------------------------------------------------------------------------
// The steps, AVX2 (head sizes a multiple of 8).

#if LLK_X86
#define ATTR_ATT __attribute__((target("avx2,fma,f16c")))

ATTR_ATT static void load_avx2(int type, const uint8_t *row, float *f, int n) {
    switch (type) {
    case TYPE_F16:
        for (int i = 0; i < n; i += 8) _mm256_storeu_ps(f + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * i))));
        break;
    case TYPE_Q8_0:
        for (int b = 0; b < n / 32; b++) {
            const uint8_t *block = row + 34 * b;
            const __m256 d = _mm256_set1_ps(load_half(block));
            for (int k = 0; k < 4; k++) {
                const __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(block + 2 + 8 * k)));
                _mm256_storeu_ps(f + 32 * b + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(q)));
            }
        }
        break;
    case TYPE_Q4_0:
        for (int b = 0; b < n / 32; b++) {
            const uint8_t *block = row + 18 * b;
            const __m256 d = _mm256_set1_ps(load_half(block));
            const __m128i bytes = _mm_loadu_si128((const __m128i *)(block + 2)), mask = _mm_set1_epi8(0xF), eight = _mm_set1_epi8(8);
            const __m128i halves[2] = {_mm_sub_epi8(_mm_and_si128(bytes, mask), eight),
                                       _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(bytes, 4), mask), eight)};
            for (int k = 0; k < 4; k++) {
                const __m128i h = k & 1 ? _mm_srli_si128(halves[k / 2], 8) : halves[k / 2];
                _mm256_storeu_ps(f + 32 * b + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(h))));
            }
        }
        break;
    default: load_scalar(type, row, f, n);
    }
}

// Lane k = the sum of the lanes of v[k].
ATTR_ATT static inline __m256 sums8(const __m256 v[8]) {
    const __m256 a = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    const __m256 b = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
    // a = (0 1 2 3 | 0 1 2 3) halves of keys 0-3, b the same for keys 4-7.
    return _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
}

// Eight rows at a time (the tile has zero rows up to a multiple of 8), summed in 8 lanes each.
ATTR_ATT static void scores_avx2(const float *tile, int m, const float *q, int n, float scale, float *s) {
    for (int k0 = 0; k0 < m; k0 += 8) {
        __m256 acc[8];
        for (int k = 0; k < 8; k++) acc[k] = _mm256_setzero_ps();
        for (int j = 0; j < n; j += 8) {
            const __m256 qv = _mm256_loadu_ps(q + j);
            for (int k = 0; k < 8; k++) acc[k] = _mm256_fmadd_ps(_mm256_loadu_ps(tile + (k0 + k) * n + j), qv, acc[k]);
        }
        const __m256 v = _mm256_mul_ps(sums8(acc), _mm256_set1_ps(scale));
        if (m - k0 >= 8) {
            _mm256_storeu_ps(s + k0, v);
        } else {
            float lanes[8];
            _mm256_storeu_ps(lanes, v);
            memcpy(s + k0, lanes, sizeof(float) * (size_t)(m - k0));
        }
    }
}

ATTR_ATT static float max_avx2(const float *s, int n) {
    __m256 top8 = _mm256_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 8 <= n; i += 8) top8 = _mm256_max_ps(top8, _mm256_loadu_ps(s + i));
    __m128 r = _mm_max_ps(_mm256_castps256_ps128(top8), _mm256_extractf128_ps(top8, 1));
    r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    r = _mm_max_ss(r, _mm_movehdup_ps(r));
    const float rest = max_scalar(s + i, n - i), top = _mm_cvtss_f32(r);
    return rest > top ? rest : top;
}

ATTR_ATT static double exp_avx2(float *s, int n, float top) {
    __m256d sum4 = _mm256_setzero_pd();
    const __m256 top8 = _mm256_set1_ps(top);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = llk_exp8(_mm256_sub_ps(_mm256_loadu_ps(s + i), top8));
        _mm256_storeu_ps(s + i, e);
        sum4 = _mm256_add_pd(sum4, _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(e)), _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1))));
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, sum4);
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + exp_scalar(s + i, n - i, top);
}

// o[0..<8L] += sum over i < m of w[i] x tile[i * n ..< +8L], in registers.
ATTR_ATT __attribute__((always_inline)) static inline void accumulate_lanes(const int L, const float *w, int m, const float *tile,
                                                                            int n, float *o) {
    __m256 acc[8];
    for (int l = 0; l < L; l++) acc[l] = _mm256_loadu_ps(o + 8 * l);
    for (int i = 0; i < m; i++) {
        const __m256 wi = _mm256_set1_ps(w[i]);
        for (int l = 0; l < L; l++) acc[l] = _mm256_fmadd_ps(wi, _mm256_loadu_ps(tile + i * n + 8 * l), acc[l]);
    }
    for (int l = 0; l < L; l++) _mm256_storeu_ps(o + 8 * l, acc[l]);
}

ATTR_ATT static void accumulate_avx2(const float *w, int m, const float *tile, int n, float *o) {
    int c = 0;
    for (; c + 64 <= n; c += 64) accumulate_lanes(8, w, m, tile + c, n, o + c);
    for (; c < n; c += 8) accumulate_lanes(1, w, m, tile + c, n, o + c);
}

ATTR_ATT static void blend_avx2(float *o, float a, const float *p, float b, int n) {
    const __m256 a8 = _mm256_set1_ps(a), b8 = _mm256_set1_ps(b);
    for (int j = 0; j < n; j += 8)
        _mm256_storeu_ps(o + j, _mm256_fmadd_ps(_mm256_loadu_ps(o + j), a8, _mm256_mul_ps(_mm256_loadu_ps(p + j), b8)));
}
#endif

// ---------------------------------------------------------------------------------------------
// The steps, NEON (head sizes a multiple of 4). The exponentials are the scalar ones.

#if LLK_NEON
static void load_neon(int type, const uint8_t *row, float *f, int n) {
    if (type != TYPE_F16) {
        load_scalar(type, row, f, n);
        return;
    }
    for (int i = 0; i < n; i += 4) vst1q_f32(f + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(row + 2 * i)))));
}

// Four rows at a time (the tile has zero rows up to a multiple of 8).
static void scores_neon(const float *tile, int m, const float *q, int n, float scale, float *s) {
    for (int k0 = 0; k0 < m; k0 += 4) {
        float32x4_t acc[4];
        for (int k = 0; k < 4; k++) acc[k] = vdupq_n_f32(0);
        for (int j = 0; j < n; j += 4) {
            const float32x4_t qv = vld1q_f32(q + j);
            for (int k = 0; k < 4; k++) acc[k] = vfmaq_f32(acc[k], vld1q_f32(tile + (k0 + k) * n + j), qv);
        }
        for (int k = 0; k < 4 && k0 + k < m; k++) s[k0 + k] = vaddvq_f32(acc[k]) * scale;
    }
}

static float max_neon(const float *s, int n) {
    float32x4_t top4 = vdupq_n_f32(-INFINITY);
    int i = 0;
    for (; i + 4 <= n; i += 4) top4 = vmaxq_f32(top4, vld1q_f32(s + i));
    const float rest = max_scalar(s + i, n - i), top = vmaxvq_f32(top4);
    return rest > top ? rest : top;
}

static void accumulate_neon(const float *w, int m, const float *tile, int n, float *o) {
    for (int c = 0; c < n; c += 16) {
        const int lanes = n - c >= 16 ? 4 : (n - c) / 4;
        float32x4_t acc[4];
        for (int l = 0; l < lanes; l++) acc[l] = vld1q_f32(o + c + 4 * l);
        for (int i = 0; i < m; i++) {
            const float32x4_t wi = vdupq_n_f32(w[i]);
            for (int l = 0; l < lanes; l++) acc[l] = vfmaq_f32(acc[l], wi, vld1q_f32(tile + i * n + c + 4 * l));
        }
        for (int l = 0; l < lanes; l++) vst1q_f32(o + c + 4 * l, acc[l]);
    }
}

static void blend_neon(float *o, float a, const float *p, float b, int n) {
    const float32x4_t a4 = vdupq_n_f32(a), b4 = vdupq_n_f32(b);
    for (int j = 0; j < n; j += 4) vst1q_f32(o + j, vfmaq_f32(vmulq_f32(vld1q_f32(p + j), b4), vld1q_f32(o + j), a4));
}
#endif

// The steps of one path: AVX2 or NEON where the CPU has it and rows are whole vectors, else scalar.
typedef struct {
    void (*load)(int type, const uint8_t *row, float *f, int n);
    void (*scores)(const float *tile, int m, const float *q, int n, float scale, float *s);
    float (*max)(const float *s, int n);
    double (*exp)(float *s, int n, float top);
    void (*accumulate)(const float *w, int m, const float *tile, int n, float *o);
    void (*blend)(float *o, float a, const float *p, float b, int n);
} steps;

static steps steps_for(int head_size) {
#if LLK_X86
    const int isa = llk_isa_id();
    if ((isa == 1 || isa == 2) && head_size % 8 == 0)
        return (steps){load_avx2, scores_avx2, max_avx2, exp_avx2, accumulate_avx2, blend_avx2};
#elif LLK_NEON
    if (llk_isa_id() == 3 && head_size % 4 == 0)
        return (steps){load_neon, scores_neon, max_neon, exp_scalar, accumulate_neon, blend_neon};
#endif
    (void)head_size;
    return (steps){load_scalar, scores_scalar, max_scalar, exp_scalar, accumulate_scalar, blend_scalar};
}

// ---------------------------------------------------------------------------------------------
// The kernel.

static int valid(const llk_attention_job *j) {
    return j->tokens > 0 && j->heads > 0 && j->head_size > 0 && j->capacity > 0 && j->first >= 0 &&
           llk_kv_row_bytes(j->key_type, j->head_size) >= 0 && llk_kv_row_bytes(j->value_type, j->head_size) >= 0;
}

int64_t llk_attention_scratch_floats(int tokens, int heads, int head_size) {
    const int64_t rows = (int64_t)tokens * heads;
    return 16 + (int64_t)KEYS * head_size + rows * (LLK_ATTENTION_SPAN + head_size + 4);  // 16: room to align
}

// The caller's scratch from its first 64-byte boundary: the tile's rows are read 32 bytes at a
// time, and loads split across cache lines would cost a third of the kernel.
static inline float *aligned_scratch(const llk_attention_job *j) {
    return (float *)(((uintptr_t)j->scratch + 63) & ~(uintptr_t)63);
}

// Positions token t has in the span starting at `begin` (relative to job->first), at most `span`.
static inline int in_span(const llk_attention_job *j, int t, int64_t begin, int span) {
    const int64_t m = j->lengths[t] - begin;
    return m <= 0 ? 0 : m < span ? (int)m : span;
}

#define INLINE static inline __attribute__((always_inline))

INLINE void widen_tile(const steps *f, const llk_attention_job *j, const void *base, int type, int64_t row_bytes,
                       int64_t position, int n, float *tile) {
    const int hs = j->head_size;
    for (int i = 0; i < n; i++)
        f->load(type, (const uint8_t *)base + slot_of(j->first + position + i, j->capacity) * row_bytes, tile + i * hs, hs);
    for (int i = n; i < (n + 7) / 8 * 8; i++) memset(tile + i * hs, 0, sizeof(float) * (size_t)hs);
}

// Span `index`, unnormalized: out rows = sum of e^(s - max) x value, state = (max, sum) per row.
// Inlined into one function per path, so the steps are direct calls the compiler can inline.
INLINE void attend_span_with(const steps *f, const llk_attention_job *j, int64_t index, float *out, int64_t out_stride,
                        float *state, int64_t state_stride) {
    const int hs = j->head_size, heads = j->heads, tokens = j->tokens;
    const int64_t begin = index * LLK_ATTENTION_SPAN;
    float *tile = aligned_scratch(j), *scores = tile + (int64_t)KEYS * hs;
    int span = 0;
    for (int t = 0; t < tokens; t++) span = in_span(j, t, begin, LLK_ATTENTION_SPAN) > span ? in_span(j, t, begin, LLK_ATTENTION_SPAN) : span;
    for (int i0 = 0; i0 < span; i0 += KEYS) {
        const int n = span - i0 < KEYS ? span - i0 : KEYS;
        widen_tile(f, j, j->keys, j->key_type, j->key_row_bytes, begin + i0, n, tile);
        for (int t = 0; t < tokens; t++) {
            const int m = in_span(j, t, begin + i0, n);
            for (int h = 0; h < heads && m > 0; h++) {
                float *s = scores + (int64_t)(t * heads + h) * LLK_ATTENTION_SPAN + i0;
                f->scores(tile, m, j->q + t * j->q_stride + h * hs, hs, j->scale, s);
                if (j->soft_cap > 0)
                    for (int i = 0; i < m; i++) s[i] = j->soft_cap * tanhf(s[i] / j->soft_cap);
            }
        }
    }
    for (int t = 0; t < tokens; t++) {
        const int m = in_span(j, t, begin, LLK_ATTENTION_SPAN);
        for (int h = 0; h < heads; h++) {
            float *s = scores + (int64_t)(t * heads + h) * LLK_ATTENTION_SPAN, *st = state + 2 * (t * state_stride + h);
            memset(out + t * out_stride + h * hs, 0, sizeof(float) * (size_t)hs);
            const float top = m > 0 ? f->max(s, m) : -INFINITY;
            st[0] = top;
            st[1] = m > 0 ? (float)f->exp(s, m, top) : 0;
        }
    }
    for (int i0 = 0; i0 < span; i0 += KEYS) {
        const int n = span - i0 < KEYS ? span - i0 : KEYS;
        widen_tile(f, j, j->values, j->value_type, j->value_row_bytes, begin + i0, n, tile);
        for (int t = 0; t < tokens; t++) {
            const int m = in_span(j, t, begin + i0, n);
            for (int h = 0; h < heads && m > 0; h++)
                f->accumulate(scores + (int64_t)(t * heads + h) * LLK_ATTENTION_SPAN + i0, m, tile, hs,
                              out + t * out_stride + h * hs);
        }
    }
}

#if LLK_X86
ATTR_ATT static void attend_span_avx2(const llk_attention_job *j, int64_t index, float *out, int64_t out_stride, float *state,
                                      int64_t state_stride) {
    const steps f = {load_avx2, scores_avx2, max_avx2, exp_avx2, accumulate_avx2, blend_avx2};
    attend_span_with(&f, j, index, out, out_stride, state, state_stride);
}
#endif

#if LLK_NEON
static void attend_span_neon(const llk_attention_job *j, int64_t index, float *out, int64_t out_stride, float *state,
                             int64_t state_stride) {
    const steps f = {load_neon, scores_neon, max_neon, exp_scalar, accumulate_neon, blend_neon};
    attend_span_with(&f, j, index, out, out_stride, state, state_stride);
}
#endif

static void attend_span_scalar(const llk_attention_job *j, int64_t index, float *out, int64_t out_stride, float *state,
                               int64_t state_stride) {
    const steps f = {load_scalar, scores_scalar, max_scalar, exp_scalar, accumulate_scalar, blend_scalar};
    attend_span_with(&f, j, index, out, out_stride, state, state_stride);
}

static void attend_span(const steps *f, const llk_attention_job *j, int64_t index, float *out, int64_t out_stride,
                        float *state, int64_t state_stride) {
#if LLK_X86
    if (f->load == load_avx2) {
        attend_span_avx2(j, index, out, out_stride, state, state_stride);
        return;
    }
#elif LLK_NEON
    if (f->load == load_neon) {
        attend_span_neon(j, index, out, out_stride, state, state_stride);
        return;
    }
#endif
    attend_span_scalar(j, index, out, out_stride, state, state_stride);
}

// Folds one span's row (p, its max and sum) into the running row (o, state).
static void merge(const steps *f, float *o, float *state, const float *p, const float *p_state, int hs) {
    if (p_state[0] == -INFINITY) return;  // the token has no positions there
    const float top = state[0] > p_state[0] ? state[0] : p_state[0];
    const float a = expf(state[0] - top), b = expf(p_state[0] - top);
    f->blend(o, a, p, b, hs);
    state[0] = top;
    state[1] = state[1] * a + p_state[1] * b;
}

static void normalize(float *o, const float *state, int hs) {
    const float inverse = 1 / state[1];
    for (int j = 0; j < hs; j++) o[j] *= inverse;
}

int llk_attention(const llk_attention_job *j, float *out, int64_t out_stride) {
    if (!valid(j)) return 0;
    const steps f = steps_for(j->head_size);
    const int hs = j->head_size, rows = j->tokens * j->heads;
    int64_t longest = 0;
    for (int t = 0; t < j->tokens; t++) longest = j->lengths[t] > longest ? j->lengths[t] : longest;
    float *part = aligned_scratch(j) + (int64_t)KEYS * hs + (int64_t)rows * LLK_ATTENTION_SPAN;
    float *state = part + (int64_t)rows * hs, *part_state = state + 2 * rows;
    attend_span(&f, j, 0, out, out_stride, state, j->heads);
    for (int64_t index = 1; index * LLK_ATTENTION_SPAN < longest; index++) {
        attend_span(&f, j, index, part, (int64_t)j->heads * hs, part_state, j->heads);
        for (int t = 0; t < j->tokens; t++)
            for (int h = 0; h < j->heads; h++) {
                const int r = t * j->heads + h;
                merge(&f, out + t * out_stride + h * hs, state + 2 * r, part + (int64_t)r * hs, part_state + 2 * r, hs);
            }
    }
    for (int t = 0; t < j->tokens; t++)
        for (int h = 0; h < j->heads; h++) normalize(out + t * out_stride + h * hs, state + 2 * (t * j->heads + h), hs);
    return 1;
}

int llk_attention_span(const llk_attention_job *j, int64_t index, float *out, int64_t out_stride, float *state,
                       int64_t state_stride) {
    if (!valid(j) || index < 0) return 0;
    const steps f = steps_for(j->head_size);
    attend_span(&f, j, index, out, out_stride, state, state_stride);
    return 1;
}

void llk_attention_merge(int64_t spans, int head_size, const float *partials, int64_t partial_stride, const float *states,
                         int64_t state_stride, float *out) {
    if (spans <= 0 || head_size <= 0) return;
    const steps f = steps_for(head_size);
    float state[2] = {states[0], states[1]};
    memcpy(out, partials, sizeof(float) * (size_t)head_size);
    for (int64_t p = 1; p < spans; p++) merge(&f, out, state, partials + p * partial_stride, states + p * state_stride, head_size);
    normalize(out, state, head_size);
}
