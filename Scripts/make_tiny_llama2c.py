#!/usr/bin/env python3
"""Writes the small llama2.c-format test model and everything the tests hold it to, from
material on PyPI: the shape of Karpathy's stories260K (dim 64, hidden 172, 5 layers, 8 heads,
4 KV heads, a shared classifier, 512 positions) with seeded random weights, and a 512-piece
SentencePiece BPE vocabulary (byte fallback, as llama2.c's tok512) trained with the
`sentencepiece` package on the news text the tests also read.

The expected outputs come from this script's own float32 port of llama2.c's run.c (forward
pass, greedy argmax, its tokenizer's encode and its printing), which shares nothing with the
Swift code:
- tiny260K.bin and tok512.bin: llama2.c's legacy checkpoint and tokenizer formats;
- tiny260K.gguf: the same model and vocabulary, written by the `gguf` package;
- vectors.json: run.c's stdout for `run tiny260K.bin -z tok512.bin -t 0 -n 200` (no prompt), the
  greedy continuation of "Once upon a time", and run.c encodings of a few texts;
- prompt_logits_f32.json: the logits after each prompt token (teacher forcing).

Byte pieces get zero embedding rows (so the tied classifier never prefers one and the text stays
UTF-8) and the three special pieces small ones; the seed (SEED, found with --search) is the
first from 0 whose greedy runs never emit a special or byte piece, keep the top two logits at
least MIN_GAP apart (so float error cannot change a token) and use MIN_DISTINCT tokens or more.

    python3 Scripts/make_tiny_llama2c.py --text NEWS.txt --out DIR
"""
import argparse
import io
import json
import os
import struct

import numpy as np

DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, VOCAB, SEQ_LEN = 64, 172, 5, 8, 4, 512, 512
HEAD = DIM // HEADS
KV_DIM = DIM * KV_HEADS // HEADS
EPS = 1e-5
SEED = 7          # found by --search from 0 (see below); fixed so the weights are the same everywhere
MIN_GAP = 2e-3    # far above float32 summation-order differences (about 1e-5 here)
MIN_DISTINCT = 30  # distinct tokens in each greedy run: a text that moves on, not one token repeated
PROMPT = "Once upon a time"
ENCODE_TEXTS = [PROMPT, "Lily", "The quick brown fox!", "a", "", "  two  spaces", "naïve café, 12.5% ☕",
                "Sydney's fire crews", "\n\nnew lines\n"]


# --- the tokenizer ----------------------------------------------------------------------------

def train_tokenizer(text_path):
    """A 512-piece BPE model with byte fallback, trained deterministically (one thread, no sampling)."""
    import sentencepiece
    with open(text_path, encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type="bpe", vocab_size=VOCAB,
        character_coverage=1.0, byte_fallback=True, split_digits=True, allow_whitespace_only_pieces=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, num_threads=1,
        input_sentence_size=0, shuffle_input_sentence=False, max_sentence_length=1 << 16,
        self_test_sample_size=0, minloglevel=2)
    return model.getvalue()


def llama2c_vocab(model_proto):
    """The pieces and scores as llama2.c's tokenizer.py exports them."""
    import sentencepiece
    sp = sentencepiece.SentencePieceProcessor(model_proto=model_proto)
    pieces, scores = [], []
    for i in range(sp.vocab_size()):
        text = sp.id_to_piece(i)
        if i == sp.bos_id():
            text = "\n<s>\n"
        elif i == sp.eos_id():
            text = "\n</s>\n"
        pieces.append(text.replace("\u2581", " ").encode("utf-8"))
        scores.append(sp.get_score(i))
    return pieces, scores


def write_tokenizer_bin(path, pieces, scores):
    with open(path, "wb") as f:
        f.write(struct.pack("I", max(len(p) for p in pieces)))
        for data, score in zip(pieces, scores):
            f.write(struct.pack("fI", score, len(data)))
            f.write(data)


def run_c_encode(text, pieces, scores, bos=True):
    """run.c's encode(): a dummy-prefix space, code points (bytes + 3 when unknown), then merges
    of the best-scoring adjacent pair, leftmost on ties, until none applies."""
    lookup = {p: i for i, p in reversed(list(enumerate(pieces)))}
    tokens = [1] if bos else []
    data = text.encode("utf-8")
    if data:
        tokens.append(lookup[b" "])
    i = 0
    while i < len(data):
        j = i + 1
        while j < len(data) and j - i < 4 and (data[j] & 0xC0) == 0x80:
            j += 1
        point = data[i:j]
        if point in lookup:
            tokens.append(lookup[point])
        else:
            tokens.extend(b + 3 for b in point)
        i = j
    while True:
        best, best_id, best_at = -1e10, -1, -1
        for k in range(len(tokens) - 1):
            merged = pieces[tokens[k]] + pieces[tokens[k + 1]]
            if merged in lookup and scores[lookup[merged]] > best:
                best, best_id, best_at = scores[lookup[merged]], lookup[merged], k
        if best_at < 0:
            return tokens
        tokens[best_at:best_at + 2] = [best_id]


