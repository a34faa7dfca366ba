"""Stop strings: the answer ends at the earliest offset where any stop string occurs.

The reference is the rule of OpenAI-style APIs (and llama.cpp's server) written out
plainly: after each streamed piece, look at all the text so far; once any stop string
occurs, the answer is that text cut at ``min(text.find(s))`` over the stop strings that
occur. The streamed matcher holds back little text and must give the same answer however
the text is split into pieces.
"""

from __future__ import annotations

import random

import pytest

from pocketlm_runtime.pipeline import StopStrings


def reference_cut(pieces: list[str], stops: list[str]) -> tuple[str, bool]:
    text = ""
    for piece in pieces:
        text += piece
        found = [text.find(s) for s in stops if s and s in text]
        if found:
            return text[: min(found)], True
    return text, False


def streamed(pieces: list[str], stops: list[str]) -> tuple[str, bool]:
    matcher = StopStrings(stops)
    out = []
    for piece in pieces:
        out.append(matcher.feed(piece))
        if matcher.hit:
            break
    if not matcher.hit:
        out.append(matcher.flush())
    return "".join(out), matcher.hit


def test_the_earliest_match_wins_whatever_the_list_order() -> None:
    assert streamed([" there"], ["re", "he"]) == (" t", True)
    assert streamed([" there"], ["he", "re"]) == (" t", True)
    assert streamed([" th", "ere"], ["re", "he"]) == (" t", True)
    assert streamed([" t", "h", "e", "r", "e"], ["re", "he"]) == (" t", True)


def _splits(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), k=rng.randint(0, min(6, len(text) - 1))))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]


@pytest.mark.parametrize("seed", range(300))
def test_any_split_gives_the_reference_cut(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "ab c"
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24)))
    stops = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))
             for _ in range(rng.randint(1, 3))]
    pieces = _splits(text, rng)
    want_text, want_hit = reference_cut(pieces, stops)
    got_text, got_hit = streamed(pieces, stops)
    assert (got_text, got_hit) == (want_text, want_hit), (text, stops)


def test_hidden_text_can_match_but_is_never_shown() -> None:
    matcher = StopStrings(["<|im_end|>"])
    shown = matcher.feed("Hello")
    shown += matcher.feed("<|im_end|>", visible=False)
    assert matcher.hit and shown == "Hello"
    other = StopStrings(["zzz"])
    shown = other.feed("Hi") + other.feed("<|im_end|>", visible=False) + other.feed(" there")
    shown += other.flush()
    assert not other.hit and shown == "Hi there"
