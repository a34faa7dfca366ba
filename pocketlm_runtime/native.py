"""The session protocol over onnxruntime (CPython only: imports numpy and onnxruntime)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from .model_info import CONFIG_FILE, ModelInfo
from .session import Candidates

if TYPE_CHECKING:
    from .pipeline import LanguageModel

KV_DTYPES = {"float32": np.float32, "float16": np.float16}


class NativeSession:
    def __init__(self, model_path: Path, info: ModelInfo, threads: int | None = None,
                 providers: list[str] | None = None) -> None:
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        for key, value in info.session_config.items():
            options.add_session_config_entry(key, value)
        self.ort = ort.InferenceSession(str(model_path), options,
                                        providers=providers or ["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.ort.get_outputs()]
        self.kv_shape = (1, info.kv.num_kv_heads, 0, info.kv.head_dim)
        self.kv_dtype = KV_DTYPES[info.kv.dtype]

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        return dict(zip(self.output_names, self.ort.run(self.output_names, feeds)))

    def int64(self, values: list[int], shape: tuple[int, ...]) -> Any:
        return np.asarray(values, dtype=np.int64).reshape(shape)

    def empty_kv(self) -> Any:
        return np.zeros(self.kv_shape, dtype=self.kv_dtype)

    def candidates(self, logits: Any, k: int) -> Candidates:
        row = np.asarray(logits[0, -1], dtype=np.float32)
        if k <= 0 or k >= row.shape[0]:
            order = np.argsort(-row, kind="stable")
        elif k == 1:
            order = np.array([int(np.argmax(row))])
        else:
            part = np.argpartition(-row, k - 1)[:k]
            order = part[np.lexsort((part, -row[part]))]
        return [int(i) for i in order], [float(row[i]) for i in order]

    def release(self, tensors: list[Any]) -> None:
        return None


def read_info(model_dir: Path) -> ModelInfo:
    config = model_dir / CONFIG_FILE
    if not config.is_file():
        raise FileNotFoundError(
            f"{model_dir} is not an exported model folder (no {CONFIG_FILE}); "
            "run `pocketlm export SOURCE -o FOLDER` first"
        )
    return ModelInfo.from_text(config.read_text(encoding="utf-8"))


def load_native(model_dir: Path, threads: int | None = None) -> LanguageModel:
    """An exported model folder, ready to generate with onnxruntime."""
    from .pipeline import LanguageModel
    from .tokenizer import Tokenizer

    info = read_info(model_dir)
    session = NativeSession(model_dir / info.model_file, info, threads=threads)
    tokenizer = Tokenizer.from_file(model_dir / "tokenizer.json")
    return LanguageModel(session, info, tokenizer)
