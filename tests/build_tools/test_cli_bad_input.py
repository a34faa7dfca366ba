"""Bad options and inputs to the CLI: one line, exit status 2, nothing lost; writes that are
interrupted (SIGTERM), killed (stale temporary folders) or fail at the last rename."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pocketlm_build import listen
from pocketlm_build.cli import main
from pocketlm_export import atomic
from tests.build_tools.test_server import make_site

REPO = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    return code, err


def assert_one_line(code: int, err: str, fragment: str) -> None:
    assert code == 2, err
    assert err.startswith("pocketlm: error: ") and "\n" not in err, err
    assert "Traceback" not in err
    assert fragment in err, err


@pytest.fixture
def model(tmp_path: Path, tiny_export: Path) -> Path:
    return Path(shutil.copytree(tiny_export, tmp_path / "model"))


def dead_pid() -> int:
    """The id of a process that has exited."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


# ---- options --------------------------------------------------------------------------

@pytest.mark.parametrize("argv, fragment", [
    (["--temperature", "inf"], "'inf' is not a finite number"),
    (["--temperature", "nan"], "'nan' is not a finite number"),
    (["--temperature", "-1"], "temperature must be a finite number >= 0"),
    (["--top-p=-inf"], "not a finite number"),
    (["--repetition-penalty", "1e999"], "not a finite number"),
    (["--threads", "-1"], "-1 is not a positive whole number"),
    (["--threads", "0"], "0 is not a positive whole number"),
    (["--threads", "two"], "'two' is not a whole number"),
    (["--max-new-tokens", "0"], "0 is not a positive whole number"),
])
def test_meaningless_sampling_options_are_refused(model: Path, capsys: pytest.CaptureFixture[str],
                                                  argv: list[str], fragment: str) -> None:
    code, err = run(capsys, "generate", model, "hello", *argv)
    assert_one_line(code, err, fragment)


@pytest.mark.parametrize("port, fragment", [("70000", "port 70000 is outside 1-65535"),
                                            ("-1", "port -1 is outside 1-65535"),
                                            ("0", "port 0 is outside 1-65535"),
                                            ("http", "port 'http' is not a number")])
def test_ports_outside_the_range_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             port: str, fragment: str) -> None:
    code, err = run(capsys, "serve", make_site(tmp_path), "--port", port)
    assert_one_line(code, err, fragment)


def test_a_port_in_use_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = run(capsys, "serve", make_site(tmp_path), "--port", port)
    assert_one_line(code, err, f"cannot listen on 127.0.0.1 port {port} (Address already in use)")


@pytest.mark.parametrize("host", ["", " "])
def test_an_empty_host_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], host: str) -> None:
    code, err = run(capsys, "serve", make_site(tmp_path), "--host", host)
    assert_one_line(code, err, "--host is empty")


def test_an_unknown_host_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "serve", make_site(tmp_path), "--host", "no such host")
    assert_one_line(code, err, "cannot listen on 'no such host'")


@pytest.mark.parametrize("host, warned", [("127.0.0.1", False), ("localhost", False), ("::1", False),
                                          ("127.0.0.2", False), ("0.0.0.0", True), ("0", True),
                                          ("::", True), ("192.168.1.10", True)])
def test_non_loopback_hosts_get_a_warning(host: str, warned: bool) -> None:
    warning = listen.check_host(host)
    assert (warning is not None) == warned
    if warning:
        assert "\n" not in warning and "other machines" in warning


def test_serve_prints_the_warning_for_every_interface(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = []
    monkeypatch.setattr("uvicorn.Server.run", lambda self, sockets=None: started.append(sockets))
    code, err = run(capsys, "serve", make_site(tmp_path), "--host", "0.0.0.0", "--port", port)
    assert code == 0 and started
    assert err == "pocketlm: warning: --host 0.0.0.0 is not a loopback address; other machines on the " \
                  "network can reach this site"


# ---- chat input -----------------------------------------------------------------------

def pocketlm(*argv: object, stdin: bytes = b"", timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "pocketlm_build.cli", *map(str, argv)], input=stdin,
                          capture_output=True, timeout=timeout, cwd=REPO, check=False)


def test_invalid_utf8_typed_into_chat_is_one_line(model: Path) -> None:
    done = pocketlm("chat", model, "--max-new-tokens", "2", stdin=b"caf\xe9 \xff\xfe\n")
    err = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert err[-1] == ("pocketlm: error: standard input: that line is not valid UTF-8 text; set your "
                       "terminal to UTF-8 and type it again")
    assert b"Traceback" not in done.stderr


def _with_template(model: Path, template: str) -> None:
    config = json.loads((model / "pocketlm.json").read_text())
    (model / "pocketlm.json").write_text(json.dumps({**config, "chat_template": template}))


@pytest.mark.parametrize("template, fragment", [
    ("{{ 1 / 0 }}", "the chat template failed (ZeroDivisionError"),
    ("{{ raise_exception('roles must alternate') }}", "refused these messages: roles must alternate"),
    ("{{ messages[0]['content'] + 1 }}", "the chat template failed (TypeError"),
])
def test_a_chat_template_that_raises_is_one_line(model: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch, template: str,
                                                 fragment: str) -> None:
    _with_template(model, template)
    code, err = run(capsys, "generate", model, "hello", "--chat-template", "--max-new-tokens", "2")
    assert_one_line(code, err, fragment)
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n"))
    code, err = run(capsys, "chat", model, "--max-new-tokens", "2")
    assert_one_line(code, err.splitlines()[-1], fragment)


