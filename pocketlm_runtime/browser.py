"""The session protocol over the page's model runtime, called from Python inside Pyodide.

The only Python module that imports ``js`` or ``pyodide``. Tensors never cross into
Python: they live in JavaScript, in the CPU engine's memory or on the GPU, and Python holds
integer handles to them, so the KV cache goes from one step's outputs to the next step's
feeds without being copied or even proxied. The logits row stays on the JS side too: the
logits processors and the draw run there over the whole row (``web/sampler.js``, the same
rules as :mod:`pocketlm_runtime.sampling`), and Python receives one token id per step.

The CPU engine (``web/engine/``) answers ``run`` synchronously; onnxruntime-web (WebGPU)
answers with a promise, which ``run`` blocks on with :func:`pyodide.ffi.run_sync`. That
needs JavaScript Promise Integration (JSPI) and a call stack entered through
``callPromising`` (the worker calls :meth:`BrowserModel.generate` that way). So the one
generation loop of :mod:`pocketlm_runtime.generator` runs unchanged, synchronously.

The JS side is ``web/model_backend.js``; the object passed in as ``backend`` exposes
``setFeedNames(names)``, ``run(handles)``, ``outputNames()``, ``int64(bytes, dims)``,
``emptyKV()``, ``pick(handle, settings, previous, uniform)``,
``distribution(handle, settings, previous)`` and ``dispose(handles)``.
"""

from __future__ import annotations

import array
import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import js
from pyodide.ffi import JsProxy, jsnull, run_sync, to_js

from .generator import Chunking
from .model_info import ModelInfo
from .pipeline import LanguageModel, Message, Result
from .sampling import Distribution, SamplingOptions
from .session import SessionLost
from .tokenizer import Tokenizer

# Engine option names (JS, camelCase) -> SamplingOptions fields.
OPTION_NAMES = {
    "maxNewTokens": "max_new_tokens",
    "temperature": "temperature",
    "topK": "top_k",
    "topP": "top_p",
    "repetitionPenalty": "repetition_penalty",
    "seed": "seed",
    "stop": "stop",
}

# A chunk of the prompt takes about this long (a last one up to 1.5 times), so a stop waits
# about as long. Chunks stay at 32 tokens or more: smaller ones cost more per token than they
# save in waiting (natively, 8-token chunks read a 331-token prompt 2.3 times slower than one
# run; 64-token chunks 1.08 times).
CHUNK_SECONDS = 0.25
CHUNK_LEAST = 32


@dataclass
class StepClock:
    """Where a decode step's time goes: waiting for the model runtime, or everything else.

    "Everything else" is Python's share: the generation loop, sampling, detokenizing,
    streaming and the calls across to JS. Waiting covers ``session.run`` and, on WebGPU,
    the read-back of the logits (the GPU finishes the step then).
    """

    starts: list[float] = field(default_factory=list)  # when each run() began
    runs: list[float] = field(default_factory=list)  # seconds waiting for each step's result
    finished: float = 0.0

    def summary(self, decode_steps: int) -> dict[str, float]:
        """Figures over the last ``decode_steps`` runs (the runs before read the prompt), and
        ``prompt_run_seconds``: the time spent waiting for the runs that read the prompt."""
        prompt_runs = self.runs[:max(0, len(self.runs) - max(0, decode_steps))]
        prompt = {"prompt_runs": len(prompt_runs), "prompt_run_seconds": sum(prompt_runs)}
        if decode_steps < 1 or len(self.starts) < decode_steps + 1:
            return {"decode_steps": 0, "python_share": 0.0, "python_ms_per_step": 0.0,
                    "ort_ms_per_step": 0.0, **prompt}
        first = len(self.starts) - decode_steps
        ends = self.starts[first + 1:] + [self.finished]
        walls = [end - start for start, end in zip(self.starts[first:], ends)]
        runs = self.runs[first:]
        wall, ort = sum(walls), sum(runs)
        steps = len(walls)
        return {
            "decode_steps": steps,
            "python_share": (wall - ort) / wall if wall > 0 else 0.0,
            "python_ms_per_step": (wall - ort) / steps * 1000,
            "ort_ms_per_step": ort / steps * 1000,
            **prompt,
        }


