"""The end-of-generation set: every token id after which the model's turn is over.

A model declares one end-of-sequence id (GGUF ``tokenizer.ggml.eos_token_id``, HF
``config.json``/``generation_config.json`` ``eos_token_id``, which may be a list), and a
GGUF may add ``tokenizer.ggml.eot_token_id`` / ``eom_token_id``. Chat models often end a
turn with another token than the declared one (a ChatML GGUF whose eos is
``<|endoftext|>`` ends each turn with ``<|im_end|>``). llama.cpp therefore keeps an
end-of-generation set (``special_eog_ids`` in ``llama-vocab.cpp``): the declared ids plus
the tokens whose text is one of the known end-of-turn texts below. This module applies the
same rule to the exported tokenizer.json, taking only tokens that are control (special)
added tokens, so a plain vocabulary entry that happens to read ``<|end|>`` is not one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# Token texts llama.cpp treats as end of generation (llama-vocab.cpp, special_eog_ids).
END_OF_TURN_TEXTS: tuple[str, ...] = (
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>",
    "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>",
)


def end_of_generation_ids(declared: Iterable[int], tokenizer: Mapping[str, Any]) -> list[int]:
    """The declared end ids (in their order, first = the model's own eos), then the ids of
    the special added tokens of ``tokenizer`` (a tokenizer.json dict) whose text is in
    :data:`END_OF_TURN_TEXTS`, by id. No id appears twice."""
    ids: list[int] = []
    for token_id in declared:
        if int(token_id) not in ids:
            ids.append(int(token_id))
    known = set(END_OF_TURN_TEXTS)
    found = sorted(int(t["id"]) for t in tokenizer.get("added_tokens") or []
                   if t.get("special") and t.get("content") in known)
    return ids + [i for i in found if i not in ids]


def token_texts(ids: Iterable[int], tokenizer: Mapping[str, Any]) -> dict[int, str]:
    """Each id's text (added tokens first, then the model's vocabulary), for the report."""
    added = {int(t["id"]): str(t.get("content", "")) for t in tokenizer.get("added_tokens") or []}
    vocab = (tokenizer.get("model") or {}).get("vocab") or {}
    by_id = {int(i): str(t) for t, i in vocab.items()} if isinstance(vocab, dict) else {}
    return {i: added.get(i, by_id.get(i, "")) for i in ids}
