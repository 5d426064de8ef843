#!/usr/bin/env python3
"""Golden K-quant blocks and tensor-type plans from llama.cpp itself (the copy that
`pip install llama-cpp-python` builds):

- kquants.json: rows of random floats (several distributions: normal, uniform, heavy tails, all
  positive, constant, zeros, tiny values) quantized to Q4_K, Q5_K and Q6_K by ggml's own
  `ggml_quantize_chunk` (no importance matrix, as llama-quantize without --imatrix), loaded from
  the package's libggml-base through ctypes. Inputs and outputs are stored as base64.
- quant_plan.json: the tensor types llama.cpp's `llama_model_quantize` chose for every tensor of
  a small random F32 Llama model (written here with the gguf package: 256-wide so the K types
  fit, 512-wide feed-forward, 16 layers so the mixes' layer rules show, one 96-wide tensor set
  in a second model for the fallbacks), for Q4_0, Q8_0, Q4_K_S, Q4_K_M, Q5_K_M and Q6_K.

    pip install llama-cpp-python gguf numpy
    python3 Scripts/make_golden_kquants.py
"""
import argparse
import base64
import ctypes
import json
import os
import tempfile

import gguf
import llama_cpp
import numpy as np

TYPES = {"Q4_K": 12, "Q5_K": 13, "Q6_K": 14}
FTYPES = {"Q4_0": 2, "Q8_0": 7, "Q4_K_S": 14, "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18}


def rows(rng):
    n = 512
    out = [rng.standard_normal(n), rng.uniform(-1, 1, n), rng.standard_t(2, n) * 0.01,
           np.abs(rng.standard_normal(n)) + 0.5, np.full(n, 0.25), np.zeros(n),
           rng.standard_normal(n) * 1e-7, rng.standard_normal(n) * 300]
    spiky = rng.standard_normal(n) * 0.02
    spiky[::37] = 3.0
    out.append(spiky)
    mixed = rng.standard_normal(n)
    mixed[:256] = 0
    out.append(mixed)
    return np.array(out, dtype=np.float32)


def quantize_blocks(lib, x):
    results = {}
    for name, type_id in TYPES.items():
        row_bytes = lib.ggml_row_size(type_id, x.shape[1])
        dst = ctypes.create_string_buffer(row_bytes * x.shape[0])
        src = np.ascontiguousarray(x)
        lib.ggml_quantize_chunk(type_id, src.ctypes.data_as(ctypes.c_void_p), dst, 0, x.shape[0], x.shape[1], None)
        results[name] = base64.b64encode(dst.raw).decode()
    return results


def write_model(path, dim, hidden, layers, rng, vocab=64):
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(128)
    w.add_embedding_length(dim)
    w.add_feed_forward_length(hidden)
    w.add_block_count(layers)
    w.add_head_count(dim // 32)
    w.add_head_count_kv(dim // 32)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"<t{i}>".encode() for i in range(vocab)])
    w.add_token_scores([0.0] * vocab)
    w.add_token_types([1] * vocab)
    tensors = [("token_embd.weight", (vocab, dim))]
    for layer in range(layers):
        p = f"blk.{layer}."
        tensors += [(p + "attn_norm.weight", (dim,)), (p + "attn_q.weight", (dim, dim)), (p + "attn_k.weight", (dim, dim)),
                    (p + "attn_v.weight", (dim, dim)), (p + "attn_output.weight", (dim, dim)), (p + "ffn_norm.weight", (dim,)),
                    (p + "ffn_gate.weight", (hidden, dim)), (p + "ffn_up.weight", (hidden, dim)), (p + "ffn_down.weight", (dim, hidden))]
    tensors += [("output_norm.weight", (dim,)), ("output.weight", (vocab, dim))]
    for name, shape in tensors:
        w.add_tensor(name, rng.standard_normal(shape).astype(np.float32) * 0.02)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return [(name, list(reversed(shape))) for name, shape in tensors]


def plans(rng, workdir):
    out = []
    for dim, hidden, layers in [(256, 512, 16), (96, 256, 2)]:
        source = os.path.join(workdir, f"model-{dim}.gguf")
        tensors = write_model(source, dim, hidden, layers, rng)
        for target, ftype in FTYPES.items():
            dest = os.path.join(workdir, f"model-{dim}-{target}.gguf")
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = ftype
            params.nthread = 2
            if llama_cpp.llama_model_quantize(source.encode(), dest.encode(), ctypes.byref(params)) != 0:
                raise SystemExit(f"llama.cpp failed to quantize to {target}")
            reader = gguf.GGUFReader(dest)
            types = {t.name: t.tensor_type.name for t in reader.tensors}
            out.append({"target": target, "layers": layers,
                        "tensors": [{"name": n, "shape": s, "type": types[n]} for n, s in tensors]})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="Tests/KernelsTests/Golden")
    parser.add_argument("--plan-out", default="Tests/LlamaTests/Golden")
    args = parser.parse_args()
    lib_dir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    lib = ctypes.CDLL(os.path.join(lib_dir, "libggml-base.so"))
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_void_p]
    rng = np.random.default_rng(20261128)
    x = rows(rng)
    golden = {"llama_cpp_python": llama_cpp.__version__, "rows": x.shape[0], "columns": x.shape[1],
              "input": base64.b64encode(x.tobytes()).decode(), "blocks": quantize_blocks(lib, x)}
    with open(os.path.join(args.out, "kquants.json"), "w") as f:
        json.dump(golden, f)
    with tempfile.TemporaryDirectory() as workdir:
        plan = {"llama_cpp_python": llama_cpp.__version__, "models": plans(rng, workdir)}
    with open(os.path.join(args.plan_out, "quant_plan.json"), "w") as f:
        json.dump(plan, f)


if __name__ == "__main__":
    main()
