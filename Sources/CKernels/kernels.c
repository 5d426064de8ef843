#include "CKernels.h"
#include "half.h"
#include "blocks.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LLK_X86 1
#elif defined(__aarch64__)
#include <arm_neon.h>
#define LLK_NEON 1
#endif

// ---------------------------------------------------------------------------------------------
// Dispatch.

enum { ISA_SCALAR = 0, ISA_AVX2 = 1, ISA_AVX512 = 2, ISA_NEON = 3 };
static _Thread_local int forced = -1;  // per thread: a test forcing a path affects nothing else
static _Atomic int detected = -1;

static int best_path(void) {
#if LLK_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) return ISA_AVX2;
    return ISA_SCALAR;
#elif LLK_NEON
    return ISA_NEON;
#else
    return ISA_SCALAR;
#endif
}

// A named path, capped at what the CPU has (AVX-512 > AVX2 > scalar; NEON > scalar).
static int capped_path(const char *name) {
    const int best = best_path();
    if (!name || !*name) return best;
    if (!strcmp(name, "scalar")) return ISA_SCALAR;
    if (!strcmp(name, "avx2")) return best == ISA_AVX512 || best == ISA_AVX2 ? ISA_AVX2 : best;
    if (!strcmp(name, "avx512")) return best;
    if (!strcmp(name, "neon")) return best;
    return best;
}

static int isa(void) {
    if (forced >= 0) return forced;
    if (detected < 0) detected = capped_path(getenv("LLAMA_CPU_PATH"));
    return detected;
}

_Atomic int llk_prefetch_ahead_bytes = 8192;

void llk_set_prefetch_ahead(int bytes) {
    atomic_store_explicit(&llk_prefetch_ahead_bytes, bytes < 0 ? 0 : bytes > (1 << 20) ? (1 << 20) : bytes, memory_order_relaxed);
}

int llk_get_prefetch_ahead(void) { return llk_prefetch_ahead(); }

const char *llk_isa(void) {
    switch (isa()) {
    case ISA_AVX512: return "avx512";
    case ISA_AVX2: return "avx2";
    case ISA_NEON: return "neon";
    default: return "scalar";
    }
}

const char *llk_set_path(const char *name) {
    detected = capped_path(name);
    return llk_isa();
}

void llk_force_scalar(int scalar) { forced = scalar ? ISA_SCALAR : -1; }

void llk_force_path(const char *name) { forced = name ? capped_path(name) : -1; }

int llk_isa_id(void) { return isa(); }

static _Atomic int vnni = -1;

/// Whether the CPU has AVX-512 VNNI (8-bit dot products) and the AVX-512 path is in use.
int llk_has_vnni(void) {
    if (vnni < 0) {
#if LLK_X86
        __builtin_cpu_init();
        vnni = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#else
        vnni = 0;
#endif
    }
    return vnni && isa() == ISA_AVX512;
}

// ---------------------------------------------------------------------------------------------
// Dot product.

