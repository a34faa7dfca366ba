"""``pocketlm export``: source model -> self-describing ONNX model folder.

Steps: read the source (GGUF or HF folder) -> build the graph -> write model.onnx,
tokenizer.json, pocketlm.json and the export report into a temporary folder -> load the
graph once with onnxruntime as a smoke test -> move the folder into place.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from pocketlm_runtime.tokenizer import Tokenizer

from . import quality
from .atomic import check_destination, staged_folder
from .default_model import default_model_path
from .end_tokens import end_of_generation_ids, token_texts
from .errors import ExportError
from .graph import DecoderGraph, FloatCodec, set_logits_positions
from .io_names import GraphNames
from .lora import merge_lora
from .quantize import MODES, QuantOptions, codec_for, has_exact_blocks, session_config, validate
from .report import write_report
from .sources import SourceModel, load_source

ONNX_FILE = "model.onnx"
EXTERNAL_DATA_FILE = "model.onnx.data"
# The quality gate and the smoke test widen quantized weights to float32 in their sessions,
# as runtimes do, only while that stays under this many bytes (see check_session_config).
CHECK_WIDEN_LIMIT = 400_000_000
log = logging.getLogger("pocketlm")


@dataclass
class ExportOptions:
    quant: str = "fp32"  # a mode of pocketlm_export.quantize, or "auto"
    logits: str = "last"  # "last" or "all"
    progress: bool = True
    force: bool = False
    block_size: int = 32
    symmetric: bool = False
    accuracy_level: int = 0
    layout: str = "nbits"  # "nbits" (MatMulNBits, what the page's CPU engine reads) or "dq"
    allow_quality_loss: bool = False
    lora: Path | None = None  # a PEFT LoRA adapter folder merged before quantization


@dataclass
class ExportResult:
    out: Path
    config: dict[str, Any]
    report: dict[str, Any] = field(default_factory=dict)


def model_json(src: SourceModel, quant: str, logits: str,
               runtime_config: dict[str, str], export_options: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg = src.config
    return {
        "format": "pocketlm-model",
        "format_version": 1,
        "name": cfg.name,
        "architecture": cfg.architecture,
        "model_file": ONNX_FILE,
        "external_data": EXTERNAL_DATA_FILE,
        "quantization": quant,
        "session_config": runtime_config,
        "context_length": cfg.context_length,
        "vocab_size": cfg.vocab_size,
        "logits": logits,
        "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask", "position_ids": "position_ids"},
        "outputs": {"logits": "logits"},
        "kv_cache": {
            "num_layers": cfg.num_layers, "num_kv_heads": cfg.num_kv_heads,
            "head_dim": cfg.head_dim, "dtype": "float32",
            **GraphNames(cfg.num_layers).kv_config(),
        },
        "bos_token_id": src.bos_token_id,
        "add_bos_token": src.add_bos_token,
        # The end-of-generation set (end_tokens.py): the model's own eos first.
        "eos_token_ids": end_of_generation_ids(src.eos_token_ids, src.tokenizer),
        "chat_template": src.chat_template,
        "chat_templates": src.chat_templates,
        "source": src.source,
        "export_options": export_options or {},
        "model_config": cfg.to_json(),
    }


def count_parameters(src: SourceModel) -> int:
    total = 0
    for weight in src.weights.values():
        n = 1
        for dim in weight.shape:
            n *= dim
        total += n
    return total


def save_model(model: onnx.ModelProto, folder: Path) -> dict[str, dict[str, Any]]:
    """Write model.onnx (the graph), whose weights are already in model.onnx.data; return
    the index of the data file (:func:`tensor_index`).

    The graph builder streams every weight into the data file as it is made, however small
    (norms, biases, RoPE tables too), each at a 64-byte-aligned offset (see
    :mod:`pocketlm_export.onnx_builder`): protobuf cannot hold a graph past 2 GB,
    onnxruntime-web keeps one copy fewer of external weights while it loads, and pocketlm's
    WebAssembly engine reads the weights straight from the data file's bytes. Integer
    constants (Reshape shapes, ReduceSum axes) stay in the graph: onnxruntime's shape
    inference must read them while it loads the graph.
    """
    try:
        onnx.save_model(model, folder / ONNX_FILE)
    except OSError as exc:
        raise ExportError(f"cannot write the model into {folder} ({exc.strerror}); free disk space or choose another -o") from None
    (folder / EXTERNAL_DATA_FILE).touch()
    (folder / EXTERNAL_DATA_FILE).chmod(0o644)
    return tensor_index(model)


def tensor_index(model: onnx.ModelProto) -> dict[str, dict[str, Any]]:
    """Where each initializer lies in model.onnx.data, read back from the saved graph's
    ``external_data`` entries (ONNX external-data spec: ``location``, ``offset``, ``length``).

    Returns ``{name: {"offset": bytes, "length": bytes, "dtype": numpy name, "shape": [...]}}``
    in file order; dtype is the ONNX element type's numpy name ("float32", "float16",
    "uint8", ...). Initializers kept inside the graph (integer constants) are not listed.
    """
    index: dict[str, dict[str, Any]] = {}
    for tensor in model.graph.initializer:
        entries = {e.key: e.value for e in tensor.external_data}
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue  # an integer constant of the graph's own shape arithmetic
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        index[tensor.name] = {"offset": int(entries["offset"]), "length": int(entries["length"]),
                              "dtype": str(dtype), "shape": [int(d) for d in tensor.dims]}
    return dict(sorted(index.items(), key=lambda item: item[1]["offset"]))


def build_into(folder: Path, src: SourceModel, codec: FloatCodec | None, progress: bool) -> Path:
    """Build the graph (logits for every position) into ``folder``; returns model.onnx's path."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        model = DecoderGraph(src, codec=codec, progress=progress, last_logits=False,
                             data_file=folder / EXTERNAL_DATA_FILE).build()
    except OSError as exc:
        raise ExportError(f"cannot write the model into {folder} ({exc.strerror}); free disk space or choose another -o") from None
    save_model(model, folder)
    src.release_pages()
    return folder / ONNX_FILE


