#!/usr/bin/env python3
"""Carries a trained model's weights (SmolLM2-135M-Instruct Q4_1, the default model) into the
tensor layout of each architecture swift-llama runs, so that llama.cpp and swift-llama can be
compared on files with peaked (trained) distributions:

  llama31   + rope_freqs (Llama 3.1's RoPE factors, computed as Meta's formula gives them)
  qwen2     + Q/K/V biases, NeoX RoPE
  qwen3     + per-head Q/K norms, NeoX RoPE
  gemma2    + post-attention/FFN norms, GeGLU, soft-caps, embeddings scaled by sqrt(width),
              every other layer sliding (window 64)
  gemma3    + Q/K norms, post norms, 5 sliding layers (window 64, base 10000) per global one
  phi3      Q, K, V fused into attn_qkv and gate|up into ffn_up; NeoX RoPE; LongRoPE factors
            (short and long, original context 128, so a 256-token context uses the long ones)
  yarn      llama with rope.scaling.type yarn, factor 4, original context 64
  linear    llama with rope.scaling.type linear, factor 2
  smollm3   no RoPE on every 4th layer
  nemo      head size 128 (attention.key_length) although width / heads = 64: each head's Q/K/V
            rows are followed by as many zero rows, and attn_output reads zeros there

The extra tensors get deterministic values (no randomness), so the files are the same on every
run. Quantized tensors are copied block for block (rows are concatenated for the fused ones).

    python3 Scripts/make_arch_variants.py [--model FILE] [--out DIR] [--only NAME...]
"""
import argparse
import math
import os

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter

VARIANTS = ["llama31", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "smollm3", "nemo", "yarn", "linear"]
ARCH = {"llama31": "llama", "nemo": "llama", "yarn": "llama", "linear": "llama"}


def wave(n, scale, offset=1.0, phase=0.0):
    """Deterministic values: offset + scale * sin(i * 0.37 + phase)."""
    return (offset + scale * np.sin(np.arange(n) * 0.37 + phase)).astype(np.float32)


