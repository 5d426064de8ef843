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
/// How far ahead of a streamed weight matrix the kernels prefetch, in bytes (0: the block being
/// read; clamped to 0...1 MiB; 8192 until set). Process-wide; a hint only, results do not depend
/// on it.
void llk_set_prefetch_ahead(int bytes);
int llk_get_prefetch_ahead(void);

/// Forces a code path on the calling thread only (for tests): 0 = best available, 1 = scalar.
void llk_force_scalar(int scalar);

/// Forces a named path ("avx2", "avx512", ...; capped at what the CPU has) on the calling thread
/// only, for tests comparing paths; NULL returns it to the process's path.
void llk_force_path(const char *name);

/// sum(a[i] * b[i]).
float llk_dot_f32(const float *a, const float *b, int64_t n);

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
// The K block types Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (ggml type ids 10 to 14): integer products with
// Q8_K activations, and llama.cpp's reference quantizers for Q4_K, Q5_K and Q6_K.

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
// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (activations from llk_q8_prepare) and the K types (llk_qk_prepare).

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
/// (8 or more tokens): then the prepared tokens are interleaved 16 at a time
/// (llk_x8_interleave, tiles first..<end of ceil(tokens / 16)) into llk_x8_tiles_bytes bytes, and
/// llk_x8_matmul_tiled multiplies, with the same results as llk_x8_matmul (it does nothing where
/// llk_x8_tiled says no).
int llk_x8_tiled(int type, int64_t tokens);
int64_t llk_x8_tiles_bytes(int type, int64_t blocks, int64_t tokens);
void llk_x8_interleave(int type, const void *activations, int64_t tokens, int64_t blocks, int64_t first_tile,
                       int64_t end_tile, void *tiles);
void llk_x8_matmul_tiled(int type, const void *packed, int64_t groups, const void *tiles, int64_t tokens, int64_t blocks,
                         float *out, int64_t out_stride);

// ---------------------------------------------------------------------------------------------
// Attention (attention.c).

/// A KV cache row: F32, F16, Q8_0 or Q4_0 (ggml type ids 0, 1, 8, 2). Bytes of `n` elements, or
/// -1 for another type or an `n` the type's blocks do not divide.
int64_t llk_kv_row_bytes(int type, int64_t n);
/// Stores n floats as `type` (the quantized types rounded as ggml's reference quantizers), and
/// back. Store returns 0 (doing nothing) where llk_kv_row_bytes is -1.
int llk_kv_store(int type, const float *x, void *dst, int64_t n);
void llk_kv_load(int type, const void *src, float *dst, int64_t n);

/// Multiplies each run of `chunk` values (a power of two dividing n) by the orthonormal
/// Walsh-Hadamard matrix of that size, in place: llama.cpp rotates queries, keys and values so
/// before a quantized cache, which spreads outlier channels over their block. Its own inverse.
void llk_hadamard(float *x, int64_t n, int64_t chunk);

/// gate[i] = silu(gate[i]) x up[i] for i < n (SwiGLU), with an 8-lane exponential on x86 (within
/// a few ulp of expf: tested against the scalar twin).
void llk_swiglu(float *gate, const float *up, int64_t n);

/// Positions per span: the unit the cache is taken in, and merged by, with an online softmax.
enum { LLK_ATTENTION_SPAN = 256 };

/// Attention of `tokens` query tokens of one sequence, `heads` query heads each (head_size floats,
/// back to back; tokens q_stride floats apart) that share one KV head. Token t attends to
/// positions first ..< first + lengths[t]; position p lives in slot (p < capacity ? p : p % capacity),
/// `keys` and `values` point at the KV head's first element in slot 0, rows `*_row_bytes` apart.
/// Scores are scale x q.k, then soft_cap x tanh(s / soft_cap) when soft_cap > 0.
typedef struct {
    const float *q;
    int64_t q_stride;
    int tokens, heads, head_size;
    const int64_t *lengths;
    const void *keys, *values;
    int key_type, value_type;
    int64_t key_row_bytes, value_row_bytes;
    int64_t capacity, first;
    float scale, soft_cap;
    /// llk_attention_scratch_floats(tokens, heads, head_size) floats of the caller's.
    float *scratch;
} llk_attention_job;

int64_t llk_attention_scratch_floats(int tokens, int heads, int head_size);

/// out[t * out_stride + h * head_size ...] = softmax(scores) . values. Returns 0 (doing nothing)
/// for a type or size the cache cannot have.
int llk_attention(const llk_attention_job *job, float *out, int64_t out_stride);

/// The same split by span for more threads: llk_attention_span computes span `index` (positions
/// index x SPAN ..< +SPAN) unnormalized into rows laid out as `out`, with (max, sum) of row
/// (t, h) at state + 2 x (t x state_stride + h); llk_attention_merge folds spans 0 ..< spans of one row (span p at
/// partials + p x partial_stride, its state at states + p x state_stride) into out. The result is
/// bit for bit llk_attention's.
int llk_attention_span(const llk_attention_job *job, int64_t index, float *out, int64_t out_stride, float *state,
                       int64_t state_stride);
void llk_attention_merge(int64_t spans, int head_size, const float *partials, int64_t partial_stride, const float *states,
                         int64_t state_stride, float *out);

/// Forces the code path for the whole process: "avx512", "avx2", "neon" or "scalar" (a path the
/// CPU lacks falls back to the best it has). Returns the path in use. The `llama` tool calls it
/// with $LLAMA_CPU_PATH.
const char *llk_set_path(const char *name);

#ifdef __cplusplus
}
#endif

#endif
