"""The generation loop over onnxruntime against an independent loop and the numpy reference."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pocketlm_export.export import ExportOptions, export
from pocketlm_runtime.generator import Chunking, ContextFull
from pocketlm_runtime.native import load_native
from pocketlm_runtime.sampling import SamplingOptions
from pocketlm_runtime.session import SessionLost
from tests.fixtures.tiny_models import write_tiny_hf
from tests.onnx_runner import OnnxDecoder
from tests.reference.numpy_forward import ReferenceModel

PROMPT = "hello world, this is a test of the tiny model"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tiny")
    src = write_tiny_hf("llama", root / "hf", seed=5)
    export(src, root / "out", ExportOptions(progress=False))
    return src, root / "out"


class Collect:
    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.ended = 0

    def put(self, text: str) -> None:
        self.pieces.append(text)

    def end(self) -> None:
        self.ended += 1


def test_greedy_tokens_match_an_independent_loop_and_the_reference(tiny: tuple[Path, Path]) -> None:
    src, out = tiny
    model = load_native(out)
    ids = model.prompt_ids(PROMPT)
    result = model.generate(PROMPT, SamplingOptions(max_new_tokens=20))
    assert result.tokens == OnnxDecoder(out).greedy(ids, len(result.tokens))
    assert result.tokens == ReferenceModel.from_hf(src).greedy(ids, len(result.tokens))


def test_streamed_pieces_add_up_to_the_text(tiny: tuple[Path, Path]) -> None:
    model = load_native(tiny[1])
    sink = Collect()
    result = model.generate(PROMPT, SamplingOptions(max_new_tokens=24), sink)
    assert "".join(sink.pieces) == result.text and sink.ended == 1
    eos = set(model.info.eos_token_ids)
    assert result.text == model.tokenizer.decode([t for t in result.tokens if t not in eos], skip_special_tokens=True)


def test_chat_turn_reuses_the_cache_and_gives_the_same_tokens(tiny: tuple[Path, Path]) -> None:
    model = load_native(tiny[1])
    opts = SamplingOptions(max_new_tokens=8)
    messages = [{"role": "user", "content": "hi there"}]
    first = model.generate(messages, opts)
    messages += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "and again"}]
    second = model.generate(messages, opts)
    fresh = load_native(tiny[1]).generate(messages, opts)
    assert second.tokens == fresh.tokens
    assert second.timing.reused_tokens > 0 and fresh.timing.reused_tokens == 0


class LosesItsSession:
    """A session that, like the browser's after a GPU failure, drops every tensor it made
    and raises SessionLost at chosen calls (counted over run() and pick())."""

    def __init__(self, inner: Any, lose_at: set[int]) -> None:
        self.inner, self.lose_at, self.calls = inner, lose_at, 0
        self.live: set[int] = set()  # ids of tensors made by the current session

    def _maybe_lose(self) -> None:
        self.calls += 1
        if self.calls in self.lose_at:
            self.live.clear()
            raise SessionLost("lost")

    def _checked(self, tensor: Any) -> Any:
        assert id(tensor) in self.live, "a tensor of the lost session was fed again"
        return tensor

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        feeds = {name: self._checked(t) for name, t in feeds.items()}
        self._maybe_lose()
        outputs = self.inner.run(feeds)
        self.live.update(id(t) for t in outputs.values())
        return outputs

    def pick(self, logits: Any, options: Any, history: Any, uniform: float) -> int:
        self._checked(logits)
        self._maybe_lose()
        token: int = self.inner.pick(logits, options, history, uniform)
        return token

    def int64(self, values: list[int], shape: tuple[int, ...]) -> Any:
        tensor = self.inner.int64(values, shape)
        self.live.add(id(tensor))
        return tensor

    def empty_kv(self) -> Any:
        tensor = self.inner.empty_kv()
        self.live.add(id(tensor))
        return tensor

    def release(self, tensors: list[Any]) -> None:
        self.inner.release(tensors)


@pytest.mark.parametrize("lose_at", [{1}, {2}, {7}, {12, 30}])
def test_a_lost_session_is_refilled_and_the_answer_goes_on_unchanged(tiny: tuple[Path, Path],
                                                                     lose_at: set[int]) -> None:
    """Calls 1-2 are the prompt's run and pick; later ones are decode steps."""
    want = load_native(tiny[1]).generate(PROMPT, SamplingOptions(max_new_tokens=12))
    model = load_native(tiny[1])
    flaky = LosesItsSession(model.generator.session, lose_at)
    model.generator.session = flaky
    model.generator.reset()
    got = model.generate(PROMPT, SamplingOptions(max_new_tokens=12))
    assert got.tokens == want.tokens
    assert flaky.calls > 2 * 12  # every loss cost one more run


