"""The ``pocketlm`` command: export, generate, chat, build, serve, demo.

A user's mistake prints one line, ``pocketlm: error: ...``, and exits with status 2.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

from .errors import UserError

EXIT_USAGE = 2
#: Signals that end a run as an exception, so temporary folders are removed (atomic.py).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
EXIT_INTERNAL = 1


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (no usage dump), exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"pocketlm: error: {message}; see `{self.prog} --help`", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive whole number (use 1 or more)")
    return value


def port_number(text: str) -> int:
    """argparse type: a TCP port, 1-65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port {text!r} is not a number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 1-65535 (try 8000)")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite number (no inf, no nan)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _user_errors() -> tuple[type[BaseException], ...]:
    from pocketlm_export.errors import ExportError

    errors: list[type[BaseException]] = [UserError, ExportError]
    try:
        from .bundle import BuildError

        errors.append(BuildError)
    except ImportError:
        pass
    try:
        from .server import NotASiteError

        errors.append(NotASiteError)
    except ImportError:
        pass
    return tuple(errors)


def _add_sampling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-new-tokens", type=positive_int, default=256)
    p.add_argument("--temperature", type=finite_float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=50, help="keep the k most likely tokens (default 50; 0 = off)")
    p.add_argument("--top-p", type=finite_float, default=1.0,
                   help="nucleus: keep the most likely tokens up to this mass (default 1 = off)")
    p.add_argument("--repetition-penalty", type=finite_float, default=1.0,
                   help="> 1 discourages tokens already seen (default 1 = off)")
    p.add_argument("--seed", type=int, default=None, help="seed of the draws (same seed, same answer)")
    p.add_argument("--stop", action="append", default=[],
                   help="stop string, repeatable; the earliest match ends the answer")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="onnxruntime threads (default: all cores)")


def _add_page_settings(p: argparse.ArgumentParser) -> None:
    """The site owner's page settings (build_tools/site_page.py); unset ones stay None."""
    g = p.add_argument_group("the page", "also read from --config FILE (TOML; options win over it)")
    g.add_argument("--config", type=Path, help="a TOML file of the settings below (keys with underscores)")
    g.add_argument("--title", help="page and app name (default pocketlm)")
    g.add_argument("--welcome", help="text shown before the first message")
    g.add_argument("--system-prompt", help="sent first in every conversation")
    g.add_argument("--suggestion", dest="suggestions", action="append",
                   help="a prompt offered as a button (repeatable)")
    g.add_argument("--temperature", type=float, help="default temperature, 0..2 (default 0.3)")
    g.add_argument("--top-p", type=float, help="nucleus sampling, (0, 1] (default 0.9)")
    g.add_argument("--repetition-penalty", type=float, help="1..2 (default 1.1)")
    g.add_argument("--max-new-tokens", type=int, help="default answer length (default 256)")
    g.add_argument("--max-new-tokens-cap", type=int, help="the longest answer a visitor may ask for (default 4096)")
    g.add_argument("--max-prompt-tokens", type=int, help="the longest conversation read (default: the context)")
    g.add_argument("--kiosk", action="store_const", const=True,
                   help="touch layout, no settings, no links out, idle reset (also ?kiosk=1)")
    g.add_argument("--idle-reset", type=int, metavar="SECONDS",
                   help="kiosk: start over after this long without a touch (default 120)")
    g.add_argument("--idle-warning", type=int, metavar="SECONDS",
                   help="kiosk: countdown shown before the reset (default 15)")
    g.add_argument("--theme-color", help="#rgb or #rrggbb (default #1a5fd0)")


