"""Read a Hugging Face model folder into the reference's :class:`RefConfig` and :class:`Weights`.

Written from the transformers definitions of each ``model_type`` (``llama``, ``mistral``,
``qwen2``, ``gemma3_text``, ``phi3``): HF weight names, ``rotate_half`` RoPE, Gemma's
``x * (1 + w)`` norms and ``sqrt(hidden)`` embedding scale, Phi-3's fused ``qkv_proj`` and
``gate_up_proj`` (gate first). Both the 4.x config spelling (``rope_theta``, ``rope_scaling``,
``rope_local_base_freq``) and the 5.x one (``rope_parameters``, nested per layer type for
Gemma 3) are read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file

from .numpy_forward import (
    Array,
    LayerWeights,
    LongRopeMode,
    RefConfig,
    RopeSpec,
    Weights,
    default_inv_freq,
)

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "gemma3_text", "phi3")

# transformers' default for ``tie_word_embeddings`` per model type.
_TIED_BY_DEFAULT = {
    "llama": False,
    "mistral": False,
    "qwen2": False,
    "gemma3_text": True,
    "phi3": False,
}


def read_hf_folder(folder: Path, longrope: LongRopeMode = "dynamic") -> tuple[RefConfig, Weights]:
    cfg = json.loads((folder / "config.json").read_text())
    model_type = cfg.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"model_type {model_type!r} in {folder / 'config.json'} is not one the reference "
            f"knows; expected one of {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    tensors = read_safetensors(folder)
    config = _config(cfg, model_type, longrope)
    return config, _weights(tensors, cfg, config, model_type)


# -- tensors ---------------------------------------------------------------------------------


def read_safetensors(folder: Path) -> dict[str, Array]:
    """Every tensor of every ``*.safetensors`` file in ``folder``, as float32 numpy arrays."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors file in {folder}")
    tensors: dict[str, Array] = {}
    for path in files:
        tensors.update(_read_one(path))
    return tensors


def _read_one(path: Path) -> dict[str, Array]:
    with path.open("rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_len))
    if not any(isinstance(v, dict) and v.get("dtype") == "BF16" for v in header.values()):
        return {k: v.astype(np.float32) for k, v in load_file(str(path)).items()}
    # numpy has no bfloat16: widen the 16 stored bits into the top half of a float32.
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_len)
    out: dict[str, Array] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = np.asarray(data[start:end])
        if info["dtype"] == "BF16":
            bits = raw.view(np.uint16).astype(np.uint32) << 16
            out[name] = bits.view(np.float32).reshape(info["shape"])
        else:
            dtype = {"F32": np.float32, "F16": np.float16, "F64": np.float64}[info["dtype"]]
            out[name] = raw.view(dtype).reshape(info["shape"]).astype(np.float32)
    return out


# -- config ----------------------------------------------------------------------------------


def _config(cfg: dict[str, Any], model_type: str, longrope: LongRopeMode) -> RefConfig:
    hidden = int(cfg["hidden_size"])
    heads = int(cfg["num_attention_heads"])
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    layers = int(cfg["num_hidden_layers"])
    gemma = model_type == "gemma3_text"

    layer_types = _layer_types(cfg, model_type, layers)
    sliding_window = cfg.get("sliding_window") if "sliding_attention" in layer_types else None
    rope_params = _rope_parameters(cfg, model_type)
    rope = _rope(cfg, rope_params["full_attention"], head_dim, longrope)
    rope_local = _rope(cfg, rope_params["sliding_attention"], head_dim, longrope) if gemma else None

    scalar = cfg.get("query_pre_attn_scalar", 256) if gemma else None
    return RefConfig(
        architecture=model_type,
        vocab_size=int(cfg["vocab_size"]),
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
        head_dim=head_dim,
        norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        rope=rope,
        rope_local=rope_local,
        activation=_activation(cfg.get("hidden_activation") or cfg.get("hidden_act") or "silu"),
        norm_offset=1.0 if gemma else 0.0,
        embed_scale=math.sqrt(hidden) if gemma else 1.0,
        query_scale=float(scalar) ** -0.5 if scalar is not None else None,
        sliding_window=int(sliding_window) if sliding_window is not None else None,
        sliding_layers=tuple(t == "sliding_attention" for t in layer_types),
        attn_softcap=cfg.get("attn_logit_softcapping") if gemma else None,
        final_softcap=cfg.get("final_logit_softcapping") if gemma else None,
    )


