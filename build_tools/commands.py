"""What each ``pocketlm`` subcommand does (argument parsing lives in cli.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .errors import UserError


def export(args: argparse.Namespace) -> int:
    from pocketlm_export.export import ExportOptions
    from pocketlm_export.export import export as run_export
    from pocketlm_export.report import human_bytes

    result = run_export(args.source, args.out, ExportOptions(
        quant=args.quant, logits=args.logits, progress=not args.quiet, force=args.force,
        block_size=args.block_size, symmetric=args.symmetric,
        accuracy_level=args.accuracy_level, layout=args.layout, allow_quality_loss=args.allow_quality_loss,
        lora=args.lora))
    rep = result.report
    print(f"exported {rep['name']} ({rep['architecture']}, {rep['parameters']:,} parameters, "
          f"{rep['quantization']}) to {result.out}: {human_bytes(rep['total_bytes'])} "
          f"in {rep['seconds']['total']:.1f} s")
    chosen = rep.get("quality", {}).get("candidates", [])
    for q in chosen:
        print(f"  {q['mode']:>5}: perplexity {q['perplexity']:.3f} vs fp32 {q['reference_perplexity']:.3f} "
              f"({100 * q['perplexity_rise']:+.2f}%), top-1 agreement {100 * q['top1_agreement']:.1f}%, "
              f"max logit error {q['max_logit_error']:.3g}, greedy {100 * q['greedy_agreement']:.0f}% same"
              f" -> {'pass' if q['passed'] else 'fail'}")
    return 0


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from pocketlm_runtime.native import load_native
    from pocketlm_runtime.sampling import SamplingOptions

    from .model_folder import validate_model_folder

    try:
        options = SamplingOptions(
            max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
            top_p=args.top_p, repetition_penalty=args.repetition_penalty, seed=args.seed,
            stop=list(args.stop)).validate()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    validate_model_folder(args.model)
    try:
        model = load_native(args.model, threads=args.threads)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own errors (Fail, InvalidGraph, ...) share no base
        text = " ".join(str(exc).split())[:200]
        raise UserError(f"onnxruntime cannot load {args.model} ({text}); re-export the model "
                        "with `pocketlm export SOURCE -o FOLDER`") from None
    return model, options


class _Print:
    def put(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def end(self) -> None:
        sys.stdout.write("\n")
        sys.stdout.flush()


def onnxruntime_errors() -> tuple[type[Exception], ...]:
    """onnxruntime's own exception classes (Fail, InvalidArgument, ...; they share no base)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return tuple(c for c in vars(state).values() if isinstance(c, type) and issubclass(c, Exception))


def _cannot_run(model: object, exc: Exception) -> UserError:
    text = " ".join(str(exc).split())[:200]
    return UserError(f"onnxruntime cannot run the graph in {model} ({text}); the graph does not match its "
                     "pocketlm.json: re-export the model with `pocketlm export SOURCE -o FOLDER`")


def generate(args: argparse.Namespace) -> int:
    from pocketlm_runtime.generator import ContextFull

    if _not_utf8(args.prompt):
        raise UserError("the prompt is not valid UTF-8 text; pass it in UTF-8")
    model, options = _load(args)
    try:
        result = model.generate(args.prompt, options, _Print(), chat=args.chat_template)
    except (ContextFull, ValueError) as exc:
        raise UserError(str(exc)) from None
    except onnxruntime_errors() as exc:
        raise _cannot_run(args.model, exc) from None
    if args.stats:
        t = result.timing
        print(f"[{t.prompt_tokens} prompt tokens, {t.new_tokens} new; first token {t.time_to_first_token * 1000:.0f} ms; "
              f"prefill {t.prefill_tokens_per_second:.1f} tok/s; decode {t.decode_tokens_per_second:.1f} tok/s; "
              f"stop: {result.stop_reason}]", file=sys.stderr)
    return 0


def _not_utf8(text: str) -> bool:
    """True when `text` carries bytes that were not UTF-8 (read with errors="surrogateescape")."""
    return any("\udc80" <= char <= "\udcff" for char in text)


def chat(args: argparse.Namespace) -> int:
    from pocketlm_runtime.generator import ContextFull

    model, options = _load(args)
    messages: list[dict[str, str]] = []
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="surrogateescape")  # undecodable bytes: checked below
    interactive = sys.stdin.isatty()
    print("Type a message; /new starts a new chat, /quit or Ctrl-D leaves.", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            print(file=sys.stderr)
            return 0
        if _not_utf8(line):
            message = "that line is not valid UTF-8 text; set your terminal to UTF-8 and type it again"
            if not interactive:
                raise UserError(f"standard input: {message}")
            print(f"pocketlm: {message}", file=sys.stderr)
            continue
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            return 0
        if text == "/new":
            messages = []
            model.new_chat()
            continue
        messages.append({"role": "user", "content": text})
        try:
            result = model.generate(messages, options, _Print())
        except ContextFull as exc:
            print(f"pocketlm: {exc}", file=sys.stderr)
            messages = []
            model.new_chat()
            continue
        except ValueError as exc:  # the chat template failed or refused the conversation
            raise UserError(f"{args.model}: {exc}") from None
        except onnxruntime_errors() as exc:
            raise _cannot_run(args.model, exc) from None
        messages.append({"role": "assistant", "content": result.text})


PAGE_OPTIONS = ("title", "welcome", "system_prompt", "suggestions", "temperature", "top_p",
                "repetition_penalty", "max_new_tokens", "max_new_tokens_cap", "max_prompt_tokens",
                "kiosk", "idle_reset", "idle_warning", "theme_color")


def page_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The page's settings: --config FILE, then the options given (site_page.py)."""
    from .site_page import check_settings, page_settings, read_config

    from_file = read_config(args.config) if args.config else {}
    given = {name: getattr(args, name) for name in PAGE_OPTIONS if getattr(args, name) is not None}
    return page_settings(from_file, check_settings(given, source="option"))


def build(args: argparse.Namespace) -> int:
    from .bundle import build_site

    page = page_from_args(args)  # checked before anything is written
    result = build_site(args.model, args.out, force=args.force, page=page)
    print(f"built {result.out}: {result.summary}")
    return 0


def serve(args: argparse.Namespace) -> int:
    from .server import serve as run_server

    run_server(args.dist, host=args.host, port=args.port)
    return 0


def demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.workdir, host=args.host, port=args.port)


__all__ = ["build", "chat", "demo", "export", "generate", "serve"]
