"""Texts with characters whose Unicode properties changed after Unicode 14 (the oldest
``unicodedata`` a supported CPython ships) or whose normalization the reference library's
Unicode 9.0 tables leave alone: letters and digits added in Unicode 15 and 16, and
compositions and compatibility mappings newer than Unicode 9.0."""

from __future__ import annotations

# Letters (L) and digits (Nd/No) first assigned in Unicode 15.0 and 16.0, by block.
NEW_LETTERS = {
    "15.0 Cyrillic Extended-D": range(0x1E030, 0x1E06E),
    "15.0 Kawi": range(0x11F04, 0x11F11),
    "15.0 Nag Mundari": range(0x1E4D0, 0x1E4EC),
    "15.0 CJK Extension H": range(0x31350, 0x31360),
    "16.0 Latin Extended-D": [0xA7CB, 0xA7CC, 0xA7CD, 0xA7DA, 0xA7DB, 0xA7DC],
    "16.0 Cyrillic Extended-C": [0x1C89, 0x1C8A],
    "16.0 Garay": range(0x10D50, 0x10D66),
    "16.0 Kirat Rai": range(0x16D40, 0x16D6D),
    "16.0 Ol Onal": range(0x1E5D0, 0x1E5EE),
    "16.0 Sunuwar": range(0x11BC0, 0x11BE1),
    "16.0 Gurung Khema": range(0x16100, 0x1611E),
}
NEW_DIGITS = {
    "15.0 Kawi": range(0x11F50, 0x11F5A),
    "15.0 Nag Mundari": range(0x1E4F0, 0x1E4FA),
    "15.0 Kaktovik": range(0x1D2C0, 0x1D2D4),
    "16.0 Garay": range(0x10D40, 0x10D4A),
    "16.0 Kirat Rai": range(0x16D70, 0x16D7A),
    "16.0 Ol Onal": range(0x1E5F1, 0x1E5FB),
    "16.0 Sunuwar": range(0x11BF0, 0x11BFA),
    "16.0 Outlined digits": range(0x1CCF0, 0x1CCFA),
}
# Canonical compositions and compatibility mappings of characters newer than the reference
# normalizer's tables (Unicode 9.0): Dives Akuru (13.0), Kirat Rai and Tulu-Tigalari (16.0),
# segmented and outlined digits, modifier letters. The reference leaves them unchanged.
NEWER_NORMALIZATION = ["\U00011935\U00011930", "\U00016D63\U00016D67", "\U000113C2\U000113C9",
                       "\U0001FBF5\U0001CCF3", "\U00010781\U0001E030", "\u32ff\U0001F16C",
                       "e\u0301\U00011935\U00011930 Kin\u0303g\u1DF6\u0316"]


def new_characters() -> list[str]:
    return [chr(c) for table in (NEW_LETTERS, NEW_DIGITS) for block in table.values() for c in block]


def new_character_texts() -> list[str]:
    """Texts that put each new letter and digit where the split rules look at classes."""
    texts = ["\uA7CB's", "\uA7CB'S don't", "x\uA7CBy 12\U0001CCF34"]
    for c in new_characters():
        texts += [f"{c}'s {c}{c}", f" {c}1{c} a{c}!", f"it{c} 7{c}{c}9 ({c})"]
    return texts


def unicode_texts() -> list[str]:
    return [*new_character_texts(), *NEWER_NORMALIZATION]