static float dot_scalar(const float *a, const float *b, int64_t n) {
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
    float sum = ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

#if LLK_X86
__attribute__((target("avx2,fma")))
static float hsum256(__m256 v) {
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

__attribute__((target("avx2,fma")))
static float dot_avx2(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float sum = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

__attribute__((target("avx512f,avx512bw,fma")))
static float dot_avx512(const float *a, const float *b, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}
#endif

#if LLK_NEON
static float dot_neon(const float *a, const float *b, int64_t n) {
    float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    }
    float sum = vaddvq_f32(vaddq_f32(s0, s1));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}
#endif

float llk_dot_f32(const float *a, const float *b, int64_t n) {
    switch (isa()) {
#if LLK_X86
    case ISA_AVX512: return dot_avx512(a, b, n);
    case ISA_AVX2: return dot_avx2(a, b, n);
#endif
#if LLK_NEON
    case ISA_NEON: return dot_neon(a, b, n);
#endif
    default: return dot_scalar(a, b, n);
    }
}

#if LLK_X86
__attribute__((target("f16c")))
static void to_half_f16c(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}
#endif

/// Returns 1 if done with F16C; 0 means the caller converts (no F16C here).
int llk_to_half(const float *x, uint16_t *y, int64_t n) {
#if LLK_X86
    if (isa() == ISA_AVX512 || isa() == ISA_AVX2) { to_half_f16c(x, y, n); return 1; }
#endif
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Matrix product: 4 weight rows x 4 tokens per step, each pair its own accumulator, so every
// loaded weight vector is used four times and every activation vector four times.

#define GEMM_TILE(NAME, ATTR, VEC, ZERO, LOAD, FMA, REDUCE, WIDTH)                                  \
    ATTR static void NAME(const float *w, int64_t rows, const float *x, int64_t tokens, int64_t k, \
                          float *out, int64_t out_stride) {                                        \
        int64_t r = 0;                                                                             \
        for (; r + 4 <= rows; r += 4) {                                                            \
            int64_t t = 0;                                                                         \
            for (; t + 4 <= tokens; t += 4) {                                                      \
                VEC acc[4][4];                                                                     \
                for (int i = 0; i < 4; i++)                                                        \
                    for (int j = 0; j < 4; j++) acc[i][j] = ZERO;                                  \
                int64_t c = 0;                                                                     \
                for (; c + WIDTH <= k; c += WIDTH) {                                               \
                    VEC wv[4], xv[4];                                                              \
                    for (int i = 0; i < 4; i++) wv[i] = LOAD(w + (r + i) * k + c);                 \
                    for (int j = 0; j < 4; j++) xv[j] = LOAD(x + (t + j) * k + c);                 \
                    for (int i = 0; i < 4; i++)                                                    \
                        for (int j = 0; j < 4; j++) acc[i][j] = FMA(wv[i], xv[j], acc[i][j]);      \
                }                                                                                  \
                for (int i = 0; i < 4; i++)                                                        \
                    for (int j = 0; j < 4; j++) {                                                  \
                        float s = REDUCE(acc[i][j]);                                               \
                        for (int64_t cc = c; cc < k; cc++) s += w[(r + i) * k + cc] * x[(t + j) * k + cc]; \
                        out[(t + j) * out_stride + r + i] = s;                                     \
                    }                                                                              \
            }                                                                                      \
            for (; t < tokens; t++)                                                                \
                for (int i = 0; i < 4; i++) out[t * out_stride + r + i] = llk_dot_f32(w + (r + i) * k, x + t * k, k); \
        }                                                                                          \
        for (; r < rows; r++)                                                                      \
            for (int64_t t = 0; t < tokens; t++) out[t * out_stride + r] = llk_dot_f32(w + r * k, x + t * k, k); \
    }

#if LLK_X86
#define ATTR_AVX2 __attribute__((target("avx2,fma")))
#define ATTR_AVX512 __attribute__((target("avx512f,avx512bw,fma")))
GEMM_TILE(gemm_avx2, ATTR_AVX2, __m256, _mm256_setzero_ps(), _mm256_loadu_ps, _mm256_fmadd_ps, hsum256, 8)
GEMM_TILE(gemm_avx512, ATTR_AVX512, __m512, _mm512_setzero_ps(), _mm512_loadu_ps, _mm512_fmadd_ps, _mm512_reduce_add_ps, 16)
#endif
#if LLK_NEON
#define NEON_FMA(a, b, c) vfmaq_f32(c, a, b)
GEMM_TILE(gemm_neon, , float32x4_t, vdupq_n_f32(0), vld1q_f32, NEON_FMA, vaddvq_f32, 4)
#endif

void llk_gemm_f32(const float *w, int64_t rows, const float *x, int64_t tokens, int64_t k, float *out, int64_t out_stride) {
    switch (isa()) {
#if LLK_X86
    case ISA_AVX512: gemm_avx512(w, rows, x, tokens, k, out, out_stride); return;
    case ISA_AVX2: gemm_avx2(w, rows, x, tokens, k, out, out_stride); return;
#endif
#if LLK_NEON
    case ISA_NEON: gemm_neon(w, rows, x, tokens, k, out, out_stride); return;
#endif
    default:
        for (int64_t r = 0; r < rows; r++)
            for (int64_t t = 0; t < tokens; t++) out[t * out_stride + r] = dot_scalar(w + r * k, x + t * k, k);
    }
}

// ---------------------------------------------------------------------------------------------
// Dequantization of the 32-value block types (scalar code the compiler vectorizes well enough;
// it runs once per weight row per product).

static int dequantize_scalar(int type, const void *src, float *dst, int64_t blocks) {
    const uint8_t *p = (const uint8_t *)src;
    switch (type) {
    case 1:  // F16: `blocks` counts values
        for (int64_t i = 0; i < blocks; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = half_to_float(h);
        }
        return 1;
    case 2:  // Q4_0
        for (int64_t b = 0; b < blocks; b++, p += 18, dst += 32) {
            const float d = load_half(p);
            for (int j = 0; j < 16; j++) {
                dst[j] = (float)((int)(p[2 + j] & 0xF) - 8) * d;
                dst[j + 16] = (float)((int)(p[2 + j] >> 4) - 8) * d;
            }
        }
        return 1;
    case 3:  // Q4_1
        for (int64_t b = 0; b < blocks; b++, p += 20, dst += 32) {
            const float d = load_half(p), m = load_half(p + 2);
            for (int j = 0; j < 16; j++) {
                dst[j] = (float)(p[4 + j] & 0xF) * d + m;
                dst[j + 16] = (float)(p[4 + j] >> 4) * d + m;
            }
        }
        return 1;
    case 6:  // Q5_0
        for (int64_t b = 0; b < blocks; b++, p += 22, dst += 32) {
            const float d = load_half(p);
            uint32_t qh;
            memcpy(&qh, p + 2, 4);
            for (int j = 0; j < 16; j++) {
                const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
                dst[j] = (float)(((p[6 + j] & 0xF) | h0) - 16) * d;
                dst[j + 16] = (float)(((p[6 + j] >> 4) | h1) - 16) * d;
            }
        }
        return 1;
    case 7:  // Q5_1
        for (int64_t b = 0; b < blocks; b++, p += 24, dst += 32) {
            const float d = load_half(p), m = load_half(p + 2);
            uint32_t qh;
            memcpy(&qh, p + 4, 4);
            for (int j = 0; j < 16; j++) {
                const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
                dst[j] = (float)((p[8 + j] & 0xF) | h0) * d + m;
                dst[j + 16] = (float)((p[8 + j] >> 4) | h1) * d + m;
            }
        }
        return 1;
    case 8:  // Q8_0
        for (int64_t b = 0; b < blocks; b++, p += 34, dst += 32) {
            const float d = load_half(p);
            for (int j = 0; j < 32; j++) dst[j] = (float)(int8_t)p[2 + j] * d;
        }
        return 1;
    default:
        return 0;
    }
}

// ---------------------------------------------------------------------------------------------
// Vectorized Q4_0 / Q4_1 / Q8_0 blocks: 32 values as two 16-float vectors (AVX-512) or four
// 8-float vectors (AVX2), used to dequantize rows.

#if LLK_X86
// Block layouts: Q4_0 = half d, 16 B nibbles; Q4_1 = half d, half m, 16 B nibbles; Q8_0 = half d, 32 int8.
#define BLOCK_BYTES(type) ((type) == 2 ? 18 : (type) == 3 ? 20 : 34)

__attribute__((target("f16c")))
static inline float load_half_f16c(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

__attribute__((target("avx512f,avx512bw,fma,f16c")))
static inline void block_avx512(int type, const uint8_t *p, __m512 *lo, __m512 *hi) {
    const __m512 d = _mm512_set1_ps(load_half_f16c(p));
    if (type == 8) {
        *lo = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 2)))), d);
        *hi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 18)))), d);
        return;
    }
    const __m128i q = _mm_loadu_si128((const __m128i *)(p + (type == 3 ? 4 : 2)));
    const __m128i mask = _mm_set1_epi8(0x0F);
    __m512 l = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(q, mask)));
    __m512 h = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(q, 4), mask)));
    if (type == 3) {
        const __m512 m = _mm512_set1_ps(load_half_f16c(p + 2));
        *lo = _mm512_fmadd_ps(l, d, m);
        *hi = _mm512_fmadd_ps(h, d, m);
    } else {
        const __m512 eight = _mm512_set1_ps(8.0f);
        *lo = _mm512_mul_ps(_mm512_sub_ps(l, eight), d);
        *hi = _mm512_mul_ps(_mm512_sub_ps(h, eight), d);
    }
}

