"""Native onnxruntime speed of an exported model folder: decode and prefill tokens/s.

Used by the quantization and browser benchmarks; measures with the runtime's own
generation loop, so the figures are what `pocketlm generate` gets.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from pocketlm_runtime.native import load_native
from pocketlm_runtime.sampling import SamplingOptions

LONG_PROMPT = (
    "The harbour town woke slowly. Fishermen checked their nets by lamplight, the baker "
    "pulled the first loaves from the oven, and a thin fog drifted over the water. "
) * 6


def prompt_of(model_dir: Path, tokens: int) -> str:
    """A prompt of exactly ``tokens`` tokens for this model's tokenizer."""
    model = load_native(model_dir, threads=1)
    ids = model.tokenizer.encode(LONG_PROMPT * 4, add_special_tokens=False)[:tokens]
    return model.tokenizer.decode(ids)


def measure(model_dir: Path, threads: int, new_tokens: int = 64, prompt_tokens: int = 195,
            repeats: int = 3) -> dict[str, float]:
    """Medians over ``repeats`` runs: decode tok/s (after the first token), prefill tok/s."""
    model = load_native(model_dir, threads=threads)
    long_prompt = prompt_of(model_dir, prompt_tokens)
    model.generate("Hello", SamplingOptions(max_new_tokens=4))  # warm-up
    decode, prefill = [], []
    for _ in range(repeats):
        model.new_chat()
        result = model.generate("Once upon a time", SamplingOptions(max_new_tokens=new_tokens, stop=[]))
        decode.append(result.timing.decode_tokens_per_second)
        model.new_chat()
        result = model.generate(long_prompt, SamplingOptions(max_new_tokens=1))
        prefill.append(result.timing.prefill_tokens_per_second)
    return {"decode": statistics.median(decode), "prefill": statistics.median(prefill)}