def llama31_factors(dims, base, factor=8.0, low=1.0, high=4.0, original=8192):
    out = []
    for i in range(0, dims, 2):
        freq = 1.0 / base ** (i / dims)
        wavelength = 2 * math.pi / freq
        if wavelength < original / high:
            out.append(1.0)
        elif wavelength > original / low:
            out.append(factor)
        else:
            smooth = (original / wavelength - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def copy_fields(reader, writer, arch, old_arch, skip):
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        key = arch + name[len(old_arch):] if name.startswith(old_arch + ".") else name
        if key in skip:
            continue
        vtype = field.types[0]
        value = field.contents()
        if vtype == GGUFValueType.ARRAY:
            writer.add_key_value(key, value, vtype, sub_type=field.types[-1])
        else:
            writer.add_key_value(key, value, vtype)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.path.expanduser("~/.cache/swift-llama/SmolLM2-135M-Instruct.Q4_1.gguf"))
    parser.add_argument("--out", default=".build/arch-variants")
    parser.add_argument("--only", nargs="*", default=VARIANTS)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    reader = GGUFReader(args.model)
    tensors = {t.name: t for t in reader.tensors}
    f = lambda k: reader.fields["llama." + k].contents()
    width, heads, kv_heads, layers = f("embedding_length"), f("attention.head_count"), f("attention.head_count_kv"), f("block_count")
    head = width // heads
    base = f("rope.freq_base")

    for variant in args.only:
        arch = ARCH.get(variant, variant)
        path = os.path.join(args.out, f"smollm2-{variant}.gguf")
        writer = GGUFWriter(path, arch)
        copy_fields(reader, writer, arch, "llama", {"general.name", "llama.rope.dimension_count"} if variant == "nemo" else {"general.name"})
        # (not naming the family: llama.cpp keys vocabulary quirks on names such as "phi3")
        writer.add_string("general.name", "SmolLM2-135M weights in another layout")

        def add(name, data, raw_type=None):
            if raw_type is None:
                writer.add_tensor(name, np.ascontiguousarray(data, dtype=np.float32))
            else:
                writer.add_tensor(name, np.ascontiguousarray(data), raw_dtype=raw_type)

        def raw(name):
            t = tensors[name]
            return t.data, t.tensor_type

        if variant in ("gemma2", "gemma3"):
            writer.add_uint32(f"{arch}.attention.sliding_window", 64)
            writer.add_uint32(f"{arch}.attention.key_length", head)
            writer.add_uint32(f"{arch}.attention.value_length", head)
        if variant == "gemma2":
            writer.add_float32(f"{arch}.attn_logit_softcapping", 50.0)
            writer.add_float32(f"{arch}.final_logit_softcapping", 30.0)
        if variant == "yarn":
            writer.add_string("llama.rope.scaling.type", "yarn")
            writer.add_float32("llama.rope.scaling.factor", 4.0)
            writer.add_uint32("llama.rope.scaling.original_context_length", 64)
        if variant == "linear":
            writer.add_string("llama.rope.scaling.type", "linear")
            writer.add_float32("llama.rope.scaling.factor", 2.0)
        if variant == "phi3":
            writer.add_uint32("phi3.rope.scaling.original_context_length", 128)
            writer.add_float32("phi3.rope.scaling.attn_factor", 1.1)
        if variant == "nemo":
            writer.add_uint32("llama.attention.key_length", 2 * head)
            writer.add_uint32("llama.attention.value_length", 2 * head)
            writer.add_uint32("llama.rope.dimension_count", 2 * head)

        for name, t in tensors.items():
            data, qtype = t.data, t.tensor_type
            raw_type = None if qtype == GGMLQuantizationType.F32 else qtype
            parts = name.split(".")
            if variant == "phi3" and parts[-2] in ("attn_q", "attn_k", "attn_v", "ffn_gate", "ffn_up"):
                block = ".".join(parts[:2])
                if parts[-2] == "attn_q":
                    q, k, v = (raw(f"{block}.attn_{x}.weight")[0] for x in "qkv")
                    add(f"{block}.attn_qkv.weight", np.concatenate([q, k, v]), qtype)
                elif parts[-2] == "ffn_up":
                    add(f"{block}.ffn_up.weight", np.concatenate([raw(f"{block}.ffn_gate.weight")[0], data]), qtype)
                continue
            if variant == "nemo" and parts[-2] in ("attn_q", "attn_k", "attn_v"):
                # Each head's rows, then as many zero rows (a zero block is zero in every type).
                n_heads = heads if parts[-2] == "attn_q" else kv_heads
                rows = data.reshape(n_heads, head, -1)
                add(name, np.concatenate([rows, np.zeros_like(rows)], axis=1).reshape(2 * n_heads * head, -1), qtype)
                continue
            if variant == "nemo" and parts[-2] == "attn_output":
                # Columns double: per head, the original blocks then zero blocks.
                cols = data.reshape(width, heads, -1)
                add(name, np.concatenate([cols, np.zeros_like(cols)], axis=2).reshape(width, -1), qtype)
                continue
            add(name, data, raw_type)
            if parts[0] == "blk" and parts[-2] == "attn_norm":
                i = int(parts[1])
                block = f"blk.{i}"
                if variant == "qwen2":
                    add(f"{block}.attn_q.bias", wave(heads * head, 0.05, 0.0, i))
                    add(f"{block}.attn_k.bias", wave(kv_heads * head, 0.05, 0.0, i + 1))
                    add(f"{block}.attn_v.bias", wave(kv_heads * head, 0.02, 0.0, i + 2))
                if variant in ("qwen3", "gemma3"):
                    add(f"{block}.attn_q_norm.weight", wave(head, 0.1, 1.0, i))
                    add(f"{block}.attn_k_norm.weight", wave(head, 0.1, 1.0, i + 0.5))
                if variant in ("gemma2", "gemma3"):
                    add(f"{block}.post_attention_norm.weight", wave(width, 0.1, 0.5, i))
                    add(f"{block}.post_ffw_norm.weight", wave(width, 0.1, 0.5, i + 0.25))
        if variant == "llama31":
            add("rope_freqs.weight", llama31_factors(head, base))
        if variant == "phi3":
            add("rope_factors_long.weight", wave(head // 2, 0.5, 2.0))
            add("rope_factors_short.weight", wave(head // 2, 0.1, 1.1))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        print(path)


if __name__ == "__main__":
    main()