def set_logits_in_file(path: Path, last: bool) -> None:
    """Rewrite the graph file's logits positions (its weights stay where they are)."""
    model = onnx.load(str(path), load_external_data=False)
    set_logits_positions(model, last=last)
    onnx.save_model(model, path)


def smoke_test(folder: Path) -> None:
    """Load the graph with onnxruntime and decode one token, so a broken export never lands.

    Weights are widened to float32 at load, as runtimes do, unless that would pass
    :data:`CHECK_WIDEN_LIMIT` (counted from the graph's initializers)."""
    from pocketlm_runtime.native import NativeSession, read_info

    info = read_info(folder)
    graph = onnx.load(str(folder / info.model_file), load_external_data=False).graph
    values = sum(math.prod(t.dims) for t in graph.initializer)
    if 4 * values > CHECK_WIDEN_LIMIT:
        info = dataclasses.replace(info, session_config=as_stored(info.session_config))
    session = NativeSession(folder / info.model_file, info, threads=1)
    feeds = {"input_ids": session.int64([0], (1, 1)), "attention_mask": session.int64([1], (1, 1)),
             "position_ids": session.int64([0], (1, 1))}
    feeds.update({name: session.empty_kv() for name in info.kv.past_names()})
    session.run(feeds)


def candidate_modes(src: SourceModel, options: ExportOptions) -> list[str]:
    """The modes to try, smallest first; ``auto`` keeps the first that passes the gate.

    ``auto`` never rounds a weight twice where it can help it: a GGUF whose matrices are
    Q4_0 / Q4_1 / Q5_0 / Q8_0 or K-quant blocks exports their values unchanged (``exact``).
    Other sources (float weights, Q5_1) try ``mixed`` (4-bit matrices, 8-bit embedding/head), then ``q8``,
    then ``fp16``; each must stay within +2% perplexity of the source.
    """
    if options.quant != "auto":
        return [options.quant]
    if has_exact_blocks(src):
        return ["exact", "q8", "fp16"]
    return ["mixed", "q8", "fp16"]


def quant_options(options: ExportOptions, mode: str) -> QuantOptions:
    return QuantOptions(mode=mode, block_size=options.block_size, symmetric=options.symmetric,
                        accuracy_level=options.accuracy_level, layout=options.layout)


def check_session_config(src: SourceModel, config: dict[str, str]) -> dict[str, str]:
    """The session settings the gate and the smoke test run a graph with: the runtimes'
    own, unless widening every weight to float32 at load would pass
    :data:`CHECK_WIDEN_LIMIT`; then the blocks stay as stored in the session (dequantized
    by each step) and the report says so."""
    if config.get("session.disable_quant_qdq") == "1" and 4 * count_parameters(src) > CHECK_WIDEN_LIMIT:
        return as_stored(config)
    return config


def as_stored(config: dict[str, str]) -> dict[str, str]:
    """Session settings that keep quantized weights as stored: no widening at load, and
    float32 arithmetic in the MatMulNBits nodes onnxruntime fuses them into (accuracy
    level 0), so the results stay those of the float32 weights' values."""
    kept = {k: v for k, v in config.items() if k != "session.disable_quant_qdq"}
    return {**kept, "session.qdq_matmulnbits_accuracy_level": "0"}


