"""The ``pocketlm`` command: export, generate, chat, build, serve, demo.

A user's mistake prints one line, ``pocketlm: error: ...``, and exits with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import UserError

EXIT_USAGE = 2


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
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="pocketlm", description="Small language models in the browser, privately.")
    sub = root.add_subparsers(dest="command", required=True)

    p = sub.add_parser("export", help="export a GGUF file or Hugging Face folder to an ONNX model folder")
    p.add_argument("source", nargs="?", type=Path, help="GGUF file or HF folder (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output model folder")
    p.add_argument("--quant", default="auto",
                   help="auto (default: the smallest mode that passes the quality gate), exact, q4, q8, fp16, fp32")
    p.add_argument("--block-size", type=int, default=32, help="q4/q8 block size (default 32)")
    p.add_argument("--symmetric", action="store_true", help="q4 without zero points (default: with zero points)")
    p.add_argument("--layout", default="dq", choices=["dq", "nbits"],
                   help="quantized weights as DequantizeLinear -> MatMul, widened at load (default; fast in "
                        "every runtime) or as MatMulNBits nodes (compact in memory natively; slow in WASM)")
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

    p = sub.add_parser("build", help="bundle a model folder with the web page into a static site")
    p.add_argument("model", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True)
    p.add_argument("--force", action="store_true")

    p = sub.add_parser("serve", help="serve a built site on 127.0.0.1 (static files only)")
    p.add_argument("dist", type=Path)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)

    p = sub.add_parser("demo", help="export the default model, build the page and serve it")
    p.add_argument("--workdir", type=Path, default=Path("out"), help="where the export and site go (default: out/)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="pocketlm: %(message)s")
    args = parser().parse_args(argv)
    from . import commands

    try:
        return int(getattr(commands, args.command)(args) or 0)
    except _user_errors() as exc:
        print(f"pocketlm: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
