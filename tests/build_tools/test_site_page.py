"""The page's settings at build time: `pocketlm build` options and `--config site.toml`."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from pocketlm_build.cli import main, parser
from pocketlm_build.commands import page_from_args
from pocketlm_build.site_page import render_index
from tests.build_tools.test_bundle import build, model_dir, node_modules  # noqa: F401 (fixtures)

SITE_TOML = """
title = "Museum <guide>"
welcome = "Ask me about the collection."
system_prompt = "You answer questions about the museum."
suggestions = ["Who painted the ceiling?", "Where is the café?"]
temperature = 0.2
max_new_tokens = 200
max_new_tokens_cap = 400
max_prompt_tokens = 2048
kiosk = true
idle_reset = 90
theme_color = "#0A7"
"""


def page_config(index_html: str) -> dict[str, Any]:
    block = re.search(r'<script type="application/json" id="page-config">(.*?)</script>', index_html, re.DOTALL)
    assert block is not None
    data: dict[str, Any] = json.loads(block.group(1))
    return data


def test_config_file_and_options_reach_the_page_options_winning(tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text(SITE_TOML, encoding="utf-8")
    args = parser().parse_args(["build", "model", "-o", "dist", "--config", str(config),
                                "--temperature", "0.5", "--suggestion", "Opening hours?"])
    page = page_from_args(args)
    expected = tomllib.loads(SITE_TOML)  # the reference reader
    assert page["title"] == expected["title"] and page["welcome"] == expected["welcome"]
    assert page["systemPrompt"] == expected["system_prompt"]
    assert page["suggestions"] == ["Opening hours?"]  # the option replaces the file's list
    assert page["temperature"] == 0.5
    assert (page["maxNewTokens"], page["maxNewTokensCap"], page["maxPromptTokens"]) == (200, 400, 2048)
    assert (page["kiosk"], page["idleReset"], page["themeColor"]) == (True, 90, "#0a7")


def test_the_built_index_carries_the_settings_title_and_colour(model_dir: Path,  # noqa: F811
                                                              node_modules: Path,  # noqa: F811
                                                              tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text(SITE_TOML, encoding="utf-8")
    page = page_from_args(parser().parse_args(["build", "m", "-o", "d", "--config", str(config)]))
    dist = tmp_path / "dist"
    build(model_dir, node_modules, dist, page=page)
    index = (dist / "index.html").read_text(encoding="utf-8")
    assert page_config(index) == page
    assert "<title>Museum &lt;guide&gt;</title>" in index
    assert '<meta name="theme-color" content="#0a7">' in index
    assert "<guide>" not in index  # escaped in the JSON block too
    listed = {e["path"]: e for e in json.loads((dist / "manifest.json").read_text())["files"]}
    assert listed["index.html"]["size"] == len(index.encode())


def test_text_cannot_close_the_json_block() -> None:
    template = (Path(__file__).resolve().parents[2] / "web/index.html").read_text()
    hostile = {"title": "x", "welcome": "</script><script>alert(1)</script>", "themeColor": "#fff"}
    index = render_index(template, hostile)
    assert index.count("</script>") == template.count("</script>")
    assert page_config(index)["welcome"] == hostile["welcome"]


@pytest.mark.parametrize(("argv", "toml", "message"), [
    (["--temperature", "-1"], None, "--temperature takes a number from 0 to 2, got -1.0"),
    (["--theme-color", "blue"], None, "--theme-color takes a colour written #rgb or #rrggbb, got 'blue'"),
    (["--idle-reset", "3"], None, "--idle-reset takes a whole number from 10 to 86400, got 3"),
    ([], "max_new_tokens = 0", "site.toml: max_new_tokens takes a whole number from 1 to 32768, got 0"),
    ([], 'kiosk = "yes"', "site.toml: kiosk takes true or false, got 'yes'"),
    ([], "suggestions = [1]", "site.toml: suggestions takes a list of non-empty texts, got [1]"),
    ([], "colour = '#fff'", "site.toml: colour is not a setting of the page; known keys: title, "),
    ([], "title = ", "site.toml: not valid TOML"),
    ([], "max_new_tokens = 900", "max_new_tokens 900 is above the cap max_new_tokens_cap 400"),
])
def test_bad_settings_get_one_line_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  argv: list[str], toml: str | None, message: str) -> None:
    model = tmp_path / "model"
    model.mkdir()
    args = ["build", str(model), "-o", str(tmp_path / "dist"), *argv]
    if toml is not None:
        config = tmp_path / "site.toml"
        config.write_text(toml + ("\nmax_new_tokens_cap = 400" if "900" in toml else ""), encoding="utf-8")
        args += ["--config", str(config)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("pocketlm: error: ") and message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "dist").exists()


def test_a_missing_config_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", str(tmp_path), "-o", str(tmp_path / "d"), "--config", str(tmp_path / "no.toml")]) == 2
    assert "no.toml: no such file" in capsys.readouterr().err
