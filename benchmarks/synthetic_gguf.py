"""A Qwen2.5-1.5B-shaped GGUF with random weights in llama.cpp's Q4_K_M mix, for the export
benchmark (no real 1.5B model is at hand on PyPI).

Shape of Qwen2.5-1.5B: 28 layers, hidden 1536, FFN 8960, 12 query / 2 KV heads (head dim
128), vocabulary 151,936, tied embeddings, q/k/v biases, RoPE theta 1e6. Q4_K_M stores
attn_v and ffn_down as Q6_K in the first and last eighth of the layers and every third layer
between, the token embedding as Q6_K, the other matrices as Q4_K, vectors as F32.
Quantized blocks are random bytes with small block scales (Q4_K: ``d``, ``dmin``; Q6_K:
``d``), so weights come out with a spread like a trained model's (a few hundredths).
The tokenizer (vocabulary, merges, chat template) is copied from a Qwen2.5 GGUF.

    python -m benchmarks.synthetic_gguf OUT.gguf [--tokenizer-from QWEN.gguf]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q

from .real_models import qwen_05b

LAYERS, HIDDEN, FFN, HEADS, KV_HEADS, VOCAB = 28, 1536, 8960, 12, 2, 151_936
HEAD_DIM = HIDDEN // HEADS
BLOCK = {Q.Q4_K: (256, 144), Q.Q6_K: (256, 210)}


def random_blocks(rng: np.random.Generator, qtype: Q, rows: int, cols: int) -> np.ndarray:
    """uint8 [rows, row bytes] of random ``qtype`` blocks with small fp16 scales."""
    values, size = BLOCK[qtype]
    blocks = rng.integers(0, 256, (rows, cols // values, size), dtype=np.uint8)
    if qtype == Q.Q4_K:
        blocks[..., 0:2] = np.frombuffer(np.float16(1e-4).tobytes(), np.uint8)  # d
        blocks[..., 2:4] = np.frombuffer(np.float16(1e-4).tobytes(), np.uint8)  # dmin
    else:
        blocks[..., 208:210] = np.frombuffer(np.float16(1e-5).tobytes(), np.uint8)  # d
    return blocks.reshape(rows, -1)


def more_bits(layer: int) -> bool:
    """llama.cpp's Q4_K_M rule for the layers whose attn_v / ffn_down get Q6_K."""
    return layer < LAYERS // 8 or layer >= 7 * LAYERS // 8 or (layer - LAYERS // 8) % 3 == 2


def copy_tokenizer(writer: gguf.GGUFWriter, source: Path) -> None:
    reader = gguf.GGUFReader(str(source))
    fields = {k: f.contents() for k, f in reader.fields.items() if k.startswith("tokenizer.")}
    writer.add_tokenizer_model(fields["tokenizer.ggml.model"])
    writer.add_tokenizer_pre(fields["tokenizer.ggml.pre"])
    writer.add_token_list(fields["tokenizer.ggml.tokens"])
    writer.add_token_types(fields["tokenizer.ggml.token_type"])
    writer.add_token_merges(fields["tokenizer.ggml.merges"])
    writer.add_eos_token_id(int(fields["tokenizer.ggml.eos_token_id"]))
    writer.add_pad_token_id(int(fields.get("tokenizer.ggml.padding_token_id", fields["tokenizer.ggml.eos_token_id"])))
    if "tokenizer.ggml.bos_token_id" in fields:
        writer.add_bos_token_id(int(fields["tokenizer.ggml.bos_token_id"]))
    writer.add_add_bos_token(bool(fields.get("tokenizer.ggml.add_bos_token", False)))
    if "tokenizer.chat_template" in fields:
        writer.add_chat_template(fields["tokenizer.chat_template"])


def write(path: Path, tokenizer_from: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_name("Qwen2.5-1.5B-shaped random weights")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(32768)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(1e6)
    copy_tokenizer(writer, tokenizer_from)

    def matrix(name: str, qtype: Q, rows: int, cols: int) -> None:
        writer.add_tensor(name, random_blocks(rng, qtype, rows, cols), raw_dtype=qtype)

    def vector(name: str, n: int, center: float, spread: float) -> None:
        writer.add_tensor(name, (center + spread * rng.standard_normal(n)).astype(np.float32))

    matrix("token_embd.weight", Q.Q6_K, VOCAB, HIDDEN)
    vector("output_norm.weight", HIDDEN, 1.0, 0.05)
    kv = KV_HEADS * HEAD_DIM
    for i in range(LAYERS):
        b = f"blk.{i}."
        wide = Q.Q6_K if more_bits(i) else Q.Q4_K
        vector(b + "attn_norm.weight", HIDDEN, 1.0, 0.05)
        vector(b + "ffn_norm.weight", HIDDEN, 1.0, 0.05)
        matrix(b + "attn_q.weight", Q.Q4_K, HIDDEN, HIDDEN)
        matrix(b + "attn_k.weight", Q.Q4_K, kv, HIDDEN)
        matrix(b + "attn_v.weight", wide, kv, HIDDEN)
        for name, n in (("attn_q", HIDDEN), ("attn_k", kv), ("attn_v", kv)):
            vector(b + name + ".bias", n, 0.0, 0.02)
        matrix(b + "attn_output.weight", Q.Q4_K, HIDDEN, HIDDEN)
        matrix(b + "ffn_gate.weight", Q.Q4_K, FFN, HIDDEN)
        matrix(b + "ffn_up.weight", Q.Q4_K, FFN, HIDDEN)
        matrix(b + "ffn_down.weight", wide, HIDDEN, FFN)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--tokenizer-from", type=Path, default=None, help="a Qwen2.5 GGUF (default: the 0.5B from PyPI)")
    args = parser.parse_args()
    print(write(args.out, args.tokenizer_from or qwen_05b()))


if __name__ == "__main__":
    main()
