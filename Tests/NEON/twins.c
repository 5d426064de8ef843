// The NEON kernels against their scalar twins, on random weights and activations of ragged
// sizes: the integer products must agree bit for bit, the float ones to rounding. Built for
// aarch64 and run under qemu by Scripts/neon-twins (this machine has no ARM CPU).
#include "CKernels.h"
#include "blocks.h"
#include "half.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t state = 0x5EED;
static uint64_t next(void) {
    state += 0x9E3779B97F4A7C15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float uniform(void) { return (float)(next() >> 11) / (float)(1ull << 53) * 2 - 1; }

static void put_half(uint8_t *p, float f) {
    const uint16_t h = float_to_half(f);
    memcpy(p, &h, 2);
}

// Random block bytes with sane scales where each type keeps them.
static void random_row(int type, uint8_t *row, int64_t blocks) {
    const int bytes = llk_block_bytes(type);
    for (int64_t i = 0; i < blocks * bytes; i++) row[i] = (uint8_t)next();
    for (int64_t b = 0; b < blocks; b++) {
        uint8_t *p = row + b * bytes;
        const float d = 0.002f + 0.02f * fabsf(uniform()), m = 0.01f * uniform();
        switch (type) {
        case 2: case 6: case 8: put_half(p, d); break;                     // Q4_0, Q5_0, Q8_0
        case 3: case 7: put_half(p, d); put_half(p + 2, m); break;         // Q4_1, Q5_1
        case 10: put_half(p + 80, d); put_half(p + 82, fabsf(m)); break;   // Q2_K
        case 11: put_half(p + 108, d); break;                              // Q3_K
        case 12: case 13: put_half(p, d); put_half(p + 2, fabsf(m)); break; // Q4_K, Q5_K
        case 14: put_half(p + 208, d); break;                              // Q6_K
        }
    }
}

static int failures = 0;

static void check_type(int type, const char *name) {
    const int k_type = type >= 10, values = k_type ? 256 : 32;
    const int64_t block_counts[] = {1, 2, 3, 7}, token_counts[] = {1, 2, 5, 17};
    for (int bi = 0; bi < 4; bi++)
        for (int ti = 0; ti < 4; ti++) {
            const int64_t blocks = block_counts[bi], tokens = token_counts[ti], rows = 3 + (int64_t)(next() % 5);
            const int64_t row_bytes = blocks * llk_block_bytes(type);
            uint8_t *w = malloc((size_t)(rows * row_bytes));
            for (int64_t r = 0; r < rows; r++) random_row(type, w + r * row_bytes, blocks);
            float *x = malloc(sizeof(float) * (size_t)(tokens * blocks * values));
            for (int64_t i = 0; i < tokens * blocks * values; i++) x[i] = uniform() * (i % 7 == 0 ? 4 : 1);
            const int64_t token_bytes = k_type ? llk_qk_token_bytes(blocks) : llk_q8_token_bytes(blocks);
            uint8_t *acts = malloc((size_t)(tokens * token_bytes));
            for (int64_t t = 0; t < tokens; t++) {
                if (k_type) llk_qk_prepare(x + t * blocks * values, blocks, acts + t * token_bytes);
                else llk_q8_prepare(type, x + t * blocks * values, blocks, acts + t * token_bytes);
            }
            float *twin = calloc((size_t)(tokens * rows), sizeof(float)), *fast = calloc((size_t)(tokens * rows), sizeof(float));
            void *scratch = k_type ? NULL : malloc((size_t)llk_q8_scratch_bytes(blocks));
            for (int scalar = 1; scalar >= 0; scalar--) {
                llk_force_scalar(scalar);
                float *out = scalar ? twin : fast;
                if (k_type) llk_qk_matmul(type, w, row_bytes, rows, acts, tokens, blocks, out, rows);
                else llk_q8_matmul(type, w, row_bytes, rows, acts, tokens, blocks, out, rows, scratch);
            }
            for (int64_t i = 0; i < tokens * rows; i++)
                if (memcmp(&twin[i], &fast[i], sizeof(float)) != 0) {
                    fprintf(stderr, "%s: %lld blocks x %lld tokens, output %lld: neon %.9g, scalar %.9g\n", name, (long long)blocks,
                            (long long)tokens, (long long)i, fast[i], twin[i]);
                    failures++;
                    break;
                }
            free(w), free(x), free(acts), free(twin), free(fast), free(scratch);
        }
    printf("%-5s neon = scalar on 16 ragged shapes\n", name);
}

static void check_floats(void) {
    for (int64_t n = 1; n < 70; n += 3) {
        float a[70], b[70];
        for (int i = 0; i < n; i++) a[i] = uniform(), b[i] = uniform();
        llk_force_scalar(1);
        const float want = llk_dot_f32(a, b, n);
        llk_force_scalar(0);
        const float got = llk_dot_f32(a, b, n);
        if (fabsf(got - want) > 1e-5f * (1 + fabsf(want))) { fprintf(stderr, "dot_f32 n=%lld: %g vs %g\n", (long long)n, got, want); failures++; }
    }
    enum { ROWS = 5, TOKENS = 3, K = 37 };
    float w[ROWS * K], x[TOKENS * K], want[TOKENS * ROWS], got[TOKENS * ROWS];
    for (int i = 0; i < ROWS * K; i++) w[i] = uniform();
    for (int i = 0; i < TOKENS * K; i++) x[i] = uniform();
    llk_force_scalar(1);
    llk_gemm_f32(w, ROWS, x, TOKENS, K, want, ROWS);
    llk_force_scalar(0);
    llk_gemm_f32(w, ROWS, x, TOKENS, K, got, ROWS);
    for (int i = 0; i < TOKENS * ROWS; i++)
        if (fabsf(got[i] - want[i]) > 1e-5f * (1 + fabsf(want[i]))) { fprintf(stderr, "gemm_f32 %d: %g vs %g\n", i, got[i], want[i]); failures++; }
    printf("f32   neon = scalar (dot, gemm) to rounding\n");
}

// Attention over an F16 cache of more than one span, NEON against scalar (to rounding).
static void check_attention(void) {
    const int head_sizes[] = {64, 12, 10};  // 10: not a multiple of 4, the scalar steps on both
    for (int hi = 0; hi < 3; hi++) {
        const int hs = head_sizes[hi], tokens = 3, heads = 2;
        const int64_t capacity = 400, lengths[3] = {300, 257, 1};
        uint16_t *keys = malloc(sizeof(uint16_t) * (size_t)(capacity * hs)), *values = malloc(sizeof(uint16_t) * (size_t)(capacity * hs));
        for (int64_t i = 0; i < capacity * hs; i++) keys[i] = float_to_half(uniform()), values[i] = float_to_half(uniform());
        float *q = malloc(sizeof(float) * (size_t)(tokens * heads * hs));
        for (int i = 0; i < tokens * heads * hs; i++) q[i] = uniform() * 2;
        float *want = malloc(sizeof(float) * (size_t)(tokens * heads * hs)), *got = malloc(sizeof(float) * (size_t)(tokens * heads * hs));
        float *scratch = malloc(sizeof(float) * (size_t)llk_attention_scratch_floats(tokens, heads, hs));
        llk_attention_job job = {q, heads * hs, tokens, heads, hs, lengths, keys, values, 1, 1, 2 * hs, 2 * hs, capacity, 0,
                                 1.0f / sqrtf((float)hs), hi == 1 ? 30.0f : 0, scratch};
        llk_force_scalar(1);
        llk_attention(&job, want, heads * hs);
        llk_force_scalar(0);
        llk_attention(&job, got, heads * hs);
        for (int i = 0; i < tokens * heads * hs; i++)
            if (!(fabsf(got[i] - want[i]) <= 1e-5f * (1 + fabsf(want[i])))) {
                fprintf(stderr, "attention head size %d, output %d: neon %g, scalar %g\n", hs, i, got[i], want[i]);
                failures++;
                break;
            }
        free(keys), free(values), free(q), free(want), free(got), free(scratch);
    }
    printf("attention neon = scalar to rounding (F16 cache, 2 spans, soft cap)\n");
}

int main(void) {
    printf("path: %s\n", llk_isa());
    if (strcmp(llk_isa(), "neon") != 0) { fprintf(stderr, "not running the NEON path\n"); return 1; }
    const struct { int type; const char *name; } types[] = {
        {2, "Q4_0"}, {3, "Q4_1"}, {6, "Q5_0"}, {7, "Q5_1"}, {8, "Q8_0"},
        {10, "Q2_K"}, {11, "Q3_K"}, {12, "Q4_K"}, {13, "Q5_K"}, {14, "Q6_K"}};
    for (int i = 0; i < 10; i++) check_type(types[i].type, types[i].name);
    check_floats();
    check_attention();
    if (failures) { fprintf(stderr, "%d mismatches\n", failures); return 1; }
    return 0;
}
