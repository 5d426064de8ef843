#!/usr/bin/env python3
"""Golden quantization vectors from the `gguf` package: random float rows (normal values, a few
outliers, an all-zero block and ties), and the bytes `gguf.quants.quantize` makes of them for
Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1. The Swift tests must reproduce every byte.

    python3 Scripts/make_golden_quantize.py [--seed 1] > Tests/KernelsTests/Golden/quantize.json
"""
import argparse
import json

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import quantize


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal(32 * 16).astype(np.float32)
    x[5] = 40.0                      # an outlier
    x[32:64] = 0                     # an all-zero block
    x[64:96] = np.float32(0.25) * rng.integers(-8, 8, size=32)  # values on the grid: ties
    x[96:128] = np.abs(x[96:128])    # one-signed block
    cases = []
    for qtype in [T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1]:
        cases.append({"type": qtype.name, "bytes": quantize(x.reshape(1, -1), qtype).tobytes().hex()})
    print(json.dumps({"source": "gguf.quants.quantize, Scripts/make_golden_quantize.py --seed %d" % args.seed,
                      "input": x.tobytes().hex(), "cases": cases}))


if __name__ == "__main__":
    main()
