"""Check an exported model folder before anything uses it (`build`, `generate`, `chat`).

A folder is usable when (docs/model-folder.md):

1. ``pocketlm.json`` is a JSON object of the expected shape (``check_config``);
2. every file it names (``named_files``) is a regular file inside the folder: no symlink,
   no path with ``/``, ``\\`` or ``..``;
3. ``model.onnx`` parses as an ONNX model with the inputs and outputs pocketlm.json lists
   (past key/value inputs of the declared dtype, KV heads and head size), and every
   external-data reference in it points at the ``external_data`` file, inside it, with the
   byte length its shape and type imply; the data file ends where its last tensor ends
   (alignment padding between tensors is allowed, a truncated file or trailing bytes are
   not) (``check_graph``);
4. ``tokenizer.json`` builds a tokenizer whose ids fit the model's vocabulary.

Each problem raises :class:`ModelFolderError`, one line naming the file or key and the
fix. ``named_files`` is the one list of what a model folder consists of: `pocketlm build`
copies exactly these files into the site.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from pocketlm_runtime.model_info import CONFIG_FILE, FORMAT, FORMAT_VERSION, ModelInfo

from .errors import UserError

TOKENIZER_FILE: Final = "tokenizer.json"
REEXPORT: Final = "re-export the model with `pocketlm export SOURCE -o FOLDER`"
KV_DTYPES: Final = ("float32", "float16")
# Bytes per element of the ONNX tensor types a pocketlm graph stores (TensorProto.DataType).
_ELEMENT_BYTES: Final = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}
_HALF_BYTE_TYPES: Final = (21, 22)  # UINT4, INT4: two per byte


class ModelFolderError(UserError):
    """The model folder is missing, damaged or of the wrong shape; one line with the fix."""


def named_files(config: dict[str, Any]) -> list[str]:
    """The files a model folder consists of, as its (already shape-checked) pocketlm.json names them.

    pocketlm.json itself, the graph (``model_file``), its weights (``external_data``, when
    set) and ``tokenizer.json``. Extend this list when pocketlm.json gains a file key.
    """
    names = [CONFIG_FILE, str(config["model_file"]), TOKENIZER_FILE]
    if config.get("external_data"):
        names.append(str(config["external_data"]))
    return names


def validate_model_folder(folder: Path, *, check_weights: bool = True) -> ModelInfo:
    """Every check above; returns the parsed pocketlm.json. Raises ModelFolderError."""
    if not folder.is_dir():
        raise ModelFolderError(f"model folder {folder} does not exist or is not a folder; "
                               f"run `pocketlm export SOURCE -o {folder}` first")
    config_path = folder / CONFIG_FILE
    if not config_path.exists() and not config_path.is_symlink():
        raise ModelFolderError(f"{folder} has no {CONFIG_FILE}, so it is not an exported model folder; "
                               f"run `pocketlm export SOURCE -o {folder}` first")
    check_inside(folder, CONFIG_FILE)
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelFolderError(f"{config_path} is not readable JSON ({_short(exc)}); {REEXPORT}") from None
    check_config(data, str(config_path))
    for name in named_files(data):
        check_inside(folder, name)
    info = ModelInfo.from_json(data)
    if check_weights:
        check_graph(folder, info)
    check_tokenizer(folder / TOKENIZER_FILE, info)
    return info


def check_inside(folder: Path, name: str) -> Path:
    """``folder/name`` as a regular file directly inside ``folder``, not reached through a symlink."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ModelFolderError(f"{folder / CONFIG_FILE} names the file {name!r}, which is not a plain "
                               f"file name inside the folder; {REEXPORT}")
    path = folder / name
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        raise ModelFolderError(f"{folder} lacks {name}, which the model needs; {REEXPORT}") from None
    if stat.S_ISLNK(mode):
        raise ModelFolderError(f"{path} is a symbolic link; pocketlm reads only files inside the "
                               f"folder: replace it with the file itself or {REEXPORT}")
    if not stat.S_ISREG(mode):
        raise ModelFolderError(f"{path} is not a regular file; {REEXPORT}")
    return path


# ---- pocketlm.json ---------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: Any) -> bool:
    return _is_int(value) and value > 0