def _activation(name: str) -> Any:
    if name == "silu":
        return "silu"
    if name in ("gelu_pytorch_tanh", "gelu_tanh"):
        return "gelu_tanh"
    raise ValueError(
        f"activation {name!r} is not one the reference knows (silu, gelu_pytorch_tanh)"
    )


def _layer_types(cfg: dict[str, Any], model_type: str, layers: int) -> list[str]:
    """``sliding_attention`` / ``full_attention`` per layer, as each config class derives it."""
    if cfg.get("layer_types"):
        return list(cfg["layer_types"])
    if model_type == "gemma3_text":
        pattern = int(cfg.get("sliding_window_pattern", 6))
        return [
            "sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(layers)
        ]
    window = cfg.get("sliding_window")
    if model_type == "qwen2":
        if not cfg.get("use_sliding_window", False) or window is None:
            return ["full_attention"] * layers
        first = int(cfg.get("max_window_layers", 28))
        return ["sliding_attention" if i >= first else "full_attention" for i in range(layers)]
    if model_type in ("mistral", "phi3") and window is not None:
        return ["sliding_attention"] * layers
    return ["full_attention"] * layers


def _rope_parameters(cfg: dict[str, Any], model_type: str) -> dict[str, dict[str, Any]]:
    """RoPE parameters for ``full_attention`` and ``sliding_attention`` layers."""
    params = cfg.get("rope_parameters")
    if isinstance(params, dict) and "full_attention" in params:  # 5.x, nested per layer type
        full = dict(params["full_attention"] or {})
        local = dict(params.get("sliding_attention") or {})
    else:
        full = dict(params or cfg.get("rope_scaling") or {})
        full.setdefault(
            "rope_theta", cfg.get("rope_theta", 1e6 if model_type == "gemma3_text" else 1e4)
        )
        local = {"rope_theta": cfg.get("rope_local_base_freq", 1e4)}
    full.setdefault("rope_type", full.get("type", "default"))
    full.setdefault("rope_theta", 1e6 if model_type == "gemma3_text" else 1e4)
    local.setdefault("rope_type", local.get("type", "default"))
    local.setdefault("rope_theta", 1e4)
    for p in (full, local):
        p.setdefault("partial_rotary_factor", cfg.get("partial_rotary_factor", 1.0))
    return {"full_attention": full, "sliding_attention": local}


def _rope(
    cfg: dict[str, Any], p: dict[str, Any], head_dim: int, longrope: LongRopeMode
) -> RopeSpec:
    rotary_dim = int(head_dim * float(p["partial_rotary_factor"]))
    base = default_inv_freq(float(p["rope_theta"]), rotary_dim)
    kind = p["rope_type"]
    if kind == "default":
        return RopeSpec(inv_freq=base, rotary_dim=rotary_dim)
    if kind == "linear":
        return RopeSpec(inv_freq=base / float(p["factor"]), rotary_dim=rotary_dim)
    if kind == "llama3":
        return RopeSpec(inv_freq=_llama3_inv_freq(base, p), rotary_dim=rotary_dim)
    if kind in ("longrope", "su"):
        original = int(
            cfg.get("original_max_position_embeddings") or p["original_max_position_embeddings"]
        )
        factor = p.get("factor") or cfg["max_position_embeddings"] / original
        mscale = p.get("attention_factor")
        if mscale is None:
            mscale = math.sqrt(1 + math.log(factor) / math.log(original)) if factor > 1.0 else 1.0
        return RopeSpec(
            inv_freq=base / np.asarray(p["short_factor"], dtype=np.float64),
            long_inv_freq=base / np.asarray(p["long_factor"], dtype=np.float64),
            original_context=original,
            mscale=float(mscale),
            rotary_dim=rotary_dim,
            longrope_mode=longrope,
        )
    raise ValueError(
        f"rope type {kind!r} is not one the reference knows (default, linear, llama3, longrope)"
    )


