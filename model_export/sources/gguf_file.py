"""Read a GGUF file: metadata -> ModelConfig, tensors -> canonical weights, tokenizer."""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import quant_shape_to_byte_shape

from ..architectures import ArchSpec, spec_for_gguf
from ..config import ModelConfig, RopeConfig
from ..errors import ExportError
from ..gguf_header import read_layout
from ..tokenizer_json import tokenizer_json_from_gguf
from .checks import check_fields, check_rope_factors, number
from .fields import GGUF_KEYS, GGUF_TENSORS, NameMap
from .model import (
    SourceModel,
    check_shapes,
    mapping_of,
    post_processor_adds_bos,
    sha256_of,
    split_fused,
)
from .weights import Weight

GGUF_MAGIC = b"GGUF"
SUPPORTED_TYPES = {
    GGMLQuantizationType.F32,
    GGMLQuantizationType.F16,
    GGMLQuantizationType.BF16,
    GGMLQuantizationType.Q4_0,
    GGMLQuantizationType.Q4_1,
    GGMLQuantizationType.Q5_0,
    GGMLQuantizationType.Q5_1,
    GGMLQuantizationType.Q8_0,
    GGMLQuantizationType.Q2_K,
    GGMLQuantizationType.Q3_K,
    GGMLQuantizationType.Q4_K,
    GGMLQuantizationType.Q5_K,
    GGMLQuantizationType.Q6_K,
}
# llama.cpp's gguf-split (and gguf-py's writer) name the parts of one model like this;
# every part is a GGUF file, the first one holds the metadata.
SPLIT_NAME = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")
SPLIT_COUNT_KEY = "split.count"
SPLIT_TENSORS_KEY = "split.tensors.count"
# Gemma 3: every sixth layer attends globally, the rest through the sliding window.
GEMMA3_GLOBAL_EVERY = 6
GEMMA3_LOCAL_THETA = 10000.0


@dataclass(frozen=True)
class GGUFTensor:
    """A tensor of a GGUF file: ``data`` is a view of the file's memory map (nothing read
    yet) shaped as gguf-py's reader shapes it: float types as their dtype with the dims
    outermost first, block types as uint8 ``[rows, row bytes]``."""

    name: str
    dims: tuple[int, ...]  # innermost first, as stored
    tensor_type: GGMLQuantizationType
    data: np.ndarray


@dataclass
class GGUFFile:
    metadata: dict[str, Any]
    tensors: list[GGUFTensor]
    mapping: np.memmap


FLOAT_DTYPES: dict[GGMLQuantizationType, type[np.generic]] = {
    GGMLQuantizationType.F32: np.float32, GGMLQuantizationType.F16: np.float16,
}


def open_reader(path: Path) -> GGUFFile:
    """Open a GGUF file (its header read with :func:`gguf_header.read_layout`, its tensors as
    views of one memory map), turning every way it can be malformed into one clear line."""
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ExportError(f"cannot read {path}: {exc.strerror}; check the path and permissions") from None
    if magic != GGUF_MAGIC:
        raise ExportError(
            f"{path} is not a GGUF file (starts with {magic!r}, expected b'GGUF'); "
            "pass a .gguf model file or a Hugging Face model folder"
        )
    try:
        layout = read_layout(path)
    except (UnicodeDecodeError, struct.error, OverflowError, MemoryError) as exc:
        raise ExportError(f"{path} is truncated or corrupt ({type(exc).__name__}); download or convert it again") from None
    size = path.stat().st_size
    mapping = np.memmap(path, dtype=np.uint8, mode="r")
    tensors: list[GGUFTensor] = []
    seen: set[str] = set()
    for info in layout.tensors:
        try:
            qtype = GGMLQuantizationType(info.ggml_type)
        except ValueError:
            raise ExportError(
                f"{path} has a tensor of an unknown type ({info.ggml_type} is not a valid GGMLQuantizationType, "
                f"tensor {info.name}); re-save it with a current llama.cpp"
            ) from None
        if qtype not in SUPPORTED_TYPES:
            raise ExportError(
                f"{path}: tensor {info.name} is stored as {qtype.name}, "
                f"which pocketlm cannot read; supported: {', '.join(t.name for t in sorted(SUPPORTED_TYPES))}"
            )
        if info.name in seen:
            raise ExportError(f"{path} holds tensor {info.name} twice; the file is corrupt: download or convert it again")
        seen.add(info.name)
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        n_elems = math.prod(info.dims)
        shape = tuple(reversed(info.dims))
        if shape and shape[-1] % block_size:
            raise ExportError(f"{path}: tensor {info.name} has rows of {shape[-1]} values, not whole "
                              f"{qtype.name} blocks of {block_size}; the file is corrupt")
        n_bytes = n_elems * type_size // block_size
        start = layout.data_start + info.offset
        if start + n_bytes > size:
            raise ExportError(
                f"{path} is truncated: tensor {info.name} needs bytes up to {start + n_bytes} "
                f"but the file has {size}; download or convert it again"
            )
        raw = mapping[start:start + n_bytes]
        if qtype in FLOAT_DTYPES:
            dtype = np.dtype(FLOAT_DTYPES[qtype]).newbyteorder("<" if layout.byte_order == "<" else ">")
            data = raw.view(dtype).reshape(shape)
        else:
            data = raw.reshape(quant_shape_to_byte_shape(shape, qtype))
        tensors.append(GGUFTensor(info.name, info.dims, qtype, data))
    return GGUFFile(layout.metadata, tensors, mapping)