@pytest.mark.parametrize("chat", [False, True])
def test_prefill_while_typing_is_reused_and_changes_no_token(tiny: tuple[Path, Path], chat: bool) -> None:
    opts = SamplingOptions(max_new_tokens=10)
    typed = "the quick brown fox jumps over the lazy dog and then it runs far away"
    fresh = load_native(tiny[1]).generate(typed, opts, chat=chat)
    model = load_native(tiny[1])
    fed = [model.prefill(typed[:n], chat=chat) for n in (19, 20, 40, 55)]  # as the draft grows
    assert fed[0] > 0 and fed[1] == 0 and fed[2] > 0  # a space more: no new word is complete
    result = model.generate(typed, opts, chat=chat)
    assert result.tokens == fresh.tokens
    assert result.timing.reused_tokens >= sum(fed) > 0
    assert model.prefill("something else entirely now", chat=chat) > 0  # an edit: the cache restarts
    assert model.generate(typed, opts, chat=chat).tokens == fresh.tokens


def test_stops_at_an_eos_id(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(tiny[1], folder)
    plain = load_native(folder).generate(PROMPT, SamplingOptions(max_new_tokens=12)).tokens
    config = json.loads((folder / "pocketlm.json").read_text())
    config["eos_token_ids"] = [plain[5]]
    (folder / "pocketlm.json").write_text(json.dumps(config))
    result = load_native(folder).generate(PROMPT, SamplingOptions(max_new_tokens=12))
    first = plain.index(plain[5])
    assert result.tokens == plain[: first + 1] and result.stop_reason == "eos"
    # Any id of the end-of-generation set ends the answer, not only the first one.
    unseen = next(t for t in range(3, 200) if t not in plain)
    config["eos_token_ids"] = [unseen, plain[first]]
    (folder / "pocketlm.json").write_text(json.dumps(config))
    again = load_native(folder).generate(PROMPT, SamplingOptions(max_new_tokens=12))
    assert again.tokens == plain[: first + 1] and again.stop_reason == "eos"


def test_stop_string_cuts_the_text(tiny: tuple[Path, Path]) -> None:
    model = load_native(tiny[1])
    text = model.generate(PROMPT, SamplingOptions(max_new_tokens=30)).text
    stop = text[len(text) // 2: len(text) // 2 + 3]
    model.new_chat()
    sink = Collect()
    cut = model.generate(PROMPT, SamplingOptions(max_new_tokens=30, stop=[stop]), sink)
    assert cut.text == text[: text.index(stop)] == "".join(sink.pieces)
    assert cut.stop_reason == "stop_string"


def test_max_new_tokens_is_respected(tiny: tuple[Path, Path]) -> None:
    result = load_native(tiny[1]).generate(PROMPT, SamplingOptions(max_new_tokens=3))
    assert len(result.tokens) == 3 and result.stop_reason == "max_tokens"


def test_a_prompt_longer_than_the_context_is_refused(tiny: tuple[Path, Path]) -> None:
    model = load_native(tiny[1])
    with pytest.raises(ContextFull, match="context"):
        model.generate("word " * 400, SamplingOptions(max_new_tokens=3))


class CountingSession:
    """Wraps a session and records how many tokens each run fed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.fed: list[int] = []

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        self.fed.append(int(feeds["input_ids"].shape[1]))
        return self.inner.run(feeds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


LONG_PROMPT = "the cat sat on the mat and then " * 8


def test_a_long_prompt_is_fed_in_chunks_with_the_tokens_of_one_run(tiny: tuple[Path, Path]) -> None:
    model = load_native(tiny[1])
    ids = model.prompt_ids(LONG_PROMPT)
    assert len(ids) > 40
    counting = CountingSession(model.generator.session)
    model.generator.session = counting
    model.generator.chunking = Chunking(tokens=16)
    result = model.generate(LONG_PROMPT, SamplingOptions(max_new_tokens=12))
    prompt_runs = len(ids) // 16 + (1 if len(ids) % 16 else 0)
    assert counting.fed[:prompt_runs] == [16] * (len(ids) // 16) + ([len(ids) % 16] if len(ids) % 16 else [])
    # The independent loop reads the whole prompt in one run.
    assert result.tokens == OnnxDecoder(tiny[1]).greedy(ids, len(result.tokens))


def test_adaptive_chunks_aim_at_a_duration_within_bounds() -> None:
    chunking = Chunking(tokens=32, seconds=0.2, least=8, most=512)
    assert chunking.next_size(32, 0.4) == 16  # too slow: halve
    assert chunking.next_size(32, 0.05) == 64  # fast: grow, at most doubling
    assert chunking.next_size(16, 10.0) == 8  # never below least
    assert chunking.next_size(400, 0.1) == 512  # never above most
    assert Chunking(tokens=32).next_size(32, 5.0) == 32  # no duration: fixed size


def test_adaptive_chunks_read_a_short_rest_along_and_carry_their_size_to_the_next_prompt(
        tiny: tuple[Path, Path]) -> None:
    model = load_native(tiny[1])
    gen = model.generator
    now = [0.0]

    class Timed(CountingSession):  # every token of a run takes 1 / 100 s
        def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
            out = super().run(feeds)
            now[0] += self.fed[-1] / 100
            return out

    timed = Timed(gen.session)
    gen.session, gen.clock = timed, lambda: now[0]
    gen.chunking = Chunking(tokens=8, seconds=0.2, least=8, most=512)
    ids = model.prompt_ids(LONG_PROMPT)
    result = model.generate(LONG_PROMPT, SamplingOptions(max_new_tokens=3))
    # 8 tokens take 0.08 s: the size doubles to 16, then stays at 20 (0.2 s); the rest, under
    # 1.5 chunks, goes with the last run instead of a short run of its own.
    runs = timed.fed[:-2]  # the prompt's runs, then two decode steps
    assert runs[:2] == [8, 16] and set(runs[2:-1]) == {20} and sum(runs) == len(ids)
    assert 20 < runs[-1] <= 30
    assert gen.chunking.tokens == 20
    assert result.tokens == OnnxDecoder(tiny[1]).greedy(ids, 3)
    # The next prompt starts at the size the last one reached.
    model.new_chat()
    timed.fed.clear()
    model.generate(LONG_PROMPT, SamplingOptions(max_new_tokens=1))
    assert timed.fed[0] == 20


def test_interrupt_between_chunks_keeps_what_was_fed_and_ends_the_answer(tiny: tuple[Path, Path]) -> None:
    model = load_native(tiny[1])
    gen = model.generator
    counting = CountingSession(gen.session)
    gen.session = counting
    gen.chunking = Chunking(tokens=8)
    gen.interrupt = lambda: len(counting.fed) >= 2
    result = model.generate(LONG_PROMPT, SamplingOptions(max_new_tokens=5))
    assert result.tokens == [] and result.stop_reason == "stopped"
    assert counting.fed == [8, 8] and len(gen.cached) == 16
    # A draft read ahead is interrupted the same way, keeping its chunks.
    model.new_chat()
    counting.fed.clear()
    fed = gen.prefill(model.prompt_ids(LONG_PROMPT))
    assert fed == 16 and counting.fed == [8, 8]
    # The next prompt reuses the fed chunks and gives the tokens of a fresh run.
    gen.interrupt = None
    again = model.generate(LONG_PROMPT, SamplingOptions(max_new_tokens=5))
    assert again.timing.reused_tokens == 16
    assert again.tokens == OnnxDecoder(tiny[1]).greedy(model.prompt_ids(LONG_PROMPT), 5)


def test_a_prompt_over_the_cap_or_the_context_is_refused_before_any_run(tiny: tuple[Path, Path]) -> None:
    model = load_native(tiny[1])
    counting = CountingSession(model.generator.session)
    model.generator.session = counting
    with pytest.raises(ContextFull, match="at most 10"):
        model.generate(LONG_PROMPT, SamplingOptions(max_new_tokens=3), max_prompt_tokens=10)
    with pytest.raises(ContextFull, match="do not fit the model's context"):
        model.generate("word " * 400, SamplingOptions(max_new_tokens=3))
    assert model.generator.prefill(model.prompt_ids("word " * 400)) == 0
    assert counting.fed == []


def test_cli_generate_and_chat(tiny: tuple[Path, Path]) -> None:
    out = tiny[1]
    expected = load_native(out).generate(PROMPT, SamplingOptions(max_new_tokens=10)).text
    run = subprocess.run([sys.executable, "-m", "pocketlm_build.cli", "generate", str(out), PROMPT,
                          "--max-new-tokens", "10"], capture_output=True, text=True, check=True)
    assert run.stdout == expected + "\n"
    chat = subprocess.run([sys.executable, "-m", "pocketlm_build.cli", "chat", str(out), "--max-new-tokens", "5"],
                          input="hi there\n/new\nhi there\n", capture_output=True, text=True, timeout=120,
                          check=False)
    assert chat.returncode == 0
    reply = load_native(out).generate([{"role": "user", "content": "hi there"}],
                                      SamplingOptions(max_new_tokens=5)).text
    assert chat.stdout == f"> {reply}\n> > {reply}\n> "


def test_cli_rejects_bad_options_and_folders(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    for args, fragment in ((["generate", str(tiny[1]), "x", "--top-p", "2"], "top_p"),
                           (["generate", str(tmp_path), "x"], "not an exported model folder")):
        run = subprocess.run([sys.executable, "-m", "pocketlm_build.cli", *args], capture_output=True, text=True,
                             check=False)
        assert run.returncode == 2 and fragment in run.stderr and "Traceback" not in run.stderr