# ---- where output goes ----------------------------------------------------------------

@pytest.mark.parametrize("command", ["build", "export"])
def test_the_current_folder_is_never_an_output(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    here = tmp_path / "here"
    here.mkdir()
    (here / "manifest.json").write_text('{"format": "pocketlm-site"}')  # even one of ours
    (here / "keep.txt").write_text("keep")
    monkeypatch.chdir(here)
    source = model if command == "build" else REPO / "nowhere.gguf"
    for out in (".", "./", str(here), *([".."] if command == "export" else [])):
        code, err = run(capsys, command, source, "-o", out, "--force")
        assert_one_line(code, err, "is the current folder or one above it")
    assert sorted(os.listdir(here)) == ["keep.txt", "manifest.json"]


def test_force_refuses_a_folder_without_our_marker(model: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.tex").write_text("years of work")
    for command in ("build", "export"):
        source = model if command == "build" else REPO / "tests"  # never read: refused first
        code, err = run(capsys, command, source, "-o", thesis, "--force")
        assert code == 2, err
        if command == "build":
            assert_one_line(code, err, "--force replaces only folders pocketlm wrote")
    assert [p.name for p in thesis.iterdir()] == ["thesis.tex"]


def test_stale_temporary_folders_of_killed_runs_are_swept(tmp_path: Path) -> None:
    target = tmp_path / "dist"
    target.mkdir()
    pid = dead_pid()
    stale = tmp_path / f".dist.tmp-{pid}-abcd"
    stale.mkdir()
    (stale / "model.onnx.data").write_bytes(b"\0" * 4096)
    old = tmp_path / f".dist.old-{pid}"
    old.mkdir()
    alive = tmp_path / f".dist.tmp-{os.getpid()}-live"  # a run still going: left alone
    alive.mkdir()
    unrelated = tmp_path / f".other.tmp-{pid}-abcd"
    unrelated.mkdir()
    swept = atomic.sweep_stale(target.resolve())
    assert sorted(p.name for p in swept) == sorted([stale.name, old.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["dist", alive.name, unrelated.name])


def test_an_output_left_between_the_two_renames_comes_back(tmp_path: Path) -> None:
    old = tmp_path / f".dist.old-{dead_pid()}"
    old.mkdir()
    (old / "manifest.json").write_text('{"format": "pocketlm-site"}')
    atomic.sweep_stale((tmp_path / "dist").resolve())
    assert (tmp_path / "dist" / "manifest.json").is_file() and not old.exists()


def test_a_failed_final_rename_puts_the_old_output_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "pocketlm.json").write_text('{"format": "pocketlm-model"}')
    real_rename = Path.rename

    def failing(self: Path, target: Path) -> Path:  # type: ignore[override]
        if ".tmp-" in self.name and Path(target) == out.resolve():
            raise OSError(28, "No space left on device")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", failing)
    with (pytest.raises(atomic.ExportError, match="the previous one is unchanged"),
          atomic.staged_folder(out, force=True) as stage):
        (stage / "pocketlm.json").write_text('{"format": "pocketlm-model", "new": true}')
    assert (out / "pocketlm.json").read_text() == '{"format": "pocketlm-model"}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.slow
def test_sigterm_during_build_leaves_no_temporary_folder(model: Path, tmp_path: Path) -> None:
    """A real `pocketlm build` (real node_modules: gzip takes seconds) stopped by SIGTERM."""
    if not (REPO / "node_modules" / "onnxruntime-web").is_dir():
        pytest.skip("node_modules is not installed: run `npm ci`")
    process = subprocess.Popen([sys.executable, "-m", "pocketlm_build.cli", "build", str(model),
                                "-o", str(tmp_path / "dist")], cwd=REPO, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".dist.tmp-*/runtime")):
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "the build never started writing"
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert err.decode().strip() == "pocketlm: stopped by SIGTERM"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_an_unexpected_error_is_still_one_line(model: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from pocketlm_build import commands

    def broken(args: object) -> int:
        raise RuntimeError("something\nunforeseen")

    monkeypatch.setattr(commands, "generate", broken)
    code, err = run(capsys, "generate", model, "hello")
    assert code == 1
    assert err == ("pocketlm: internal error: RuntimeError: something unforeseen (set POCKETLM_DEBUG=1 "
                   "to see where; please report it)")
    monkeypatch.setenv("POCKETLM_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["generate", str(model), "hello"])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_during_a_write_removes_the_temporary_folder(tmp_path: Path, signum: int) -> None:
    """The CLI's signal handling around atomic.staged_folder, in a child process."""
    script = """
import sys, time
from pathlib import Path
from pocketlm_build.cli import main
from pocketlm_build import commands

def slow(args):
    from pocketlm_export.atomic import staged_folder
    with staged_folder(Path(sys.argv[1]) / "out", force=False) as stage:
        (stage / "big.bin").write_bytes(bytes(1 << 20))
        print("writing", flush=True)
        time.sleep(60)
    return 0

commands.build = slow
raise SystemExit(main(["build", "unused", "-o", "unused"]))
"""
    process = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == b"writing\n"
    assert len(list(tmp_path.glob(".out.tmp-*"))) == 1
    process.send_signal(signum)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 128 + signum
    assert err.decode().strip() == f"pocketlm: stopped by {signal.Signals(signum).name}"
    assert list(tmp_path.iterdir()) == []
