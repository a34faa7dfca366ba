"""Generate cli_mutations.json: damaged model folders for `generate`, `chat` and `build`.

Each entry names one damage to an exported model folder (tests/corpus/test_cli_mutations.py
applies it to a copy of a real export) and the command that must refuse it. Every damage
is invalid by the folder's specification (docs/model-folder.md), chosen without running
pocketlm: truncations and appended bytes (the graph's external data no longer adds up),
removed or replaced files, symlinks and paths leaving the folder, random bytes where a
graph or JSON belongs, and pocketlm.json / tokenizer.json fields of the wrong type or
range. Seeded, so the file is reproducible:

    python -m tests.corpus.make_cli_mutations      # rewrites tests/corpus/cli_mutations.json
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "cli_mutations.json"
COMMANDS = ("generate", "chat", "build")
SEED = 20261130

GRAPH, DATA, CONFIG, TOKENIZER = "model.onnx", "model.onnx.data", "pocketlm.json", "tokenizer.json"

# pocketlm.json keys and values each key must never accept (docs/model-folder.md).
BAD_INTS = ["64", -1, 0, 1.5, True, None, [], {}]
BAD_NAMES = [7, None, "", ["model.onnx"], "../model.onnx", "/etc/passwd", "sub/model.onnx",
             "missing.onnx", "..", "."]
BAD_KV_NAMES = ["past.key", "past.%s.key", 3, None, "%d.%d"]
CONFIG_FIELDS: dict[str, list[Any]] = {
    "format": ["pocketlm-site", None, 1, ""],
    "format_version": [99, 0, "1", None],
    "architecture": [None, 3, ""],
    "model_file": BAD_NAMES,
    "external_data": ["../model.onnx.data", "/etc/passwd", TOKENIZER, "missing.data", 5, "."],
    "context_length": BAD_INTS,
    "vocab_size": [*BAD_INTS, 3],
    "kv_cache": [None, [], "kv", 1],
    "kv_cache.num_layers": [*BAD_INTS, 99],
    "kv_cache.num_kv_heads": [*BAD_INTS[:4], 13],  # 13: not the graph's (a tiny model's is small)
    "kv_cache.head_dim": [*BAD_INTS[:4], 7],
    "kv_cache.dtype": ["int8", None, 4, "float16"],  # float16: the fp32 export's cache is float32
    "kv_cache.past_key": BAD_KV_NAMES,
    "kv_cache.present_value": BAD_KV_NAMES[:3],
    "eos_token_ids": ["2", [-1], [10**9], None],
    "bos_token_id": ["1", -5, 10**9],
    "chat_template": [5, ["x"]],
    "inputs": ["input_ids", [1], {"attention_mask": "no_such_input"}],
    "outputs": [{"scores": "logits"}, "logits", None],
}
REQUIRED = ["architecture", "model_file", "context_length", "vocab_size", "kv_cache",
            "kv_cache.num_layers", "kv_cache.num_kv_heads", "kv_cache.head_dim", "kv_cache.past_key",
            "kv_cache.present_key", "format"]
TOKENIZER_FIELDS: dict[str, list[Any]] = {
    "model": [None, [], "BPE", {"type": "Unigram", "vocab": []}],
    "model.vocab": [[], "abc", 5],
    "model.merges": [[["a"]], [7], "ab"],
    "model.type": ["WordPiece", "Unigram"],
    "truncation": [{"max_length": 4}],
    "added_tokens": ["x", [{"id": "a"}], [5]],
    "pre_tokenizer": [{"type": "NoSuchThing"}, 5],
    "decoder": [{"type": "NoSuchThing"}],
}
WHOLE_JSON = [[], [1, 2], "text", 3, None, {}]


def generate() -> list[dict[str, Any]]:
    rng = random.Random(SEED)
    entries: list[dict[str, Any]] = []

    def add(**damage: Any) -> None:
        entries.append(damage)

    for name in (GRAPH, DATA, CONFIG, TOKENIZER):
        add(op="remove", file=name)
        add(op="directory", file=name)
        add(op="symlink_outside", file=name)
        add(op="empty", file=name)
        for _ in range(3):
            add(op="truncate", file=name, fraction=round(rng.uniform(0.01, 0.99), 4))
    for size in (16, 1000, 70000):
        add(op="random_bytes", file=GRAPH, size=size, seed=rng.randrange(1 << 30))
    for name in (CONFIG, TOKENIZER):
        add(op="random_bytes", file=name, size=rng.randrange(1, 4000), seed=rng.randrange(1 << 30))
        add(op="invalid_utf8", file=name)
        for value in WHOLE_JSON:
            if name == TOKENIZER and value == {}:
                continue  # {} is covered below: an empty vocabulary
            add(op="json_whole", file=name, value=value)
    add(op="json_whole", file=TOKENIZER, value={})
    for count in (1, 7, 4096):
        add(op="append", file=DATA, size=count)
    for key, values in CONFIG_FIELDS.items():
        for value in values:
            add(op="json_set", file=CONFIG, key=key, value=value)
    for key in REQUIRED:
        add(op="json_delete", file=CONFIG, key=key)
    for key, values in TOKENIZER_FIELDS.items():
        for value in values:
            add(op="json_set", file=TOKENIZER, key=key, value=value)
    add(op="json_delete", file=TOKENIZER, key="model.vocab")
    for index, entry in enumerate(entries):
        entry["id"] = index
        entry["command"] = COMMANDS[index % len(COMMANDS)]
    return entries


def main() -> None:
    entries = generate()
    OUT.write_text(json.dumps(entries, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {len(entries)} mutations to {OUT}")


if __name__ == "__main__":
    main()
