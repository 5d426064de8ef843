// Exact binary16 conversions (round to nearest even), shared by the kernel files.
#ifndef LLK_HALF_H
#define LLK_HALF_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF, bits;
    if (exponent == 0x1F) bits = sign | 0x7F800000u | (mantissa << 13);
    else if (exponent == 0) {
        float magnitude = (float)mantissa * (1.0f / 16777216.0f);
        return sign ? -magnitude : magnitude;
    } else bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000, ax = x & 0x7FFFFFFFu;
    if (ax >= 0x7F800000u) return (uint16_t)(sign | 0x7C00 | (ax > 0x7F800000u ? 0x200 : 0));
    if (ax >= 0x477FF000u) return (uint16_t)(sign | 0x7C00);  // rounds past the largest half
    if (ax < 0x38800000u) {  // below the smallest normal half: multiples of 2^-24
        float magnitude;
        memcpy(&magnitude, &ax, 4);
        return (uint16_t)(sign | (uint32_t)nearbyintf(magnitude * 16777216.0f));
    }
    return (uint16_t)(sign | ((ax + 0xC8000FFFu + ((ax >> 13) & 1)) >> 13));
}

static inline float load_half(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return half_to_float(h);
}

#endif
