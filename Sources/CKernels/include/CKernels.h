// Vectorized float kernels, each with AVX-512, AVX2+FMA, NEON and scalar versions; the best one
// for the running CPU is chosen once at run time. The Swift `Kernels` module holds the scalar
// reference they are tested against.
#ifndef CKERNELS_H
#define CKERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Which code path the kernels use on this CPU: "avx512", "avx2", "neon" or "scalar".
const char *llk_isa(void);

/// Forces a code path on the calling thread only (for tests): 0 = best available, 1 = scalar.
void llk_force_scalar(int scalar);

/// sum(a[i] * b[i]).
float llk_dot_f32(const float *a, const float *b, int64_t n);

/// y[i] += a * x[i].
void llk_axpy(float a, const float *x, float *y, int64_t n);

/// sum(half(a[i]) * b[i]) for binary16 values `a`.
float llk_dot_f16(const uint16_t *a, const float *b, int64_t n);

/// y[i] += a * half(x[i]).
void llk_axpy_f16(float a, const uint16_t *x, float *y, int64_t n);

/// Converts to binary16 (nearest even) with F16C and returns 1, or returns 0 where the CPU lacks it.
int llk_to_half(const float *x, uint16_t *y, int64_t n);

/// out[t * out_stride + r] = dot(w + r * k, x + t * k, k) for r < rows, t < tokens: a float
/// matrix product with a small register-blocked kernel (rows of w are reused across tokens).
void llk_gemm_f32(const float *w, int64_t rows, const float *x, int64_t tokens, int64_t k,
                  float *out, int64_t out_stride);

/// Dequantizes `blocks` blocks of 32 values. type: 2 = Q4_0, 3 = Q4_1, 6 = Q5_0, 7 = Q5_1, 8 = Q8_0
/// (ggml type ids); 1 = F16 (then `blocks` counts values). Returns 0 for an unknown type.
int llk_dequantize(int type, const void *src, float *dst, int64_t blocks);

/// dot(dequantized row, x) for a row of `blocks` blocks of `type` (Q4_0, Q4_1 or Q8_0). For Q4_1,
/// `errors` (one per block, may be NULL) adds sum(min[b] * errors[b]): the correction for the
/// half-precision activation sums llama.cpp uses. `scratch` must hold the row as floats (used
/// where no fused kernel exists).
float llk_dot_blocks(int type, const void *row, const float *x, int64_t blocks, const float *errors, float *scratch);

#ifdef __cplusplus
}
#endif

#endif
