"""The site owner's settings for the page: from `pocketlm build` options and a TOML file.

``--config site.toml`` is read with the standard library's :mod:`tomllib`; options given on
the command line win over the file. Keys (TOML name / option)::

    title = "Museum guide"              --title            page and app name
    welcome = "Ask me about ..."        --welcome          shown before the first message
    system_prompt = "You are ..."       --system-prompt    sent first in every conversation
    suggestions = ["What ...?", ...]    --suggestion (repeatable) prompts offered as buttons
    temperature = 0.3                   --temperature      0..2
    top_p = 0.9                         --top-p            (0, 1]
    repetition_penalty = 1.1            --repetition-penalty  1..2
    max_new_tokens = 256                --max-new-tokens   default answer length
    max_new_tokens_cap = 1024           --max-new-tokens-cap  the longest answer a visitor gets
    max_prompt_tokens = 2048            --max-prompt-tokens   the longest conversation read
    kiosk = true                        --kiosk            touch layout, no settings, idle reset
    idle_reset = 120                    --idle-reset       seconds without a touch (kiosk)
    idle_warning = 15                   --idle-warning     seconds of countdown before the reset
    theme_color = "#1a5fd0"             --theme-color      #rgb or #rrggbb

The page reads them from a JSON data block in index.html (web/site_page.js holds the same
names in camelCase and the defaults). A bad value is a :class:`SiteSettingsError` naming
the key, what it got and what it takes.
"""

from __future__ import annotations

import html
import json
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .errors import UserError


class SiteSettingsError(UserError):
    """A setting of the page is missing its type or range; the message names the key."""


@dataclass(frozen=True)
class Key:
    """One setting: its JS name and a check returning the cleaned value (or raising
    ValueError saying what it takes)."""

    js: str
    check: Callable[[Any], Any]


def _text(limit: int) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise TypeError("takes text")
        if len(value) > limit:
            raise ValueError(f"takes at most {limit} characters")
        return value
    return check


def _number(low: float, high: float, *, low_open: bool = False) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise TypeError(f"takes a number from {low} to {high}")
        if value > high or value < low or (low_open and value == low):
            raise ValueError(f"takes a number from {low} to {high}" + (" (not 0)" if low_open else ""))
        return float(value)
    return check


def _whole(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"takes a whole number from {low} to {high}")
        return value
    return check


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("takes true or false")
    return value


def _suggestions(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError("takes a list of non-empty texts")
    if len(value) > 8:
        raise ValueError("takes at most 8 prompts")
    return [_text(500)(v) for v in value]


def _colour(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6}", value):
        raise ValueError("takes a colour written #rgb or #rrggbb")
    return value.lower()


KEYS: Final[dict[str, Key]] = {
    "title": Key("title", _text(80)),
    "welcome": Key("welcome", _text(2000)),
    "system_prompt": Key("systemPrompt", _text(8000)),
    "suggestions": Key("suggestions", _suggestions),
    "temperature": Key("temperature", _number(0, 2)),
    "top_p": Key("topP", _number(0, 1, low_open=True)),
    "repetition_penalty": Key("repetitionPenalty", _number(1, 2)),
    "max_new_tokens": Key("maxNewTokens", _whole(1, 32768)),
    "max_new_tokens_cap": Key("maxNewTokensCap", _whole(1, 32768)),
    "max_prompt_tokens": Key("maxPromptTokens", _whole(1, 1 << 20)),
    "kiosk": Key("kiosk", _flag),
    "idle_reset": Key("idleReset", _whole(10, 86400)),
    "idle_warning": Key("idleWarning", _whole(0, 600)),
    "theme_color": Key("themeColor", _colour),
}
DEFAULTS: Final = {"title": "pocketlm", "theme_color": "#1a5fd0", "max_new_tokens": 256,
                   "max_new_tokens_cap": 4096, "idle_reset": 120, "idle_warning": 15}


def read_config(path: Path) -> dict[str, Any]:
    """The settings in a TOML file, checked (keys named as in the file)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SiteSettingsError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SiteSettingsError(f"--config {path}: cannot read it ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SiteSettingsError(f"{path.name}: not valid TOML ({exc})") from None
    return check_settings(data, source=path.name)


def check_settings(given: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    """Cleaned settings; ``source`` prefixes errors (a file name, or "option" for the CLI,
    whose keys are then written as --options)."""
    cleaned: dict[str, Any] = {}
    for name, value in given.items():
        shown = f"--{name.replace('_', '-')}" if source == "option" else f"{source}: {name}"
        key = KEYS.get(name)
        if key is None:
            known = ", ".join(KEYS)
            raise SiteSettingsError(f"{shown} is not a setting of the page; known keys: {known}")
        try:
            cleaned[name] = key.check(value)
        except (TypeError, ValueError) as exc:
            raise SiteSettingsError(f"{shown} {exc}, got {value!r}") from None
    return cleaned


def page_settings(from_file: Mapping[str, Any], from_options: Mapping[str, Any]) -> dict[str, Any]:
    """File settings, then options on top; checks what depends on two keys. Returns the
    page's JSON settings (camelCase names); web/site_page.js fills in the keys left out."""
    merged = {**DEFAULTS, **from_file, **from_options}
    where = "option" if "max_new_tokens" in from_options or "max_new_tokens_cap" in from_options else "config"
    if merged["max_new_tokens"] > merged["max_new_tokens_cap"]:
        shown = "--max-new-tokens" if where == "option" else "max_new_tokens"
        raise SiteSettingsError(f"{shown} {merged['max_new_tokens']} is above the cap "
                                f"max_new_tokens_cap {merged['max_new_tokens_cap']}; lower it or raise the cap")
    return {KEYS[name].js: value for name, value in merged.items()}


PAGE_CONFIG: Final = re.compile(r'(<script type="application/json" id="page-config">)(.*?)(</script>)', re.DOTALL)


def render_index(template: str, page: Mapping[str, Any]) -> str:
    """index.html with the settings in its JSON block, its title and theme colour.

    The JSON escapes ``<``, ``>`` and ``&`` so no text can close the block."""
    data = json.dumps(dict(page), ensure_ascii=False, sort_keys=True)
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    if not PAGE_CONFIG.search(template):
        raise ValueError("web/index.html has no page-config block")
    out = PAGE_CONFIG.sub(lambda m: m.group(1) + data + m.group(3), template, count=1)
    title = html.escape(str(page.get("title", "pocketlm")))
    out = re.sub(r"<title>.*?</title>", f"<title>{title}</title>", out, count=1)
    out = re.sub(r'(<h1 id="title">).*?(</h1>)', lambda m: m.group(1) + title + m.group(2), out, count=1)
    colour = html.escape(str(page.get("themeColor", "#1a5fd0")))
    out = re.sub(r'(<meta name="theme-color" content=")[^"]*(">)', lambda m: m.group(1) + colour + m.group(2),
                 out, count=1)
    return out
