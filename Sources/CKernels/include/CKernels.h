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


// ---------------------------------------------------------------------------------------------
// Integer products for Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 weights (type = ggml type id), in
// llama.cpp's arithmetic: activations rounded to 8-bit blocks, exact integer sums per block.

/// Whether `type` has integer kernels.
int llk_q8_supports(int type);

/// Bytes of prepared activations per token of `blocks` blocks of 32 values.
int64_t llk_q8_token_bytes(int64_t blocks);

/// Bytes of scratch `llk_q8_matmul` needs per call (repacked weights).
int64_t llk_q8_scratch_bytes(int64_t blocks);

/// Rounds one token's activations (32 x `blocks` floats) to 8-bit blocks as llama.cpp's x86
/// quantizer does, in the layout the products read, for weights of `type`.
void llk_q8_prepare(int type, const float *x, int64_t blocks, void *out);

/// out[t * out_stride + r] = row r of the weights times token t, for r < rows, t < tokens.
/// `activations` holds `tokens` prepared tokens back to back (llk_q8_token_bytes apart).
void llk_q8_matmul(int type, const void *weights, int64_t row_bytes, int64_t rows, const void *activations,
                   int64_t tokens, int64_t blocks, float *out, int64_t out_stride, void *scratch);

// ---------------------------------------------------------------------------------------------
// The K block types Q4_K, Q5_K, Q6_K (ggml type ids 12, 13, 14): integer products with Q8_K
// activations, and llama.cpp's reference quantizers.

/// Whether `type` has K-quant integer kernels.
int llk_qk_supports(int type);

/// Bytes of prepared activations per token of `blocks` blocks of 256 values.
int64_t llk_qk_token_bytes(int64_t blocks);

/// Rounds one token's activations (256 x `blocks` floats) to Q8_K blocks as llama.cpp does.
void llk_qk_prepare(const float *x, int64_t blocks, void *out);

/// out[t * out_stride + r] = row r times token t (tokens prepared back to back).
void llk_qk_matmul(int type, const void *weights, int64_t row_bytes, int64_t rows, const void *activations,
                   int64_t tokens, int64_t blocks, float *out, int64_t out_stride);

/// Quantizes 256 x `blocks` floats into `type` blocks exactly as llama.cpp's reference quantizer
/// (without an importance matrix). Returns 0 for a type it does not know.
int llk_qk_quantize(int type, const float *x, int64_t blocks, void *out);

// ---------------------------------------------------------------------------------------------
// Rows regrouped 8 at a time (packed.c): one output lane per row in the AVX2 products. Types
// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (activations from llk_q8_prepare) and Q4_K, Q5_K, Q6_K (llk_qk_prepare).

/// Whether `type` has a regrouped layout.
int llk_x8_supports(int type);

/// Whether the running code path multiplies `type` faster regrouped (so a model should repack).
/// $LLAMA_NO_REGROUP (any value) says no, to compare with the row kernels.
int llk_x8_preferred(int type);

/// Bytes of one group of 8 rows of `blocks` blocks each.
int64_t llk_x8_group_bytes(int type, int64_t blocks);

/// Regroups 8 rows (`row_bytes` apart) into one group, and back.
void llk_x8_pack(int type, const void *rows, int64_t row_bytes, int64_t blocks, void *group);
void llk_x8_unpack(int type, const void *group, int64_t blocks, void *rows, int64_t row_bytes);

/// Row `row` (0-7) of a group, in the type's own row layout (an embedding lookup in a tied classifier).
void llk_x8_unpack_row(int type, const void *group, int64_t blocks, int row, void *out);

/// out[t * out_stride + r] = row r times token t for r < 8 x groups, t < tokens.
void llk_x8_matmul(int type, const void *packed, int64_t groups, const void *activations, int64_t tokens,
                   int64_t blocks, float *out, int64_t out_stride);

/// Whether a batch of `tokens` tokens times regrouped `type` rows takes the AVX-512 VNNI tiles
/// (the K types, 8 or more tokens): then the prepared tokens are interleaved 16 at a time
/// (llk_x8_interleave, tiles first..<end of ceil(tokens / 16)) into llk_x8_tiles_bytes bytes, and
/// llk_x8_matmul_tiled multiplies, with the same results as llk_x8_matmul (it does nothing where
/// llk_x8_tiled says no).
int llk_x8_tiled(int type, int64_t tokens);
int64_t llk_x8_tiles_bytes(int64_t blocks, int64_t tokens);
void llk_x8_interleave(const void *activations, int64_t tokens, int64_t blocks, int64_t first_tile, int64_t end_tile,
                       void *tiles);
void llk_x8_matmul_tiled(int type, const void *packed, int64_t groups, const void *tiles, int64_t tokens, int64_t blocks,
                         float *out, int64_t out_stride);

// ---------------------------------------------------------------------------------------------
// Attention (attention.c).

/// Attention of `heads` query heads (head_size floats each, back to back) that share one KV head
/// of an F16 cache: keys and values of position p at slot (p < capacity ? p : p % capacity),
/// `stride` halves apart; positions first..<first+length. Scores scaled by `scale`, softmax, the
/// weights rounded to F16, then out[h] = sum of weight x value. `scores` holds heads x length
/// floats. Returns 0 (doing nothing) where the path has no such kernel.
int llk_attention_f16_supported(int head_size);
int llk_attention_f16(const float *q, int heads, int head_size, const uint16_t *keys, const uint16_t *values,
                      int64_t stride, int64_t capacity, int64_t first, int64_t length, float scale, float *scores,
                      float *out);

/// The same for `tokens` query tokens of one sequence (q_stride and out_stride floats apart), all
/// attending from position `first`, token t to lengths[t] positions: each key and value is widened
/// once for all of them. `scores` holds tokens x heads x max(lengths) floats.
int llk_attention_f16_tokens(const float *q, int64_t q_stride, int tokens, const int64_t *lengths, int heads,
                             int head_size, const uint16_t *keys, const uint16_t *values, int64_t stride,
                             int64_t capacity, int64_t first, float scale, float *scores, float *out,
                             int64_t out_stride);

/// Forces the code path for the whole process: "avx512", "avx2", "neon" or "scalar" (a path the
/// CPU lacks falls back to the best it has). Returns the path in use. The `llama` tool calls it
/// with $LLAMA_CPU_PATH.
const char *llk_set_path(const char *name);

#ifdef __cplusplus
}
#endif

#endif
