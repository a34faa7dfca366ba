"""The quality gate's float32 reference, computed a few layers at a time.

A whole float32 copy of a 1.5B model is 6 GB; the reference never holds one. The source's
weights are dequantized into float32 graph *pieces* of at most ``piece_bytes`` of weights
each (consecutive layers; the final norm and LM head form the last piece), written to disk
with their weights as external data. Each piece is loaded alone, run over every sequence
(hidden states in, hidden states out: a few MB), and released before the next one loads.
The token embedding is gathered in numpy from the stored (possibly quantized) rows, so the
vocabulary-sized table is never widened for it.

The pieces compute the same function as the exported fp32 graph (the same builder emits
their nodes); only the residual add at a piece's end is not fused with the next norm.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from .graph import DecoderGraph
from .onnx_builder import FLOAT, INT64
from .sources.model import SourceModel

HIDDEN_IN = "hidden"
HIDDEN_OUT = "hidden_out"
# Weights (as float32) of one piece: what one onnxruntime session holds at a time.
PIECE_BYTES = 1 << 30


class DecoderPiece(DecoderGraph):
    """Layers ``[start, stop)`` of the decoder from hidden states to hidden states, or the
    final norm and LM head from hidden states to logits for every position."""

    def build_piece(self, layers: range, head: bool) -> onnx.ModelProto:
        cfg, b = self.cfg, self.b
        b.add_input(HIDDEN_IN, FLOAT, ["batch_size", "sequence_length", cfg.hidden_size])
        h = HIDDEN_IN
        if len(layers):
            b.add_input("attention_mask", INT64, ["batch_size", "total_sequence_length"])
            b.add_input("position_ids", INT64, ["batch_size", "sequence_length"])
            kv_past = ["batch_size", cfg.num_kv_heads, "past_sequence_length", cfg.head_dim]
            kv_total = ["batch_size", cfg.num_kv_heads, "total_sequence_length", cfg.head_dim]
            for i in layers:
                for name in self.names.past(i):
                    b.add_input(name, FLOAT, kv_past)
            seqlens, total = self.sequence_lengths()
            rope = self.rope_tables()
            x = self.rms_norm(h, f"L{layers.start}.attn_norm")
            for i in layers:
                out, h = self.block(i, x, h, seqlens, total, rope)
                if i + 1 < layers.stop:
                    x, h = self.skip_rms_norm(out, h, f"L{i + 1}.attn_norm")
                else:
                    h = b.op("Add", [out, h], name=f"L{i}/residual")
            for i in layers:
                for name in self.names.present(i):
                    b.add_output(name, FLOAT, kv_total)
        if head:
            b.add_output("logits", FLOAT, ["batch_size", "sequence_length", cfg.vocab_size])
            if cfg.tie_embeddings:
                self.codec.embed_table = self.codec.stored(b, "embed/weight", self.src.float32("embed"))
            self.lm_head(self.rms_norm(h, "final_norm"))
        else:
            b.add_output(HIDDEN_OUT, FLOAT, ["batch_size", "sequence_length", cfg.hidden_size])
            b.op("Identity", [h], outputs=[HIDDEN_OUT], name=HIDDEN_OUT)
        return b.model(f"pocketlm-{cfg.architecture}-piece", {})


def weight_bytes(src: SourceModel, prefix: str) -> int:
    """float32 bytes of the source weights whose canonical names start with ``prefix``."""
    return sum(4 * math.prod(w.shape) for name, w in src.weights.items() if name.startswith(prefix))


def plan_pieces(src: SourceModel, piece_bytes: int = PIECE_BYTES) -> list[range]:
    """Consecutive layer ranges whose float32 weights stay under ``piece_bytes`` (at least
    one layer each)."""
    pieces: list[range] = []
    start, size = 0, 0
    for i in range(src.config.num_layers):
        layer = weight_bytes(src, f"L{i}.")
        if i > start and size + layer > piece_bytes:
            pieces.append(range(start, i))
            start, size = i, 0
        size += layer
    pieces.append(range(start, src.config.num_layers))
    return pieces


@dataclass
class Piece:
    path: Path
    layers: range
    head: bool


class LayeredReference:
    """The float32 model of ``src`` as pieces on disk under ``folder`` (deleted by
    :meth:`close`). Sequences are run without a KV cache, each in one pass."""

    def __init__(self, src: SourceModel, folder: Path, piece_bytes: int = PIECE_BYTES,
                 threads: int = 2) -> None:
        self.src = src
        self.folder = folder
        self.threads = threads
        self.pieces: list[Piece] = []
        folder.mkdir(parents=True, exist_ok=True)
        ranges = plan_pieces(src, piece_bytes)
        for n, layers in enumerate(ranges):
            self.pieces.append(self._write(f"layers{n}", layers, head=False))
        self.pieces.append(self._write("head", range(0), head=True))

    def _write(self, name: str, layers: range, head: bool) -> Piece:
        path = self.folder / f"{name}.onnx"
        model = DecoderPiece(self.src, last_logits=False,
                             data_file=self.folder / f"{name}.onnx.data").build_piece(layers, head)
        onnx.save_model(model, path)
        self.src.release_pages()
        return Piece(path, layers, head)

    @property
    def largest_piece_bytes(self) -> int:
        return max((p.path.with_suffix(".onnx.data").stat().st_size for p in self.pieces), default=0)

    def embed(self, ids: list[int]) -> np.ndarray:
        """Hidden states [1, len(ids), hidden] float32: the embedding rows of ``ids``."""
        rows = self.src.weights["embed"].take_rows(np.asarray(ids, dtype=np.int64)).float32()
        if self.src.spec.scale_embeddings:
            rows = rows * np.float32(math.sqrt(self.src.config.hidden_size))
        return rows[None].astype(np.float32)

    def session(self, piece: Piece) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.log_severity_level = 3
        options.enable_cpu_mem_arena = False
        return ort.InferenceSession(str(piece.path), options, providers=["CPUExecutionProvider"])

    def run(self, sequences: list[list[int]], consume: Callable[[int, np.ndarray], None]) -> None:
        """Logits [len, vocab] float32 of every position of each sequence, handed to
        ``consume(index, logits)`` one sequence at a time (never all held at once)."""
        hidden = [self.embed(ids) for ids in sequences]
        for piece in self.pieces:
            session = self.session(piece)
            inputs = {i.name for i in session.get_inputs()}
            output = "logits" if piece.head else HIDDEN_OUT
            for n, (ids, h) in enumerate(zip(sequences, hidden)):
                feeds = dict(self.feeds(piece, len(ids), inputs))
                feeds[HIDDEN_IN] = h
                result = session.run([output], feeds)[0]
                if piece.head:
                    consume(n, result[0])
                    hidden[n] = h[:, :0]
                else:
                    hidden[n] = result
            del session

    def feeds(self, piece: Piece, length: int, inputs: set[str]) -> Iterator[tuple[str, np.ndarray]]:
        cfg = self.src.config
        if "attention_mask" in inputs:
            yield "attention_mask", np.ones((1, length), np.int64)
            yield "position_ids", np.arange(length, dtype=np.int64)[None]
        for name in inputs:
            if name.startswith("past_key_values."):
                yield name, np.zeros((1, cfg.num_kv_heads, 0, cfg.head_dim), np.float32)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
