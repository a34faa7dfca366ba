"""Read ``.safetensors`` files through a memory map, one sharded folder as one model.

Format (huggingface/safetensors, "format" section of its README): an unsigned 64-bit
little-endian header size N, N bytes of JSON ``{name: {"dtype", "shape", "data_offsets":
[begin, end]}, "__metadata__": {...}}``, then the tensor bytes (offsets relative to the end
of the header), little-endian, row-major. Tensors stay in the file until a stage asks for
their values, so reading a folder costs no memory per tensor; bf16 is widened to float32
only when a tensor is used (no numpy dtype exists for it).

A sharded folder (``model-00001-of-00002.safetensors`` ...) lists every tensor's shard in
``model.safetensors.index.json`` (``{"weight_map": {name: file}}``), as transformers'
``save_pretrained`` writes it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType

from ..errors import ExportError
from .weights import Weight

INDEX_FILE = "model.safetensors.index.json"
# safetensors dtype -> (numpy dtype of the stored bytes, the Weight's type)
DTYPES: dict[str, tuple[Any, GGMLQuantizationType]] = {
    "F32": (np.float32, GGMLQuantizationType.F32),
    "F16": (np.float16, GGMLQuantizationType.F16),
    "BF16": (np.uint8, GGMLQuantizationType.BF16),  # kept as raw bytes, 2 a value
}

ITEM_BYTES = {"F32": 4, "F16": 2, "BF16": 2}


def read_header(path: Path) -> tuple[int, dict[str, Any]]:
    """(offset of the tensor bytes, the JSON header) of one safetensors file."""
    try:
        with path.open("rb") as handle:
            size_bytes = handle.read(8)
            if len(size_bytes) < 8:
                raise ExportError(f"{path} is too short to be a safetensors file; download it again")
            size = int.from_bytes(size_bytes, "little")
            if size > path.stat().st_size - 8:
                raise ExportError(f"{path} is truncated or not a safetensors file (header of {size} bytes); download it again")
            header = json.loads(handle.read(size))
    except OSError as exc:
        raise ExportError(f"cannot read {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(f"{path} has a damaged safetensors header ({exc}); download it again") from None
    if not isinstance(header, dict):
        raise ExportError(f"{path} has a damaged safetensors header; download it again")
    return 8 + size, header


def read_safetensors(path: Path) -> dict[str, Weight]:
    """Every tensor of ``path`` by its stored name, as :class:`Weight` views of the file.

    Raises ExportError for a damaged file or a dtype other than F32, F16, BF16.
    """
    base, header = read_header(path)
    file_size = path.stat().st_size
    data = np.memmap(path, dtype=np.uint8, mode="r") if file_size > base else np.zeros(0, np.uint8)
    out: dict[str, Weight] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info.get("dtype")
        if dtype not in DTYPES:
            raise ExportError(
                f"{path}: tensor {name} is stored as {dtype}, which pocketlm cannot read; "
                "save the model as float32, float16 or bfloat16"
            )
        shape = tuple(int(x) for x in info["shape"])
        begin, end = (int(x) + base for x in info["data_offsets"])
        count = math.prod(shape)
        if end > file_size or end - begin != count * ITEM_BYTES[dtype]:
            raise ExportError(f"{path}: tensor {name} lies outside the file or has the wrong size; download it again")
        raw = data[begin:end]
        stored, qtype = DTYPES[dtype]
        rows = shape[0] if len(shape) > 1 else 1
        if qtype == GGMLQuantizationType.BF16:
            array = raw.reshape(rows, -1)
        else:
            array = raw.view(stored).reshape(shape)
        out[name] = Weight(shape, qtype, array)
    return out


def shard_files(folder: Path) -> list[Path]:
    """The safetensors files of a model folder: those the index names, or every
    ``*.safetensors`` when there is no index. Raises ExportError when a shard is missing."""
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
            raise ExportError(f"{index} is damaged ({exc}); download it again") from None
        if not isinstance(weight_map, dict) or not weight_map:
            raise ExportError(f"{index} has no weight_map; download it again")
        names = sorted(set(weight_map.values()))
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise ExportError(
                f"{folder} lacks {len(missing)} of the {len(names)} weight shard(s) its index lists "
                f"({', '.join(missing[:3])}); download every shard"
            )
        return [folder / n for n in names]
    return sorted(folder.glob("*.safetensors"))
