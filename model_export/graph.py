"""Build the decoder ONNX graph directly from the weights.

Per layer: RMSNorm -> q/k/v projections (+bias) -> [q/k RMSNorm] -> RotaryEmbedding ->
GroupQueryAttention (KV cache in and out, causal, optional sliding window) -> output
projection -> [post-attention norm] -> residual + RMSNorm (one fused node) -> gated MLP ->
[post-MLP norm] -> residual. The residual add and the next norm are fused
(SkipSimplifiedLayerNormalization). ONNX Runtime contrib operators used here run on
onnxruntime's CPU EP and on onnxruntime-web (WASM and WebGPU).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from tqdm import tqdm

from .config import ModelConfig
from .io_names import GraphNames
from .onnx_builder import FLOAT, INT32, INT64, MS_DOMAIN, GraphBuilder
from .rope import cos_sin_cache
from .sources.model import SourceModel

# The first position whose logits the graph returns: -1 (the last one only) or 0 (all).
LOGITS_START = "logits_start"

class FloatCodec:
    """How weights become graph nodes; this one stores float32 (or float16) tensors.

    A codec answers three questions: a linear layer, the token embedding, and the LM head
    tied to that embedding. Quantized codecs (:mod:`pocketlm_export.quantize`) override them.
    """

    def __init__(self, source: SourceModel, dtype: type[np.floating] = np.float32) -> None:
        self.src = source
        self.dtype = np.dtype(dtype)
        self.embed_table = ""

    def stored(self, b: GraphBuilder, name: str, array: np.ndarray) -> str:
        """A float initializer; half-precision storage is widened once, at load time."""
        tensor = b.initializer(name, np.asarray(array, dtype=self.dtype))  # no copy at float32
        if self.dtype == np.float32:
            return tensor
        return b.op("Cast", [tensor], to=FLOAT, name=name + "/to_float")

    def linear(self, b: GraphBuilder, x: str, name: str) -> str:
        path = name.replace(".", "/")
        w = self.stored(b, path + "/weight", self.src.weights[name].float32_transposed())
        return b.op("MatMul", [x, w], name=path)

    def linears(self, b: GraphBuilder, x: str, names: list[str]) -> list[str]:
        """``x`` through several linear layers (q/k/v, gate/up): one MatMul over their weights
        side by side, then a Split. A decode step then runs fewer, larger nodes, which is
        what a one-token step in WASM is short of. Codecs that cannot join their weights
        return None from :meth:`joined_linear` and get one MatMul each."""
        path = joined_path(names)
        y = self.joined_linear(b, x, names, path) if len(names) > 1 else None
        if y is None:
            return [self.linear(b, x, name) for name in names]
        widths = b.const([self.src.weights[name].shape[0] for name in names], np.int64)
        return list(b.op("Split", [y, widths], outputs=len(names), axis=-1, name=path + "/split"))

    def joined_linear(self, b: GraphBuilder, x: str, names: list[str], path: str) -> str | None:
        joined = np.concatenate([self.src.float32(name).T for name in names], axis=1)
        return b.op("MatMul", [x, self.stored(b, path + "/weight", joined)], name=path)

    def embed(self, b: GraphBuilder, ids: str) -> str:
        self.embed_table = self.stored(b, "embed/weight", self.src.float32("embed"))
        return b.op("Gather", [self.embed_table, ids], name="embed", axis=0)

    def tied_head(self, b: GraphBuilder, flat: str) -> str:
        """Logits [rows, vocab] of hidden states [rows, hidden] through the embedding."""
        return b.op("Gemm", [flat, self.embed_table], name="lm_head", transB=1)


def joined_path(names: list[str]) -> str:
    """``["L0.q", "L0.k", "L0.v"]`` -> ``"L0/q_k_v"``: the node path of joined linears."""
    prefix = names[0].rsplit(".", 1)[0]
    return prefix.replace(".", "/") + "/" + "_".join(name.rsplit(".", 1)[1] for name in names)


class DecoderGraph:
    """Emits one decoder-only transformer with a KV cache."""

    def __init__(self, source: SourceModel, codec: FloatCodec | None = None,
                 kv_dtype: int = FLOAT, progress: bool = False, last_logits: bool = True,
                 data_file: Path | None = None) -> None:
        self.src = source
        self.cfg: ModelConfig = source.config
        self.spec = source.spec
        # With a data file, weights are written there as they are made (see onnx_builder).
        self.b = GraphBuilder(data_file)
        self.codec = codec or FloatCodec(source)
        self.names = GraphNames(self.cfg.num_layers)
        self.kv_dtype = kv_dtype
        self.progress = progress
        # Runtimes only sample from the last position; "all" is for evaluation.
        self.last_logits = last_logits

    # -- small pieces ---------------------------------------------------------------
    def norm_weight(self, name: str) -> str:
        return self.b.initializer(name.replace(".", "/"), self.src.float32(name))

    def rms_norm(self, x: str, name: str) -> str:
        return self.b.op("SimplifiedLayerNormalization", [x, self.norm_weight(name)],
                         name=name.replace(".", "/"), axis=-1, epsilon=self.cfg.norm_eps,
                         stash_type=1)

    def skip_rms_norm(self, x: str, skip: str, name: str) -> tuple[str, str]:
        """Returns (norm(x + skip), x + skip)."""
        path = name.replace(".", "/")
        normed, summed = self.b.unique(path + "/out"), self.b.unique(path + "/sum")
        self.b.op("SkipSimplifiedLayerNormalization", [x, skip, self.norm_weight(name)],
                  outputs=[normed, "", "", summed], domain=MS_DOMAIN, name=path,
                  epsilon=self.cfg.norm_eps)
        return normed, summed

    def head_norm(self, x: str, name: str, heads: int) -> str:
        d = self.cfg.head_dim
        split = self.b.op("Reshape", [x, self.b.const([0, 0, heads, d], np.int64)])
        normed = self.rms_norm(split, name)
        return self.b.op("Reshape", [normed, self.b.const([0, 0, heads * d], np.int64)])

    # -- blocks ---------------------------------------------------------------------
    def rope_tables(self) -> dict[bool, tuple[str, str]]:
        cfg = self.cfg
        rot = cfg.rotary_dim or cfg.head_dim
        tables = {}
        for local in (False, True):
            rope = cfg.rope_local if (local and cfg.rope_local) else cfg.rope
            cos, sin = cos_sin_cache(rope, rot, cfg.context_length)
            tag = "local" if local else "global"
            tables[local] = (self.b.initializer(f"rope/{tag}/cos", cos), self.b.initializer(f"rope/{tag}/sin", sin))
            if not cfg.rope_local:
                tables[True] = tables[False]
                break
        return tables

    def attention(self, i: int, x: str, positions: str, seqlens: str, total: str,
                  rope: tuple[str, str]) -> str:
        cfg, b = self.cfg, self.b
        q, k, v = self.codec.linears(b, x, [f"L{i}.{p}" for p in "qkv"])
        if cfg.attention_bias:
            q, k, v = (b.op("Add", [t, self.norm_weight(f"L{i}.{p}_bias")]) for t, p in zip((q, k, v), "qkv"))
        if self.spec.qk_norm:
            q = self.head_norm(q, f"L{i}.q_norm", cfg.num_heads)
            k = self.head_norm(k, f"L{i}.k_norm", cfg.num_kv_heads)
        rot_attrs: dict[str, Any] = {"interleaved": 0}
        if cfg.rotary_dim:
            rot_attrs["rotary_embedding_dim"] = cfg.rotary_dim
        q = b.op("RotaryEmbedding", [q, positions, *rope], domain=MS_DOMAIN, name=f"L{i}/rope_q",
                 num_heads=cfg.num_heads, **rot_attrs)
        k = b.op("RotaryEmbedding", [k, positions, *rope], domain=MS_DOMAIN, name=f"L{i}/rope_k",
                 num_heads=cfg.num_kv_heads, **rot_attrs)
        scale = 1.0 / math.sqrt(cfg.query_pre_attn_scalar or cfg.head_dim)
        attrs: dict[str, Any] = {"num_heads": cfg.num_heads, "kv_num_heads": cfg.num_kv_heads, "scale": scale}
        if cfg.is_sliding(i) and cfg.sliding_window:
            # A window of W: each query sees itself and the W - 1 positions before it.
            attrs["local_window_size"] = int(cfg.sliding_window)
        if cfg.attn_logit_softcap:
            attrs["softcap"] = float(cfg.attn_logit_softcap)
        past_k, past_v = self.names.past(i)
        present_k, present_v = self.names.present(i)
        out = b.unique(f"L{i}/attn/out")
        b.op("GroupQueryAttention", [q, k, v, past_k, past_v, seqlens, total],
             outputs=[out, present_k, present_v], domain=MS_DOMAIN, name=f"L{i}/attn", **attrs)
        return self.codec.linear(b, out, f"L{i}.o")

    def mlp(self, i: int, x: str) -> str:
        b = self.b
        gate, up = self.codec.linears(b, x, [f"L{i}.gate", f"L{i}.up"])
        if self.spec.activation == "gelu_tanh":
            act = b.op("FastGelu", [gate], domain=MS_DOMAIN)  # the tanh approximation
        else:
            act = b.op("Mul", [gate, b.op("Sigmoid", [gate])])
        return self.codec.linear(b, b.op("Mul", [act, up]), f"L{i}.down")

    # -- whole model ------------------------------------------------------------------
    def declare_io(self) -> None:
        cfg, b = self.cfg, self.b
        b.add_input("input_ids", INT64, ["batch_size", "sequence_length"])
        b.add_input("attention_mask", INT64, ["batch_size", "total_sequence_length"])
        b.add_input("position_ids", INT64, ["batch_size", "sequence_length"])
        kv_past = ["batch_size", cfg.num_kv_heads, "past_sequence_length", cfg.head_dim]
        kv_total = ["batch_size", cfg.num_kv_heads, "total_sequence_length", cfg.head_dim]
        for i in range(cfg.num_layers):
            for name in self.names.past(i):
                b.add_input(name, self.kv_dtype, kv_past)
        positions = 1 if self.last_logits else "sequence_length"
        b.add_output("logits", FLOAT, ["batch_size", positions, cfg.vocab_size])
        for i in range(cfg.num_layers):
            for name in self.names.present(i):
                b.add_output(name, self.kv_dtype, kv_total)

    def embed(self) -> str:
        b = self.b
        h = self.codec.embed(b, "input_ids")
        if self.spec.scale_embeddings:
            h = b.op("Mul", [h, b.const(np.float32(math.sqrt(self.cfg.hidden_size)))])
        return h

    def lm_head(self, x: str) -> str:
        cfg, b = self.cfg, self.b
        start = b.initializer(LOGITS_START, np.array([-1 if self.last_logits else 0], np.int64))
        x = b.op("Slice", [x, start, b.const([np.iinfo(np.int64).max], np.int64),
                           b.const([1], np.int64)], name="logits_positions")
        if cfg.tie_embeddings:
            flat = b.op("Reshape", [x, b.const([-1, cfg.hidden_size], np.int64)])
            logits2d = self.codec.tied_head(b, flat)
            batch_seq = b.op("Shape", [x], end=2)
            shape = b.op("Concat", [batch_seq, b.const([cfg.vocab_size], np.int64)], axis=0)
            logits = b.op("Reshape", [logits2d, shape])
        else:
            logits = self.codec.linear(b, x, "lm_head")
        if cfg.final_logit_softcap:
            cap = b.const(np.float32(cfg.final_logit_softcap))
            logits = b.op("Mul", [b.op("Tanh", [b.op("Div", [logits, cap])]), cap])
        b.op("Identity", [logits], outputs=["logits"], name="logits")
        return "logits"

    def sequence_lengths(self) -> tuple[str, str]:
        """GroupQueryAttention's ``seqlens_k`` (tokens a row holds, minus one) and
        ``total_sequence_length``, both int32, from ``attention_mask``."""
        b = self.b
        lengths = b.op("ReduceSum", ["attention_mask", b.const([1], np.int64)], keepdims=0)
        seqlens = b.op("Cast", [b.op("Sub", [lengths, b.const(np.int64(1))])], to=INT32, name="seqlens_k")
        total_len = b.op("Gather", [b.op("Shape", ["attention_mask"]), b.const(np.int64(1))], axis=0)
        return seqlens, b.op("Cast", [total_len], to=INT32, name="total_sequence_length")

    def block(self, i: int, x: str, h: str, seqlens: str, total: str,
              rope: dict[bool, tuple[str, str]]) -> tuple[str, str]:
        """Layer ``i`` on ``x`` (the normed input) and ``h`` (the residual stream): returns the
        MLP's output, not yet added to the stream, and the stream after attention."""
        attn = self.attention(i, x, "position_ids", seqlens, total, rope[self.cfg.is_sliding(i)])
        if self.spec.sandwich_norms:
            attn = self.rms_norm(attn, f"L{i}.post_attn_norm")
        x, h = self.skip_rms_norm(attn, h, f"L{i}.ffn_norm")
        out = self.mlp(i, x)
        if self.spec.sandwich_norms:
            out = self.rms_norm(out, f"L{i}.post_ffn_norm")
        return out, h

    def build(self) -> onnx.ModelProto:
        cfg, b = self.cfg, self.b
        self.declare_io()
        seqlens, total = self.sequence_lengths()
        rope = self.rope_tables()
        h = self.embed()
        x = self.rms_norm(h, "L0.attn_norm")
        layers = range(cfg.num_layers)
        for i in tqdm(layers, desc="layers", unit="layer", disable=not self.progress, leave=False):
            out, h = self.block(i, x, h, seqlens, total, rope)
            next_norm = f"L{i + 1}.attn_norm" if i + 1 < cfg.num_layers else "final_norm"
            x, h = self.skip_rms_norm(out, h, next_norm)
        self.lm_head(x)
        meta = {"pocketlm.architecture": cfg.architecture, "pocketlm.name": cfg.name}
        return b.model(f"pocketlm-{cfg.architecture}", meta)


def set_logits_positions(model: onnx.ModelProto, last: bool) -> None:
    """Switch a built graph between logits for every position and for the last one only."""
    from onnx import numpy_helper

    for i, tensor in enumerate(model.graph.initializer):
        if tensor.name == LOGITS_START:
            value = np.array([-1 if last else 0], np.int64)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(value, LOGITS_START))
            break
    else:
        raise ValueError("graph has no logits_start initializer")
    dim = next(o for o in model.graph.output if o.name == "logits").type.tensor_type.shape.dim[1]
    if last:
        dim.dim_value = 1
    else:
        dim.dim_param = "sequence_length"
