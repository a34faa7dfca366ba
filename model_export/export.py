"""``pocketlm export``: source model -> self-describing ONNX model folder.

Steps: read the source (GGUF or HF folder) -> build the graph -> write model.onnx,
tokenizer.json, pocketlm.json and the export report into a temporary folder -> load the
graph once with onnxruntime as a smoke test -> move the folder into place.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
from onnx.external_data_helper import set_external_data

from pocketlm_runtime.tokenizer import Tokenizer

from . import quality
from .atomic import check_destination, staged_folder
from .default_model import default_model_path
from .end_tokens import end_of_generation_ids, token_texts
from .errors import ExportError
from .graph import DecoderGraph, set_logits_positions
from .io_names import GraphNames
from .quantize import MODES, QuantOptions, codec_for, has_exact_blocks, session_config, validate
from .report import write_report
from .sources import SourceModel, load_source

ONNX_FILE = "model.onnx"
EXTERNAL_DATA_FILE = "model.onnx.data"
# Every tensor of model.onnx.data starts at a multiple of this many bytes (a cache line).
DATA_ALIGNMENT = 64
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
    """Write model.onnx (the graph) and model.onnx.data (the weights); return the index of
    the data file (:func:`tensor_index`).

    Every weight goes to the data file, however small (norms, biases, RoPE tables too), each
    at an offset that is a multiple of :data:`DATA_ALIGNMENT`: protobuf cannot hold a graph
    past 2 GB, onnxruntime-web keeps one copy fewer of external weights while it loads, and
    pocketlm's WebAssembly engine reads the weights straight from the data file's bytes.
    Integer constants (Reshape shapes, ReduceSum axes) stay in the graph: onnxruntime's
    shape inference must read them while it loads the graph.
    """
    offset = 0
    for tensor in model.graph.initializer:
        if tensor.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32) or not tensor.HasField("raw_data"):
            continue
        offset = -(-offset // DATA_ALIGNMENT) * DATA_ALIGNMENT
        set_external_data(tensor, EXTERNAL_DATA_FILE, offset, len(tensor.raw_data))
        offset += len(tensor.raw_data)
    try:
        onnx.save_model(model, folder / ONNX_FILE)
    except OSError as exc:
        raise ExportError(f"cannot write the model into {folder} ({exc.strerror}); free disk space or choose another -o") from None
    (folder / EXTERNAL_DATA_FILE).touch()
    (folder / EXTERNAL_DATA_FILE).chmod(0o644)
    return tensor_index(onnx.load(folder / ONNX_FILE, load_external_data=False))


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


def smoke_test(folder: Path) -> None:
    """Load the graph with onnxruntime and decode one token, so a broken export never lands."""
    from pocketlm_runtime.native import NativeSession, read_info

    info = read_info(folder)
    session = NativeSession(folder / info.model_file, info, threads=1)
    feeds = {"input_ids": session.int64([0], (1, 1)), "attention_mask": session.int64([1], (1, 1)),
             "position_ids": session.int64([0], (1, 1))}
    feeds.update({name: session.empty_kv() for name in info.kv.past_names()})
    session.run(feeds)


def candidate_modes(src: SourceModel, options: ExportOptions) -> list[str]:
    """The modes to try, smallest first; ``auto`` keeps the first that passes the gate.

    ``auto`` never rounds a weight twice where it can help it: a GGUF whose matrices are
    Q4_0 / Q4_1 / Q8_0 blocks exports them unchanged (``exact``). Other sources (float
    weights, K-quants) try ``mixed`` (4-bit matrices, 8-bit embedding/head), then ``q8``,
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


def choose_model(src: SourceModel, options: ExportOptions) -> tuple[str, onnx.ModelProto, dict[str, Any]]:
    """Build the graph for each candidate mode until one passes the quality gate."""
    modes = candidate_modes(src, options)
    for mode in modes:
        validate(quant_options(options, mode), src)
    if modes == ["fp32"]:
        return "fp32", DecoderGraph(src, progress=options.progress, last_logits=False).build(), {}
    tokenizer = Tokenizer.from_str(json.dumps(src.tokenizer))
    text_ids = tokenizer.encode(quality.eval_text(), add_special_tokens=False)
    prompts = [tokenizer.encode(p, add_special_tokens=False) for p in quality.GREEDY_PROMPTS]
    ref_model = DecoderGraph(src, last_logits=False).build()
    ref = quality.reference(ref_model, text_ids, prompts, src.config.context_length)
    del ref_model
    tried: list[dict[str, Any]] = []
    for mode in modes:
        codec = codec_for(src, quant_options(options, mode))
        model = DecoderGraph(src, codec=codec, progress=options.progress, last_logits=False).build()
        result = quality.compare(mode, model, ref, text_ids, prompts, src.config.context_length,
                                 session_config(quant_options(options, mode)))
        entry = result.as_dict()
        entry["requantized"] = getattr(codec, "requantized", {})
        tried.append(entry)
        if result.passed:
            return mode, model, {"chosen": mode, "candidates": tried}
        if options.allow_quality_loss and options.quant != "auto":
            log.warning("%s raises perplexity by %.1f%% (limit %.0f%%); kept because of --allow-quality-loss",
                        mode, 100 * result.perplexity_rise, 100 * (result.limit or 0))
            return mode, model, {"chosen": mode, "candidates": tried}
        del model
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
    loaded = time.perf_counter()
    mode, model, gate = choose_model(src, options)
    set_logits_positions(model, last=options.logits == "last")
    built = time.perf_counter()
    with staged_folder(out, options.force) as stage:
        tensors = save_model(model, stage)
        del model
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