def run_c_piece(prev, token, pieces):
    """run.c's decode() and safe_printf(): the bytes one step prints."""
    piece = pieces[token]
    if prev == 1 and piece.startswith(b" "):
        piece = piece[1:]
    text = piece.decode("latin-1")
    if len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
        piece = bytes([int(text[3:5], 16)])
    if len(piece) == 1 and not (32 <= piece[0] < 127 or piece[0] in b" \t\n\v\f\r"):
        return b""
    return piece


# --- the model --------------------------------------------------------------------------------

def random_weights(seed):
    rng = np.random.default_rng(seed)

    def normal(shape, scale):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    w = {
        "emb": normal((VOCAB, DIM), 1.0),
        "rms_att": (1 + normal((LAYERS, DIM), 0.1)).astype(np.float32),
        "wq": normal((LAYERS, DIM, DIM), DIM ** -0.5),
        "wk": normal((LAYERS, KV_DIM, DIM), DIM ** -0.5),
        "wv": normal((LAYERS, KV_DIM, DIM), DIM ** -0.5),
        "wo": normal((LAYERS, DIM, DIM), DIM ** -0.5),
        "rms_ffn": (1 + normal((LAYERS, DIM), 0.1)).astype(np.float32),
        "w1": normal((LAYERS, HIDDEN, DIM), DIM ** -0.5),
        "w2": normal((LAYERS, DIM, HIDDEN), HIDDEN ** -0.5),
        "w3": normal((LAYERS, HIDDEN, DIM), DIM ** -0.5),
        # Random signs, so the tied classifier does not just repeat the input token; small, so logits
        # spread about 2.4 and the text's tokens stay within the 16 nats below the top that
        # llama.cpp's KL-divergence files keep.
        "rms_final": normal((DIM,), 0.3),
    }
    w["emb"][3:259] = 0           # byte pieces: never the argmax, and no stray bytes in the text
    w["emb"][0:3] *= np.float32(0.1)  # unk, bos, eos: rarely the argmax
    return w


def rmsnorm(x, weight):
    ss = np.float32(np.dot(x, x) / np.float32(DIM) + np.float32(EPS))
    return (weight * (x * np.float32(1.0 / np.sqrt(ss)))).astype(np.float32)


