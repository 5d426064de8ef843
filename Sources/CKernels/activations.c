// The gated activations between a feed-forward block's two products, element-wise over a batch.

#include "CKernels.h"
#include "exp.h"

#include <math.h>

int llk_isa_id(void);

// silu(g) = g / (1 + e^-g), times up: the scalar twin, and the path where rows are not whole vectors.
static void swiglu_scalar(float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) gate[i] = gate[i] / (1 + expf(-gate[i])) * up[i];
}

#if defined(__x86_64__) || defined(__i386__)
// The exponential only ever sees -|g| (e^x for x <= 0, never overflowing): with e = e^-|g|,
// sigmoid(g) is 1 / (1 + e) for g >= 0 and e / (1 + e) below.
__attribute__((target("avx2,fma"))) static void swiglu_avx2(float *gate, const float *up, int64_t n) {
    const __m256 one = _mm256_set1_ps(1), sign = _mm256_set1_ps(-0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 e = llk_exp8(_mm256_or_ps(g, sign));
        const __m256 numerator = _mm256_blendv_ps(one, e, g);  // the sign bit picks e
        const __m256 sigmoid = _mm256_div_ps(numerator, _mm256_add_ps(one, e));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(_mm256_mul_ps(g, sigmoid), _mm256_loadu_ps(up + i)));
    }
    swiglu_scalar(gate + i, up + i, n - i);
}
#endif

void llk_swiglu(float *gate, const float *up, int64_t n) {
#if defined(__x86_64__) || defined(__i386__)
    const int isa = llk_isa_id();
    if (isa == 1 || isa == 2) {
        swiglu_avx2(gate, up, n);
        return;
    }
#endif
    swiglu_scalar(gate, up, n);
}
