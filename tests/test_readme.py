"""The README's commands and their printed output, run against the sample graph."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from kgx.cli import app

README = Path(__file__).resolve().parent.parent / "README.md"


def console_examples() -> list[tuple[str, str]]:
    """(command, expected output) for each ```console block of the README."""
    out = []
    for block in re.findall(r"```console\n(.*?)```", README.read_text("utf-8"), re.S):
        lines = block.splitlines()
        assert lines[0].startswith("$ ")
        out.append((lines[0][2:], "\n".join(lines[1:]) + "\n"))
    return out


def test_readme_has_examples() -> None:
    assert len(console_examples()) >= 3


def test_readme_console_examples(readme_out: Path, monkeypatch) -> None:
    monkeypatch.chdir(readme_out.parent)
    runner = CliRunner()
    for command, expected in console_examples():
        argv = shlex.split(command)
        assert argv[0] == "kgx"
        res = runner.invoke(app, argv[1:])
        assert res.exit_code == 0, (command, res.output)
        assert res.stdout == expected, command


def test_readme_commands_are_what_ci_runs() -> None:
    text = README.read_text("utf-8")
    ci = (README.parent / ".ci" / "run").read_text("utf-8")
    sh = re.findall(r"```sh\n(.*?)\n```", text, re.S)
    assert len(sh) == 2
    test_cmd = sh[1].split("&& ", 3)[-1]  # after venv creation and activation
    assert test_cmd in ci
