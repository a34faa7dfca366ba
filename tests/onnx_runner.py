"""Run an exported model folder step by step with onnxruntime, straight from its graph
inputs and outputs (no pocketlm runtime code), for comparisons with references."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort


class OnnxDecoder:
    def __init__(self, folder: Path, threads: int = 1) -> None:
        self.config = json.loads((folder / "pocketlm.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        for key, value in (self.config.get("session_config") or {}).items():
            options.add_session_config_entry(key, value)
        self.session = ort.InferenceSession(str(folder / self.config["model_file"]), options,
                                            providers=["CPUExecutionProvider"])
        kv = self.config["kv_cache"]
        self.layers = kv["num_layers"]
        self.kv_names = [(kv["past_key"] % i, kv["present_key"] % i) for i in range(self.layers)]
        self.kv_names += [(kv["past_value"] % i, kv["present_value"] % i) for i in range(self.layers)]
        dtype = np.float16 if kv["dtype"] == "float16" else np.float32
        self.past = {p: np.zeros((1, kv["num_kv_heads"], 0, kv["head_dim"]), dtype) for p, _ in self.kv_names}
        self.length = 0

    def step(self, ids: list[int]) -> np.ndarray:
        """Feed tokens; returns logits [len(ids) or 1, vocab] as float64."""
        total = self.length + len(ids)
        feeds = {
            "input_ids": np.array([ids], np.int64),
            "attention_mask": np.ones((1, total), np.int64),
            "position_ids": np.arange(self.length, total, dtype=np.int64)[None],
            **self.past,
        }
        names = [o.name for o in self.session.get_outputs()]
        out = dict(zip(names, self.session.run(names, feeds)))
        self.past = {p: out[q] for p, q in self.kv_names}
        self.length = total
        return out["logits"][0].astype(np.float64)

    def greedy(self, prompt: list[int], n: int) -> list[int]:
        logits = self.step(prompt)
        tokens: list[int] = []
        for _ in range(n):
            tokens.append(int(np.argmax(logits[-1])))
            if len(tokens) < n:
                logits = self.step([tokens[-1]])
        return tokens