def parser() -> argparse.ArgumentParser:
    root = OneLineParser(prog="pocketlm", description="Small language models in the browser, privately.")
    sub = root.add_subparsers(dest="command", required=True)

    p = sub.add_parser("export", help="export a GGUF file or Hugging Face folder to an ONNX model folder")
    p.add_argument("source", nargs="?", type=Path, help="GGUF file or HF folder (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output model folder")
    p.add_argument("--quant", default="auto",
                   help="auto (default: a quantized GGUF's own blocks unchanged; other sources the smallest of mixed, q8, fp16 within +2%% perplexity), exact, mixed, q4, q8, fp16, fp32")
    p.add_argument("--block-size", type=positive_int, default=32, help="q4/q8 block size (default 32)")
    p.add_argument("--symmetric", action="store_true", help="q4 without zero points (default: with zero points)")
    p.add_argument("--layout", default="nbits", choices=["nbits", "dq"],
                   help="quantized weights as MatMulNBits blocks (default: read as they are by native "
                        "onnxruntime, WebGPU and the page's CPU engine) or as DequantizeLinear -> MatMul "
                        "(widened to float32 when a session loads)")
    p.add_argument("--accuracy-level", type=int, default=0,
                   help="with --layout nbits: 0 float activations (default), 4 int8 activations")
    p.add_argument("--allow-quality-loss", action="store_true",
                   help="keep an explicitly chosen mode even when it fails the quality gate")
    p.add_argument("--logits", default="last", choices=["last", "all"],
                   help="logits for the last position only (runtimes) or for all (evaluation)")
    p.add_argument("--lora", type=Path, default=None, metavar="ADAPTER",
                   help="merge this PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) first")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    for name, help_text in (("generate", "continue a prompt from an exported model folder"),
                            ("chat", "chat in the terminal with an exported model folder")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("model", type=Path, help="exported model folder")
        if name == "generate":
            p.add_argument("prompt", help="the prompt text")
            p.add_argument("--chat-template", action="store_true", help="wrap the prompt in the chat template")
            p.add_argument("--stats", action="store_true", help="print timing figures to stderr")
        _add_sampling(p)

    p = sub.add_parser("build", help="bundle model folders with the web page into a static site")
    p.add_argument("model", type=Path, nargs="+",
                   help="exported model folders; with several, the page offers a picker (the first is listed first)")
    p.add_argument("-o", "--out", type=Path, required=True)
    p.add_argument("--force", action="store_true")
    _add_page_settings(p)

    p = sub.add_parser("serve", help="serve a built site on 127.0.0.1 (static files only)")
    p.add_argument("dist", type=Path)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port_number, default=8000)

    p = sub.add_parser("demo", help="export the default model, build the page and serve it")
    p.add_argument("--workdir", type=Path, default=Path("out"), help="where the export and site go (default: out/)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port_number, default=8000)
    return root


def _terminate(signum: int, frame: FrameType | None) -> None:
    from pocketlm_export.atomic import Terminated

    raise Terminated(signum)


def one_line(message: object) -> str:
    """A message as one line (newlines inside it folded to spaces)."""
    return " ".join(str(message).split())


def main(argv: Sequence[str] | None = None) -> int:
    from pocketlm_export.atomic import Terminated

    logging.basicConfig(level=logging.WARNING, format="pocketlm: %(message)s")
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    from . import commands

    main_thread = threading.current_thread() is threading.main_thread()
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    if main_thread:
        for signum in STOP_SIGNALS:
            signal.signal(signum, _terminate)
    try:
        return int(getattr(commands, args.command)(args) or 0)
    except _user_errors() as exc:
        print(f"pocketlm: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except Terminated as stop:
        stopped_by = signal.Signals(stop.args[0] if stop.args else signal.SIGTERM)
        print(f"pocketlm: stopped by {stopped_by.name}", file=sys.stderr)
        return 128 + int(stopped_by)
    except MemoryError:
        print("pocketlm: error: out of memory; the input asks for more than this machine has "
              "(a smaller model, --quant, or fewer --threads may help)", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a bug, still one line; the traceback on request
        if os.environ.get("POCKETLM_DEBUG"):
            raise
        print(f"pocketlm: internal error: {type(exc).__name__}: {one_line(exc)[:300]} "
              "(set POCKETLM_DEBUG=1 to see where; please report it)", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if main_thread:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


if __name__ == "__main__":
    raise SystemExit(main())
