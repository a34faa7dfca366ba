"""Where each :class:`ModelConfig` field and each weight lives in GGUF and in HF folders.

This is the one place that knows both spellings. Canonical weight names:

    embed, final_norm, lm_head,
    L{i}.attn_norm, L{i}.q, L{i}.k, L{i}.v, L{i}.o, L{i}.q_bias, L{i}.k_bias, L{i}.v_bias,
    L{i}.q_norm, L{i}.k_norm, L{i}.post_attn_norm,
    L{i}.ffn_norm, L{i}.gate, L{i}.up, L{i}.down, L{i}.post_ffn_norm

Matrices are [out, in]; norm weights are the effective multipliers.
"""

from __future__ import annotations

import re

# GGUF metadata key (after "{arch}.") -> ModelConfig field.
GGUF_KEYS: dict[str, str] = {
    "block_count": "num_layers",
    "embedding_length": "hidden_size",
    "feed_forward_length": "intermediate_size",
    "attention.head_count": "num_heads",
    "attention.head_count_kv": "num_kv_heads",
    "attention.key_length": "head_dim",
    "context_length": "context_length",
    "attention.layer_norm_rms_epsilon": "norm_eps",
    "attention.sliding_window": "sliding_window",
    "vocab_size": "vocab_size",
    "final_logit_softcapping": "final_logit_softcap",
    "attn_logit_softcapping": "attn_logit_softcap",
}

# config.json key -> ModelConfig field.
HF_KEYS: dict[str, str] = {
    "num_hidden_layers": "num_layers",
    "hidden_size": "hidden_size",
    "intermediate_size": "intermediate_size",
    "num_attention_heads": "num_heads",
    "num_key_value_heads": "num_kv_heads",
    "head_dim": "head_dim",
    "max_position_embeddings": "context_length",
    "rms_norm_eps": "norm_eps",
    "sliding_window": "sliding_window",
    "vocab_size": "vocab_size",
    "tie_word_embeddings": "tie_embeddings",
    "query_pre_attn_scalar": "query_pre_attn_scalar",
    "final_logit_softcapping": "final_logit_softcap",
    "attn_logit_softcapping": "attn_logit_softcap",
    "attention_bias": "attention_bias",
}

# GGUF tensor name -> canonical name ("{i}" is the layer). Gemma's GGUF "ffn_norm" is
# its pre-feedforward norm, the same role as Llama's.
GGUF_TENSORS: dict[str, str] = {
    "token_embd.weight": "embed",
    "output_norm.weight": "final_norm",
    "output.weight": "lm_head",
    "blk.{i}.attn_norm.weight": "L{i}.attn_norm",
    "blk.{i}.attn_q.weight": "L{i}.q",
    "blk.{i}.attn_k.weight": "L{i}.k",
    "blk.{i}.attn_v.weight": "L{i}.v",
    "blk.{i}.attn_q.bias": "L{i}.q_bias",
    "blk.{i}.attn_k.bias": "L{i}.k_bias",
    "blk.{i}.attn_v.bias": "L{i}.v_bias",
    "blk.{i}.attn_qkv.weight": "L{i}.qkv",
    "blk.{i}.attn_output.weight": "L{i}.o",
    "blk.{i}.attn_q_norm.weight": "L{i}.q_norm",
    "blk.{i}.attn_k_norm.weight": "L{i}.k_norm",
    "blk.{i}.post_attention_norm.weight": "L{i}.post_attn_norm",
    "blk.{i}.ffn_norm.weight": "L{i}.ffn_norm",
    "blk.{i}.ffn_gate.weight": "L{i}.gate",
    "blk.{i}.ffn_up.weight": "L{i}.up",  # Phi-3: gate and up packed
    "blk.{i}.ffn_down.weight": "L{i}.down",
    "blk.{i}.post_ffw_norm.weight": "L{i}.post_ffn_norm",
}

# HF tensor name -> canonical name. Llama's "post_attention_layernorm" is the norm before
# the MLP; Gemma's is a norm of the attention output (set per architecture below).
HF_TENSORS: dict[str, str] = {
    "model.embed_tokens.weight": "embed",
    "model.norm.weight": "final_norm",
    "lm_head.weight": "lm_head",
    "model.layers.{i}.input_layernorm.weight": "L{i}.attn_norm",
    "model.layers.{i}.self_attn.q_proj.weight": "L{i}.q",
    "model.layers.{i}.self_attn.k_proj.weight": "L{i}.k",
    "model.layers.{i}.self_attn.v_proj.weight": "L{i}.v",
    "model.layers.{i}.self_attn.q_proj.bias": "L{i}.q_bias",
    "model.layers.{i}.self_attn.k_proj.bias": "L{i}.k_bias",
    "model.layers.{i}.self_attn.v_proj.bias": "L{i}.v_bias",
    "model.layers.{i}.self_attn.qkv_proj.weight": "L{i}.qkv",
    "model.layers.{i}.self_attn.o_proj.weight": "L{i}.o",
    "model.layers.{i}.self_attn.q_norm.weight": "L{i}.q_norm",
    "model.layers.{i}.self_attn.k_norm.weight": "L{i}.k_norm",
    "model.layers.{i}.post_attention_layernorm.weight": "L{i}.ffn_norm",
    "model.layers.{i}.pre_feedforward_layernorm.weight": "L{i}.ffn_norm",
    "model.layers.{i}.post_feedforward_layernorm.weight": "L{i}.post_ffn_norm",
    "model.layers.{i}.mlp.gate_proj.weight": "L{i}.gate",
    "model.layers.{i}.mlp.up_proj.weight": "L{i}.up",
    "model.layers.{i}.mlp.gate_up_proj.weight": "L{i}.up",  # Phi-3: gate and up packed
    "model.layers.{i}.mlp.down_proj.weight": "L{i}.down",
}
HF_SANDWICH_OVERRIDES: dict[str, str] = {
    "model.layers.{i}.post_attention_layernorm.weight": "L{i}.post_attn_norm",
}


def _compile(table: dict[str, str]) -> list[tuple[re.Pattern[str], str]]:
    out = []
    for source, target in table.items():
        pattern = re.escape(source).replace(r"\{i\}", r"(?P<i>\d+)")
        out.append((re.compile(pattern + "$"), target))
    return out


class NameMap:
    """Translates source tensor names into canonical ones."""

    def __init__(self, table: dict[str, str]) -> None:
        self._rules = _compile(table)

    def canonical(self, name: str) -> str | None:
        for pattern, target in self._rules:
            match = pattern.match(name)
            if match:
                return target.replace("{i}", match.group("i")) if "i" in match.groupdict() else target
        return None