class BrowserSession:
    """:class:`pocketlm_runtime.session.Session` over the page's runtime (see the module doc).

    Tensors are integer handles into a table in ``ort_backend.js``: a step sends the feed
    handles as one Int32Array and gets the output handles back as one, instead of making
    a proxy per KV tensor. Handles are opaque to the generation loop, as the protocol asks.
    """

    def __init__(self, backend: JsProxy) -> None:
        self.backend = backend
        self.clock = StepClock()
        self.feed_names: tuple[str, ...] = ()
        self.output_names: list[str] = []
        self.before_step: Callable[[], None] | None = None  # e.g. a stop check
        self.settings: tuple[SamplingOptions | None, Any] = (None, None)  # options -> JS object

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        if self.before_step is not None:
            self.before_step()
        names = tuple(feeds)
        if names != self.feed_names:
            self.backend.setFeedNames(to_js(list(names)))
            self.feed_names = names
        handles = to_js(array.array("i", feeds.values()))
        before = time.perf_counter()
        outputs = self.backend.run(handles)
        if inspect.isawaitable(outputs):  # onnxruntime-web; the CPU engine answers at once
            outputs = run_sync(outputs)
        if outputs is None or outputs is jsnull:
            raise SessionLost("the GPU failed and the model moved to WASM")
        self.clock.starts.append(started)
        self.clock.runs.append(time.perf_counter() - before)
        if not self.output_names:
            self.output_names = list(self.backend.outputNames())
        return dict(zip(self.output_names, outputs.to_py().tolist()))

    def int64(self, values: list[int], shape: tuple[int, ...]) -> Any:
        data = array.array("q", values).tobytes()  # one copy into JS, no per-element BigInt
        return self.backend.int64(to_js(data), to_js(list(shape)))

    def empty_kv(self) -> Any:
        return self.backend.emptyKV()

    def _settings(self, options: SamplingOptions) -> Any:
        """The sampler's settings as one JS object, made once per answer's options."""
        if self.settings[0] is not options:
            self.settings = (options, _to_js({
                "temperature": options.temperature, "topK": options.top_k, "topP": options.top_p,
                "repetitionPenalty": options.repetition_penalty}))
        return self.settings[1]

    def _settled(self, value: Any) -> Any:
        if inspect.isawaitable(value):  # logits on the GPU: a promise of the read-back
            before = time.perf_counter()
            value = run_sync(value)
            if value is None or value is jsnull:
                raise SessionLost("the GPU failed and the model moved to WASM")
            if self.clock.runs:
                self.clock.runs[-1] += time.perf_counter() - before
        return value

    def pick(self, logits: Any, options: SamplingOptions, history: Sequence[int], uniform: float) -> int:
        previous = to_js(array.array("i", history))
        return int(self._settled(self.backend.pick(logits, self._settings(options), previous, uniform)))

    def distribution(self, logits: Any, options: SamplingOptions, history: Sequence[int]) -> Distribution:
        previous = to_js(array.array("i", history))
        kept = self._settled(self.backend.distribution(logits, self._settings(options), previous))
        return kept.ids.to_py().tolist(), kept.probs.to_py().tolist()

    def release(self, tensors: list[Any]) -> None:
        # dispose() frees GPU buffers on WebGPU and the table entries; no PyProxy exists to
        # destroy, since Python holds plain ints.
        if tensors:
            self.backend.dispose(to_js(array.array("i", tensors)))


class StreamToPage:
    """The pipeline's streamer: each piece of text goes to the page as it comes."""

    def __init__(self, post: JsProxy) -> None:
        self.post = post

    def put(self, text: str) -> None:
        self.post(text)

    def end(self) -> None:
        return None


class StopSignal:
    """Whether the page asked to stop, checked before every step.

    ``stopped()`` is a plain JS call reading a flag the page sets in shared memory (when
    cross-origin isolated) or the worker sets on a stop message. A message can only arrive
    while the worker's event loop runs, which ``session.run`` does not guarantee, so every
    ``PAUSE_EVERY`` seconds ``pause()`` lets one turn of it pass; that costs about a
    millisecond, so it is not done at every step.
    """

    PAUSE_EVERY = 0.1

    def __init__(self, stopped: JsProxy, pause: JsProxy) -> None:
        self.stopped = stopped
        self.pause = pause
        self.paused_at = time.perf_counter()

    def requested(self) -> bool:
        if self.stopped():
            return True
        now = time.perf_counter()
        if now - self.paused_at < self.PAUSE_EVERY:
            return False
        self.paused_at = now
        return bool(run_sync(self.pause()))