def _config(spec: ArchSpec, arch: str, meta: dict[str, Any], weights: dict[str, Weight], name: str) -> ModelConfig:
    values: dict[str, Any] = {}
    for key, target in GGUF_KEYS.items():
        if f"{arch}.{key}" in meta:
            values[target] = meta[f"{arch}.{key}"]
    key_of = {field: f"{arch}.{key}" for key, field in GGUF_KEYS.items()}
    needed = ["num_layers", "hidden_size", "intermediate_size", "num_heads"]
    missing = [k for k in needed if k not in values]
    if missing:
        raise ExportError(f"GGUF metadata lacks {', '.join(key_of[k] for k in missing)}; the file is incomplete: "
                          "download or convert it again")
    for field in ("intermediate_size", "num_kv_heads", "num_heads"):  # per-layer arrays: the first layer's
        if isinstance(values.get(field), list):
            values[field] = values[field][0] if values[field] else None
    values.setdefault("num_kv_heads", values["num_heads"])
    check_fields(values, key_of, "GGUF metadata")
    values.setdefault("head_dim", values["hidden_size"] // values["num_heads"])
    values.setdefault("context_length", 4096)
    values.setdefault("vocab_size", weights["embed"].shape[0])
    rot = meta.get(f"{arch}.rope.dimension_count")
    rope = RopeConfig(theta=number(meta, f"{arch}.rope.freq_base", 10000.0, "GGUF metadata"))
    scaling = meta.get(f"{arch}.rope.scaling.type")
    if scaling and scaling != "none":
        rope.scaling = str(scaling)
        rope.factor = number(meta, f"{arch}.rope.scaling.factor", 1.0, "GGUF metadata")
        orig = meta.get(f"{arch}.rope.scaling.original_context_length")
        rope.original_max_position = int(orig) if orig else None
        attn = meta.get(f"{arch}.rope.scaling.attn_factor")
        rope.attention_factor = float(attn) if attn else None
    if "rope_freqs" in weights:
        rope.freq_factors = [float(x) for x in weights.pop("rope_freqs").float32().ravel()]
    if "rope_factors_long" in weights:
        rope.scaling = "longrope"
        rope.long_factor = [float(x) for x in weights.pop("rope_factors_long").float32().ravel()]
        rope.short_factor = [float(x) for x in weights.pop("rope_factors_short").float32().ravel()]
        rope.original_max_position = int(
            meta.get(f"{arch}.rope.scaling.original_context_length", values["context_length"])
        )
    config = ModelConfig(
        architecture=spec.name,
        rope=rope,
        rotary_dim=int(rot) if rot and int(rot) != values["head_dim"] else None,
        tie_embeddings="lm_head" not in weights,
        attention_bias="L0.q_bias" in weights or "L0.qkv_bias" in weights,
        qk_norm=spec.qk_norm,
        name=name,
        **values,
    )
    check_rope_factors(config, "GGUF tensors", "rope_")
    if spec.name == "gemma3":
        config.query_pre_attn_scalar = float(config.head_dim)
        config.rope_local = RopeConfig(theta=GEMMA3_LOCAL_THETA)
        config.sliding_layers = [(i + 1) % GEMMA3_GLOBAL_EVERY != 0 for i in range(config.num_layers)]
    elif config.sliding_window:
        config.sliding_layers = [True] * config.num_layers
    return config


def _unpermute_rows(weight: Weight, heads: int) -> Weight:
    """Undo llama.cpp's q/k row order (pairs interleaved) back to halves (rotate_half)."""
    rows = weight.shape[0]
    head_dim = rows // heads
    half = head_dim // 2
    order = np.arange(rows).reshape(heads, half, 2).transpose(0, 2, 1).reshape(rows)
    return weight.take_rows(order)


def split_parts(path: Path) -> list[Path]:
    """Every part of the split GGUF that ``path`` belongs to, in order (``name-00001-of-00003.gguf``
    ...), or ``[path]`` for a whole file. Raises ExportError when a part is missing."""
    match = SPLIT_NAME.match(path.name)
    if match is None:
        return [path]
    count = int(match["count"])
    parts = [path.with_name(f"{match['stem']}-{n:05d}-of-{count:05d}.gguf") for n in range(1, count + 1)]
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise ExportError(
            f"{path.name} is one of {count} parts of a split GGUF, but {', '.join(missing[:3])} "
            f"{'is' if len(missing) == 1 else 'are'} not beside it; put every part in one folder"
        )
    return parts


def display_name(path: Path) -> str:
    """The file name without its quantization tag: ``SmolLM2-135M-Instruct.Q4_1.gguf`` ->
    ``SmolLM2-135M-Instruct`` (GGUF ``general.name`` is often a training-run label); a split
    model's part number goes too."""
    match = SPLIT_NAME.match(path.name)
    stem = match["stem"] if match else path.stem
    head, _, tag = stem.rpartition(".")
    return head if head and tag.upper().startswith(("Q", "F", "BF", "IQ")) else stem


def read_gguf(path: Path) -> SourceModel:
    """Read a GGUF file, or every part of a split one, as one model. Tensors stay in the
    files (memory-mapped views) until a later stage reads them."""
    parts = split_parts(path)
    readers = [open_reader(part) for part in parts]
    meta = readers[0].metadata
    expected_parts = int(meta.get(SPLIT_COUNT_KEY, 1))
    if expected_parts != len(parts):
        raise ExportError(
            f"{path.name} is part {int(meta.get('split.no', 0)) + 1} of a split GGUF of {expected_parts} files "
            f"but is not named like one (name-00001-of-{expected_parts:05d}.gguf); keep the parts' original names"
        )
    arch = str(meta.get("general.architecture", ""))
    spec = spec_for_gguf(arch)
    names = NameMap(GGUF_TENSORS)
    weights: dict[str, Weight] = {}
    count = 0
    for reader in readers:
        for tensor in reader.tensors:
            canonical = names.canonical(tensor.name)
            if canonical is None:
                canonical = tensor.name.removesuffix(".weight")  # rope_freqs, rope_factors_*
            shape = tuple(reversed(tensor.dims))
            weights[canonical] = Weight(shape, tensor.tensor_type, tensor.data)
            count += 1
    if SPLIT_TENSORS_KEY in meta and int(meta[SPLIT_TENSORS_KEY]) != count:
        raise ExportError(
            f"the parts of {path.name} hold {count} tensors but the first part announces "
            f"{int(meta[SPLIT_TENSORS_KEY])}; some part is from another model or incomplete"
        )
    if "embed" not in weights:
        raise ExportError(f"{path} has no token_embd.weight tensor; it is not a language model")
    config = _config(spec, arch, meta, weights, display_name(path))
    split_fused(spec, config, weights)
    if spec.gguf_qk_permuted:
        for i in range(config.num_layers):
            weights[f"L{i}.q"] = _unpermute_rows(weights[f"L{i}.q"], config.num_heads)
            weights[f"L{i}.k"] = _unpermute_rows(weights[f"L{i}.k"], config.num_kv_heads)
    check_shapes(spec, config, weights, str(path))
    tokenizer = tokenizer_json_from_gguf(meta)
    eos = [int(meta["tokenizer.ggml.eos_token_id"])] if "tokenizer.ggml.eos_token_id" in meta else []
    for extra in ("tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"):
        if extra in meta and int(meta[extra]) not in eos:
            eos.append(int(meta[extra]))
    bos = meta.get("tokenizer.ggml.bos_token_id")
    return SourceModel(
        spec=spec,
        config=config,
        weights=weights,
        tokenizer=tokenizer,
        chat_template=meta.get("tokenizer.chat_template"),
        # llama.cpp's converter writes named templates as tokenizer.chat_template.NAME.
        chat_templates={key.removeprefix("tokenizer.chat_template."): str(value) for key, value in meta.items()
                        if key.startswith("tokenizer.chat_template.")},
        bos_token_id=int(bos) if bos is not None else None,
        eos_token_ids=eos,
        add_bos_token=post_processor_adds_bos(tokenizer),
        mappings=[m for m in (mapping_of(r.mapping) for r in readers) if m is not None],
        source={"kind": "gguf", "file": parts[0].name, "parts": len(parts), "sha256": sha256_of(parts),
                "bytes": sum(p.stat().st_size for p in parts),
                **({"license": str(meta["general.license"])} if meta.get("general.license") else {})},
    )


__all__ = ["open_reader", "read_gguf"]