def _string(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _kv_template(value: Any) -> bool:
    return isinstance(value, str) and value.count("%d") == 1 and "%" not in value.replace("%d", "")


def _str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _int_list(value: Any) -> bool:
    return isinstance(value, list) and all(_is_int(x) and x >= 0 for x in value)


_Rule = tuple[str, bool, Callable[[Any], bool], str]
# (key, required, test, what it must be)
TOP_LEVEL: Final[tuple[_Rule, ...]] = (
    ("architecture", True, _string, "a non-empty string"),
    ("model_file", True, _string, "a file name"),
    ("external_data", False, lambda v: v is None or _string(v), "a file name or null"),
    ("context_length", True, _positive_int, "a positive integer"),
    ("vocab_size", True, _positive_int, "a positive integer"),
    ("kv_cache", True, lambda v: isinstance(v, dict), "an object"),
    ("name", False, lambda v: isinstance(v, str), "a string"),
    ("quantization", False, lambda v: isinstance(v, str), "a string"),
    ("eos_token_ids", False, _int_list, "a list of token ids"),
    ("bos_token_id", False, lambda v: v is None or (_is_int(v) and v >= 0), "a token id or null"),
    ("add_bos_token", False, lambda v: isinstance(v, bool), "true or false"),
    ("chat_template", False, lambda v: v is None or isinstance(v, str), "a string or null"),
    ("chat_templates", False, lambda v: v is None or _str_map(v), "an object of named templates"),
    ("inputs", False, lambda v: v is None or _str_map(v), "an object of strings"),
    ("outputs", False, _str_map, "an object of strings"),
    ("session_config", False, lambda v: v is None or _str_map(v), "an object of strings"),
)
KV_CACHE: Final[tuple[_Rule, ...]] = (
    ("num_layers", True, _positive_int, "a positive integer"),
    ("num_kv_heads", True, _positive_int, "a positive integer"),
    ("head_dim", True, _positive_int, "a positive integer"),
    ("dtype", False, lambda v: v in KV_DTYPES, f"one of {', '.join(KV_DTYPES)}"),
    ("past_key", True, _kv_template, "a name with one %d"),
    ("past_value", True, _kv_template, "a name with one %d"),
    ("present_key", True, _kv_template, "a name with one %d"),
    ("present_value", True, _kv_template, "a name with one %d"),
)


def check_config(data: Any, where: str) -> None:
    """Raise ModelFolderError unless `data` has the shape of a pocketlm.json."""
    if not isinstance(data, dict):
        raise ModelFolderError(f"{where} holds a JSON {type(data).__name__}, not an object; {REEXPORT}")
    if data.get("format") != FORMAT:
        raise ModelFolderError(f"{where} has format {data.get('format')!r}, expected {FORMAT!r}; {REEXPORT}")
    version = data.get("format_version", 1)
    if not _is_int(version) or version < 1:
        raise ModelFolderError(f"{where}: `format_version` must be a positive integer; {REEXPORT}")
    if version > FORMAT_VERSION:
        raise ModelFolderError(f"{where} has format_version {version}, newer than this pocketlm "
                               f"understands ({FORMAT_VERSION}); upgrade pocketlm")
    _check_rules(data, TOP_LEVEL, where, "")
    _check_rules(data["kv_cache"], KV_CACHE, where, "kv_cache.")
    outputs = data.get("outputs") or {"logits": "logits"}
    if "logits" not in outputs:
        raise ModelFolderError(f"{where}: `outputs` lacks `logits`; {REEXPORT}")
    ids = [*data.get("eos_token_ids", []), *([data["bos_token_id"]] if _is_int(data.get("bos_token_id")) else [])]
    too_big = [i for i in ids if i >= data["vocab_size"]]
    if too_big:
        raise ModelFolderError(f"{where}: token id {too_big[0]} in `eos_token_ids`/`bos_token_id` is not below "
                               f"`vocab_size` {data['vocab_size']}; {REEXPORT}")


def _check_rules(data: dict[str, Any], rules: tuple[_Rule, ...], where: str, prefix: str) -> None:
    for key, required, test, what in rules:
        if key not in data:
            if required:
                raise ModelFolderError(f"{where} lacks the key `{prefix}{key}` ({what}); {REEXPORT}")
            continue
        if not test(data[key]):
            raise ModelFolderError(f"{where}: `{prefix}{key}` must be {what}, not {_shown(data[key])}; "
                                   f"{REEXPORT}")


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__


# ---- graph and weights -----------------------------------------------------------------

def check_graph(folder: Path, info: ModelInfo) -> None:
    """model.onnx parses, has the declared inputs/outputs, and its external data adds up."""
    import onnx
    from google.protobuf.message import DecodeError

    path = folder / info.model_file
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFolderError(f"{path} is not a readable ONNX model ({_short(exc)}); {REEXPORT}") from None
    graph = model.graph
    inputs = {value.name for value in graph.input}
    outputs = {value.name for value in graph.output}
    wanted_in = [*info.inputs.values(), *info.kv.past_names()]
    wanted_out = [info.outputs.get("logits", "logits"), *info.kv.present_names()]
    missing = [n for n in wanted_in if n not in inputs] + [n for n in wanted_out if n not in outputs]
    if not graph.node or missing or not any(op.domain in ("", "ai.onnx") for op in model.opset_import):
        what = f"lacks {missing[0]!r}, which {CONFIG_FILE} declares" if missing else "has no nodes or opset"
        raise ModelFolderError(f"{path} {what}; the graph is damaged or from another export: {REEXPORT}")
    check_kv_inputs(path, info, [value for value in graph.input if value.name in set(info.kv.past_names())])
    check_external_data(folder, info, _external_tensors(model))


_KV_ELEMENT_TYPES: Final = {"float32": 1, "float16": 10}  # TensorProto.FLOAT, FLOAT16


def check_kv_inputs(path: Path, info: ModelInfo, past: list[Any]) -> None:
    """Past key/value inputs have the element type and the fixed sizes `kv_cache` declares
    ([batch, kv_heads, positions, head_dim])."""
    for value in past:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        wanted = (_KV_ELEMENT_TYPES[info.kv.dtype], 4, info.kv.num_kv_heads, info.kv.head_dim)
        found = (tensor.elem_type, len(dims), dims[1] if len(dims) == 4 else None,
                 dims[3] if len(dims) == 4 else None)
        mismatch = [name for name, want, got in zip(("dtype", "rank", "num_kv_heads", "head_dim"), wanted, found)
                    if got is not None and got != want]
        if mismatch:
            raise ModelFolderError(f"{path}: input {value.name!r} does not match `kv_cache.{mismatch[0]}` in "
                                   f"{CONFIG_FILE}; the graph is from another export: {REEXPORT}")


def _external_tensors(model: Any) -> list[Any]:
    """Every TensorProto in the graph whose bytes live in an external file."""
    import onnx

    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR:
                tensors.append(attribute.t)
    return [t for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL]


def _expected_bytes(tensor: Any) -> int | None:
    count = math.prod(int(d) for d in tensor.dims)
    if tensor.data_type in _HALF_BYTE_TYPES:
        return (count + 1) // 2
    size = _ELEMENT_BYTES.get(int(tensor.data_type))
    return None if size is None else count * size


def check_external_data(folder: Path, info: ModelInfo, tensors: list[Any]) -> None:
    """Each external reference names `external_data` and fits in it; the file has no bytes past
    its last tensor (the exporter pads between tensors to align their offsets)."""
    declared = info.raw.get("external_data")
    where = folder / info.model_file
    if tensors and not declared:
        raise ModelFolderError(f"{where} keeps weights in an external file but {CONFIG_FILE} names no "
                               f"`external_data`; {REEXPORT}")
    if not declared:
        return
    data_path = folder / str(declared)
    size = data_path.stat().st_size
    end = 0
    for tensor in tensors:
        fields = {entry.key: entry.value for entry in tensor.external_data}
        location = fields.get("location", "")
        if location != declared:
            raise ModelFolderError(f"{where}: tensor {tensor.name!r} reads its bytes from {location!r}, not "
                                   f"from {declared!r} as {CONFIG_FILE} says; {REEXPORT}")
        try:
            offset, length = int(fields.get("offset", "0")), int(fields["length"])
        except (KeyError, ValueError):
            raise ModelFolderError(f"{where}: tensor {tensor.name!r} has no valid offset/length for its "
                                   f"external data; {REEXPORT}") from None
        expected = _expected_bytes(tensor)
        if offset < 0 or length < 0 or (expected is not None and length != expected):
            raise ModelFolderError(f"{where}: tensor {tensor.name!r} declares {length} bytes at offset "
                                   f"{offset}, its shape needs {expected}; {REEXPORT}")
        if offset + length > size:
            raise ModelFolderError(f"{data_path} is truncated: tensor {tensor.name!r} needs bytes up to "
                                   f"{offset + length} but the file has {size}; {REEXPORT}")
        end = max(end, offset + length)
    if size != end:
        raise ModelFolderError(f"{data_path} has {size} bytes but the graph's tensors use {end}; the file "
                               f"does not belong to this graph: {REEXPORT}")


# ---- tokenizer -------------------------------------------------------------------------

def check_tokenizer(path: Path, info: ModelInfo) -> None:
    """tokenizer.json builds a tokenizer with ids below the model's vocab_size."""
    from pocketlm_runtime.tokenizer import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFolderError(f"cannot read {path} ({_short(exc)}); {REEXPORT}") from None
    except Exception as exc:  # noqa: BLE001 - any malformed spec: JSON, KeyError, TypeError, ValueError ...
        raise ModelFolderError(f"{path} is not a usable tokenizer ({type(exc).__name__}: {_short(exc)}); "
                               f"{REEXPORT}") from None
    if tokenizer.model_vocab_size == 0:
        raise ModelFolderError(f"{path} has an empty vocabulary (`model.vocab`); {REEXPORT}")
    if tokenizer.vocab_size > info.vocab_size:
        raise ModelFolderError(f"{path} has {tokenizer.vocab_size} tokens, more than the model's vocab_size "
                               f"{info.vocab_size}; the tokenizer belongs to another model: {REEXPORT}")