__attribute__((target("avx512f,avx512bw,fma,f16c")))
static void dequantize_avx512(int type, const uint8_t *p, float *dst, int64_t blocks) {
    const int bytes = BLOCK_BYTES(type);
    for (int64_t b = 0; b < blocks; b++, p += bytes, dst += 32) {
        __m512 lo, hi;
        block_avx512(type, p, &lo, &hi);
        _mm512_storeu_ps(dst, lo);
        _mm512_storeu_ps(dst + 16, hi);
    }
}


__attribute__((target("avx2,fma,f16c")))
static inline void block_avx2(int type, const uint8_t *p, __m256 v[4]) {
    const __m256 d = _mm256_set1_ps(load_half_f16c(p));
    if (type == 8) {
        for (int i = 0; i < 4; i++)
            v[i] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p + 2 + 8 * i)))), d);
        return;
    }
    const __m128i q = _mm_loadu_si128((const __m128i *)(p + (type == 3 ? 4 : 2)));
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m128i l = _mm_and_si128(q, mask), h = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
    __m256 f[4] = {
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(l)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(l, 8))),
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(h)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(h, 8))),
    };
    if (type == 3) {
        const __m256 m = _mm256_set1_ps(load_half_f16c(p + 2));
        for (int i = 0; i < 4; i++) v[i] = _mm256_fmadd_ps(f[i], d, m);
    } else {
        const __m256 eight = _mm256_set1_ps(8.0f);
        for (int i = 0; i < 4; i++) v[i] = _mm256_mul_ps(_mm256_sub_ps(f[i], eight), d);
    }
}

__attribute__((target("avx2,fma,f16c")))
static void dequantize_avx2(int type, const uint8_t *p, float *dst, int64_t blocks) {
    const int bytes = BLOCK_BYTES(type);
    for (int64_t b = 0; b < blocks; b++, p += bytes, dst += 32) {
        __m256 v[4];
        block_avx2(type, p, v);
        for (int i = 0; i < 4; i++) _mm256_storeu_ps(dst + 8 * i, v[i]);
    }
}

#endif

int llk_dequantize(int type, const void *src, float *dst, int64_t blocks) {
#if LLK_X86
    if (type == 2 || type == 3 || type == 8) {
        switch (isa()) {
        case ISA_AVX512: dequantize_avx512(type, (const uint8_t *)src, dst, blocks); return 1;
        case ISA_AVX2: dequantize_avx2(type, (const uint8_t *)src, dst, blocks); return 1;
        default: break;
        }
    }
#endif
    return dequantize_scalar(type, src, dst, blocks);
}