class RunC:
    """run.c's forward() in float32, one position at a time, with its KV cache."""

    def __init__(self, w):
        self.w = w
        self.k = np.zeros((LAYERS, SEQ_LEN, KV_DIM), np.float32)
        self.v = np.zeros((LAYERS, SEQ_LEN, KV_DIM), np.float32)
        dims = np.arange(0, DIM, 2) % HEAD
        self.freq = (1.0 / np.power(10000.0, dims.astype(np.float32) / HEAD)).astype(np.float32)

    def rope(self, vec, pos, width):
        angle = (np.float32(pos) * self.freq[: width // 2]).astype(np.float32)
        c, s = np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)
        v0, v1 = vec[0:width:2].copy(), vec[1:width:2].copy()
        vec[0:width:2] = v0 * c - v1 * s
        vec[1:width:2] = v0 * s + v1 * c

    def forward(self, token, pos):
        w = self.w
        x = w["emb"][token].copy()
        for layer in range(LAYERS):
            xb = rmsnorm(x, w["rms_att"][layer])
            q = w["wq"][layer] @ xb
            self.k[layer, pos] = w["wk"][layer] @ xb
            self.v[layer, pos] = w["wv"][layer] @ xb
            self.rope(q, pos, DIM)
            self.rope(self.k[layer, pos], pos, KV_DIM)
            out = np.zeros(DIM, np.float32)
            for h in range(HEADS):
                kv = h // (HEADS // KV_HEADS)
                qh = q[h * HEAD:(h + 1) * HEAD]
                keys = self.k[layer, :pos + 1, kv * HEAD:(kv + 1) * HEAD]
                att = (keys @ qh) / np.float32(np.sqrt(HEAD))
                att = np.exp(att - att.max()).astype(np.float32)
                att /= att.sum()
                out[h * HEAD:(h + 1) * HEAD] = att @ self.v[layer, :pos + 1, kv * HEAD:(kv + 1) * HEAD]
            x = (x + w["wo"][layer] @ out).astype(np.float32)
            xb = rmsnorm(x, w["rms_ffn"][layer])
            h1, h3 = w["w1"][layer] @ xb, w["w3"][layer] @ xb
            hb = (h1 * (1.0 / (1.0 + np.exp(-h1))) * h3).astype(np.float32)
            x = (x + w["w2"][layer] @ hb).astype(np.float32)
        return (w["emb"] @ rmsnorm(x, w["rms_final"])).astype(np.float32)


def greedy(w, prompt, steps):
    """run.c's generate() with temperature 0: the prompt is forced, then the argmax; returns the
    tokens after the first, and the smallest gap between the two largest logits it chose from."""
    model, token, out, gap = RunC(w), prompt[0], [], np.inf
    for pos in range(steps):
        logits = model.forward(token, pos)
        if pos < len(prompt) - 1:
            token = prompt[pos + 1]
        else:
            top = np.sort(logits)[-2:]
            gap = min(gap, float(top[1] - top[0]))
            token = int(np.argmax(logits))
            if token == 1:
                break
        out.append(token)
    return out, gap


def write_llama2c_bin(path, w):
    with open(path, "wb") as f:
        f.write(struct.pack("7i", DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, VOCAB, SEQ_LEN))
        for name in ["emb", "rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3", "rms_final"]:
            f.write(w[name].tobytes())
        freqs = 1.0 / np.power(10000.0, np.arange(0, HEAD, 2, dtype=np.float32) / HEAD)
        angles = np.outer(np.arange(SEQ_LEN, dtype=np.float32), freqs).astype(np.float32)
        f.write(np.cos(angles).astype(np.float32).tobytes())  # the legacy freq_cis tables run.c skips
        f.write(np.sin(angles).astype(np.float32).tobytes())


def write_gguf(path, w, model_proto):
    import gguf
    from sentencepiece import sentencepiece_model_pb2 as pb
    proto = pb.ModelProto()
    proto.ParseFromString(model_proto)
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("tiny260K")
    writer.add_context_length(2048)
    writer.add_embedding_length(DIM)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(HIDDEN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HEAD)
    writer.add_layer_norm_rms_eps(EPS)
    writer.add_tokenizer_model("llama")
    writer.add_token_list([p.piece.encode("utf-8") for p in proto.pieces])
    writer.add_token_scores([p.score for p in proto.pieces])
    writer.add_token_types([int(p.type) for p in proto.pieces])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_tensor("token_embd.weight", w["emb"])
    for i in range(LAYERS):
        for name, key in [("attn_norm", "rms_att"), ("attn_q", "wq"), ("attn_k", "wk"), ("attn_v", "wv"),
                          ("attn_output", "wo"), ("ffn_norm", "rms_ffn"), ("ffn_gate", "w1"), ("ffn_down", "w2"),
                          ("ffn_up", "w3")]:
            writer.add_tensor(f"blk.{i}.{name}.weight", np.ascontiguousarray(w[key][i]))
    writer.add_tensor("output_norm.weight", w["rms_final"])
    writer.add_tensor("output.weight", w["emb"])  # the shared classifier, as llama.cpp's converter writes it
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", required=True, help="the text the tokenizer is trained on")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--search", action="store_true", help="try the seeds after --seed until one qualifies")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    model_proto = train_tokenizer(args.text)
    pieces, scores = llama2c_vocab(model_proto)
    assert len(pieces) == VOCAB
    prompt_ids = run_c_encode(PROMPT, pieces, scores)

    seed = args.seed
    while True:
        w = random_weights(seed)
        story, gap1 = greedy(w, [1], 200)
        continuation, gap2 = greedy(w, prompt_ids, len(prompt_ids) - 1 + 200)
        generated = story + continuation[len(prompt_ids) - 1:]
        if (min(gap1, gap2) >= MIN_GAP and all(t >= 259 for t in generated) and len(story) == 200
                and min(len(set(story)), len(set(continuation[len(prompt_ids) - 1:]))) >= MIN_DISTINCT):
            break
        if not args.search:
            raise SystemExit(f"seed {seed} makes a greedy run that emits a special or byte piece, has two "
                             f"logits closer than {MIN_GAP} or repeats itself; find another with --search")
        seed += 1

    stdout = b"".join(run_c_piece(prev, token, pieces) for prev, token in zip([1] + story, story))
    vectors = {
        "_source": f"Scripts/make_tiny_llama2c.py (seed {seed}): a float32 port of llama2.c's run.c",
        "prompt": PROMPT,
        "promptIds": prompt_ids,
        "genLong": continuation[len(prompt_ids) - 1:][:200],
        "encodeVectors": [{"text": t, "ids": run_c_encode(t, pieces, scores)} for t in ENCODE_TEXTS],
        "llama2c_test_all_expected_stdout": {
            "_source": "run.c's stdout for `run tiny260K.bin -z tok512.bin -t 0 -n 200`, its final newline stripped",
            "text": stdout.decode("utf-8")},
    }
    model = RunC(w)
    logits = [model.forward(t, pos).tolist() for pos, t in enumerate(prompt_ids)]

    write_tokenizer_bin(os.path.join(args.out, "tok512.bin"), pieces, scores)
    with open(os.path.join(args.out, "tok512.model"), "wb") as f:
        f.write(model_proto)
    write_llama2c_bin(os.path.join(args.out, "tiny260K.bin"), w)
    write_gguf(os.path.join(args.out, "tiny260K.gguf"), w, model_proto)
    with open(os.path.join(args.out, "vectors.json"), "w") as f:
        json.dump(vectors, f, indent=1, ensure_ascii=False)
    with open(os.path.join(args.out, "prompt_logits_f32.json"), "w") as f:
        json.dump({"promptIds": prompt_ids, "logits": logits}, f)
    print(f"seed {seed}, smallest top-2 gap {min(gap1, gap2):.4f}: {stdout[:80]!r}...")


if __name__ == "__main__":
    main()