def _llama3_inv_freq(inv_freq: Array, p: dict[str, Any]) -> Array:
    """Llama 3.1 scaling: long wavelengths slowed by ``factor``, short kept, a ramp between."""
    factor = float(p["factor"])
    low, high = float(p.get("low_freq_factor", 1.0)), float(p.get("high_freq_factor", 4.0))
    old_context = float(p["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv_freq
    smooth = (old_context / wavelen - low) / (high - low)
    ramp = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    out = np.where(wavelen > old_context / low, inv_freq / factor, inv_freq)
    medium = (wavelen >= old_context / high) & (wavelen <= old_context / low)
    return np.where(medium, ramp, out)


# -- weights ---------------------------------------------------------------------------------


def _weights(
    t: dict[str, Array], cfg: dict[str, Any], config: RefConfig, model_type: str
) -> Weights:
    def get(name: str) -> Array:
        if name not in t:
            raise KeyError(f"tensor {name!r} missing from the safetensors files")
        return t[name]

    layers = []
    q_rows = config.num_heads * config.head_dim
    kv_rows = config.num_kv_heads * config.head_dim
    for i in range(config.num_layers):
        p = f"model.layers.{i}."
        if model_type == "phi3":
            qkv = get(p + "self_attn.qkv_proj.weight")
            wq, wk, wv = np.split(qkv, [q_rows, q_rows + kv_rows], axis=0)
            w_gate, w_up = np.split(get(p + "mlp.gate_up_proj.weight"), 2, axis=0)
        else:
            wq, wk, wv = (get(p + f"self_attn.{n}_proj.weight") for n in "qkv")
            w_gate, w_up = get(p + "mlp.gate_proj.weight"), get(p + "mlp.up_proj.weight")
        gemma = model_type == "gemma3_text"
        layers.append(
            LayerWeights(
                attn_norm=get(p + "input_layernorm.weight"),
                wq=wq,
                wk=wk,
                wv=wv,
                wo=get(p + "self_attn.o_proj.weight"),
                bq=t.get(p + "self_attn.q_proj.bias"),
                bk=t.get(p + "self_attn.k_proj.bias"),
                bv=t.get(p + "self_attn.v_proj.bias"),
                bo=t.get(p + "self_attn.o_proj.bias"),
                q_norm=get(p + "self_attn.q_norm.weight") if gemma else None,
                k_norm=get(p + "self_attn.k_norm.weight") if gemma else None,
                # Gemma's post_attention_layernorm follows attention; elsewhere it precedes the MLP.
                post_attn_norm=get(p + "post_attention_layernorm.weight") if gemma else None,
                ffn_norm=get(
                    p
                    + (
                        "pre_feedforward_layernorm.weight"
                        if gemma
                        else "post_attention_layernorm.weight"
                    )
                ),
                post_ffn_norm=get(p + "post_feedforward_layernorm.weight") if gemma else None,
                w_gate=w_gate,
                w_up=w_up,
                w_down=get(p + "mlp.down_proj.weight"),
            )
        )
    embed = get("model.embed_tokens.weight")
    tied = cfg.get("tie_word_embeddings", _TIED_BY_DEFAULT[model_type])
    lm_head = embed if tied else get("lm_head.weight")
    return Weights(embed=embed, layers=layers, final_norm=get("model.norm.weight"), lm_head=lm_head)