def choose_model(src: SourceModel, options: ExportOptions, stage: Path) -> tuple[str, dict[str, Any]]:
    """Build the graph for each candidate mode until one passes the quality gate; the chosen
    graph's files land in ``stage``."""
    modes = candidate_modes(src, options)
    for mode in modes:
        validate(quant_options(options, mode), src)
    if modes == ["fp32"]:
        build_into(stage, src, None, options.progress)
        return "fp32", {}
    tokenizer = Tokenizer.from_str(json.dumps(src.tokenizer))
    text_ids = tokenizer.encode(quality.eval_text(), add_special_tokens=False)
    prompts = [tokenizer.encode(p, add_special_tokens=False) for p in quality.GREEDY_PROMPTS]
    work = stage / ".gate"
    started = time.perf_counter()
    ref = quality.reference(src, work / "reference", text_ids, src.config.context_length)
    reference_seconds = time.perf_counter() - started
    tried: list[dict[str, Any]] = []
    try:
        for mode in modes:
            started = time.perf_counter()
            codec = codec_for(src, quant_options(options, mode))
            folder = work / mode
            path = build_into(folder, src, codec, options.progress)
            built = time.perf_counter()
            config = check_session_config(src, session_config(quant_options(options, mode)))
            result = quality.compare(mode, path, ref, text_ids, prompts, config)
            entry = result.as_dict()
            entry["requantized"] = getattr(codec, "requantized", {})
            entry["seconds"] = {"build": built - started, "gate": time.perf_counter() - built}
            tried.append(entry)
            keep = result.passed
            if not keep and options.allow_quality_loss and options.quant != "auto":
                log.warning("%s raises perplexity by %.1f%% (limit %.0f%%); kept because of --allow-quality-loss",
                            mode, 100 * result.perplexity_rise, 100 * (result.limit or 0))
                keep = True
            if keep:
                for name in (ONNX_FILE, EXTERNAL_DATA_FILE):
                    (folder / name).rename(stage / name)
                return mode, {"chosen": mode, "reference": {**ref.describe(), "seconds": reference_seconds},
                              "candidates": tried}
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        ref.layered.close()
        shutil.rmtree(work, ignore_errors=True)
    last = tried[-1]
    raise ExportError(
        f"quality gate failed: {last['mode']} raises perplexity by {100 * last['perplexity_rise']:.1f}% "
        f"(limit {100 * (last['limit'] or 0):.0f}%) against fp32; choose another --quant or pass --allow-quality-loss"
    )


def export(source: Path | None, out: Path, options: ExportOptions) -> ExportResult:
    if options.logits not in ("last", "all"):
        raise ExportError(f"--logits must be 'last' or 'all', got {options.logits!r}")
    if options.quant != "auto" and options.quant not in MODES:
        raise ExportError(f"unknown quantization mode {options.quant!r}; choose one of auto, {', '.join(MODES)}")
    check_destination(out, options.force)
    started = time.perf_counter()
    path = source if source is not None else default_model_path()
    src = load_source(path)
    if options.lora is not None:
        src.source["lora"] = merge_lora(src, options.lora)
    loaded = time.perf_counter()
    with staged_folder(out, options.force) as stage:
        mode, gate = choose_model(src, options, stage)
        set_logits_in_file(stage / ONNX_FILE, last=options.logits == "last")
        built = time.perf_counter()
        tensors = tensor_index(onnx.load(str(stage / ONNX_FILE), load_external_data=False))
        config = model_json(src, mode, options.logits, session_config(quant_options(options, mode)),
                            {"quant": options.quant, "block_size": options.block_size,
                             "symmetric": options.symmetric, "layout": options.layout,
                             "accuracy_level": options.accuracy_level})
        config["tensors"] = tensors
        (stage / "pocketlm.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (stage / "tokenizer.json").write_text(json.dumps(src.tokenizer, ensure_ascii=False), encoding="utf-8")
        saved = time.perf_counter()
        smoke_test(stage)
        checked = time.perf_counter()
        report = write_report(stage, src, config, {
            "parameters": count_parameters(src),
            "end_of_generation": [{"id": i, "text": t} for i, t in
                                  token_texts(config["eos_token_ids"], src.tokenizer).items()],
            "quality": gate,
            "accuracy_level": options.accuracy_level,
            "seconds": {"read_source": loaded - started, "build_and_gate": built - loaded,
                        "write": saved - built, "smoke_test": checked - saved,
                        "total": checked - started},
        })
    return ExportResult(out=out, config=config, report=report)