def sampling_options(options: dict[str, Any]) -> SamplingOptions:
    """SamplingOptions from the engine's camelCase options; unknown names are refused."""
    fields: dict[str, Any] = {}
    for name, value in options.items():
        if name not in OPTION_NAMES:
            known = ", ".join(sorted(OPTION_NAMES))
            raise ValueError(f"unknown generation option {name!r}; known options: {known}")
        if value is not None and value is not jsnull:
            fields[OPTION_NAMES[name]] = list(value) if name == "stop" else value
    return SamplingOptions(**fields).validate()


def _py(value: Any) -> Any:
    return value.to_py() if isinstance(value, JsProxy) else value


class BrowserModel:
    """What the worker holds: a :class:`LanguageModel` over a :class:`BrowserSession`."""

    def __init__(self, config_json: str, tokenizer_json: str, backend: JsProxy) -> None:
        self.info = ModelInfo.from_text(config_json)
        self.session = BrowserSession(backend)
        self.model = LanguageModel(self.session, self.info, Tokenizer.from_str(tokenizer_json))
        self.model.generator.chunking = Chunking(tokens=CHUNK_LEAST, seconds=CHUNK_SECONDS,
                                                 least=CHUNK_LEAST)

    def describe(self) -> JsProxy:
        info = self.info
        return _to_js({"name": info.name, "architecture": info.architecture,
                       "quantization": info.quantization, "context_length": info.context_length,
                       "vocab_size": info.vocab_size, "has_chat_template": bool(info.chat_template)})

    def generate(self, prompt: str | JsProxy, options: JsProxy | None, post: JsProxy,
                 stopped: JsProxy, pause: JsProxy, chat: bool | None = None) -> JsProxy:
        """Answer ``prompt`` (text, or chat messages as a JS array); returns a JS object.

        ``post(text)`` receives the streamed text; ``stopped()`` and ``pause()`` tell when
        the page asks to stop (:class:`StopSignal`): the answer then ends at that token, or
        between two chunks of the prompt. ``options`` may carry ``maxPromptTokens``, a
        site's cap on the prompt (:class:`ContextFull` beyond it).
        """
        messages: str | list[Message] = _py(prompt)
        given = dict(_py(options) or {})
        cap = given.pop("maxPromptTokens", None)
        max_prompt_tokens = None if cap is None or cap is jsnull else int(cap)
        sampling = sampling_options(given)
        use_template = None if chat is None or chat is jsnull else bool(chat)
        signal = StopSignal(stopped, pause)

        def check_stop() -> None:
            if signal.requested():
                self.model.stop()

        self.session.clock = StepClock()
        self.session.before_step = check_stop
        self.model.generator.interrupt = signal.requested
        try:
            result: Result = self.model.generate(messages, sampling, StreamToPage(post),
                                                 chat=use_template,
                                                 max_prompt_tokens=max_prompt_tokens)
        finally:
            self.session.before_step = None
            self.model.generator.interrupt = None
        self.session.clock.finished = time.perf_counter()
        out = result.as_dict()
        out.update(self.session.clock.summary(max(0, len(result.tokens) - 1)))
        return _to_js(out)

    def prefill(self, prompt: str | JsProxy, chat: bool | None = None,
                cancelled: JsProxy | None = None, pause: JsProxy | None = None) -> int:
        """Feed what is settled of a prompt still being typed (:meth:`LanguageModel.prefill`).
        ``cancelled()`` / ``pause()`` (as for :meth:`generate`) stop it between chunks, when
        the draft changed or an answer is wanted; what was fed stays in the cache."""
        use_template = None if chat is None or chat is jsnull else bool(chat)
        if cancelled is not None and cancelled is not jsnull and pause is not None:
            self.model.generator.interrupt = StopSignal(cancelled, pause).requested
        try:
            return self.model.prefill(_py(prompt), chat=use_template)
        finally:
            self.model.generator.interrupt = None

    def new_chat(self) -> None:
        self.model.new_chat()


def _to_js(value: Any) -> JsProxy:
    converted: JsProxy = to_js(value, dict_converter=js.Object.fromEntries)
    return converted


def load_model(config_json: str, tokenizer_json: str, backend: JsProxy) -> BrowserModel:
    """Entry point for the worker: the model description, tokenizer and model backend."""
    return BrowserModel(config_json, tokenizer_json, backend)
