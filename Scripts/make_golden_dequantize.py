#!/usr/bin/env python3
"""Golden dequantization vectors from the `gguf` package (llama.cpp's own Python reference).

For each tensor type: random blocks (random bytes, with every half-precision scale field set to a
random finite value), and what `gguf.quants.dequantize` makes of them. The Swift tests read the
JSON this writes and must reproduce every value.

    python3 Scripts/make_golden_dequantize.py [--seed 1] > Tests/KernelsTests/Golden/dequantize.json
"""
import argparse
import json

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T
from gguf.quants import dequantize

# Byte offsets of the half-precision scale fields inside one block.
HALF_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
BLOCKS = 8


def random_blocks(rng, qtype):
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    if qtype == T.F32:
        return rng.standard_normal(BLOCKS * 16).astype(np.float32).view(np.uint8)
    if qtype == T.F16:
        return (rng.standard_normal(BLOCKS * 16) * 4).astype(np.float16).view(np.uint8)
    if qtype == T.BF16:
        bits = (rng.standard_normal(BLOCKS * 16).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        return bits.view(np.uint8)
    n = BLOCKS if block_size == 32 else 2
    raw = rng.integers(0, 256, size=(n, type_size), dtype=np.uint8)
    for offset in HALF_FIELDS[qtype]:
        scales = (rng.uniform(0.001, 0.1, size=n) * rng.choice([-1, 1], size=n)).astype(np.float16)
        raw[:, offset:offset + 2] = scales.view(np.uint8).reshape(n, 2)
    return raw.reshape(-1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    cases = []
    for qtype in [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0,
                  T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]:
        raw = random_blocks(rng, qtype)
        values = dequantize(raw, qtype).astype(np.float32).reshape(-1)
        cases.append({"type": qtype.name, "bytes": raw.tobytes().hex(),
                      "values": [float(v) for v in values]})
    print(json.dumps({"source": "gguf.quants.dequantize, Scripts/make_golden_dequantize.py --seed %d" % args.seed,
                      "cases": cases}))


if __name__ == "__main__":
    main()
