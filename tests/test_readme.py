"""The commands of the README and of the user docs (``docs/usage``), and their printed output,
run against the graph the README's first command builds."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kgx.cli import app
from tests.support import ROOT

README = ROOT / "README.md"
DOCS = sorted((README.parent / "docs").rglob("*.md"))


def console_examples(path: Path = README) -> list[tuple[str, str]]:
    """(command, expected output) for each ```console block of a Markdown file."""
    out = []
    for block in re.findall(r"```console\n(.*?)```", path.read_text("utf-8"), re.S):
        lines = block.splitlines()
        assert lines[0].startswith("$ "), path
        out.append((lines[0][2:], "\n".join(lines[1:]) + "\n"))
    return out


def test_readme_has_examples() -> None:
    assert len(console_examples()) >= 3
    assert sum(len(console_examples(p)) for p in DOCS) >= 1


def test_the_readme_stays_short_and_links_only_to_what_exists() -> None:
    text = README.read_text("utf-8")
    assert len(text.splitlines()) <= 250
    for target in re.findall(r"\]\(((?:docs|benchmarks)/[^)#]*)", text):
        assert (README.parent / target).exists(), target


@pytest.mark.slow
@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_console_examples(path: Path, real_out: Path, monkeypatch) -> None:
    monkeypatch.chdir(real_out.parent)
    runner = CliRunner()
    for command, expected in console_examples(path):
        argv = shlex.split(command)
        assert argv[0] == "kgx"
        res = runner.invoke(app, argv[1:])
        assert res.exit_code == 0, (command, res.output)
        assert res.stdout == expected, command


def test_readme_commands_are_what_ci_runs() -> None:
    text = README.read_text("utf-8")
    ci = (README.parent / ".ci" / "run").read_text("utf-8")
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    sh = re.findall(r"```sh\n(.*?)\n```", section, re.S)
    assert len(sh) == 2
    test_cmd = sh[1].split("&& ", 3)[-1]  # after venv creation and activation
    assert test_cmd in ci


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", README.read_text("utf-8"), re.S)


@pytest.mark.slow
def test_readme_serve_session(real_out: Path) -> None:
    """The serve session, on a free port: the server as a process, each command through bash."""
    import socket
    import subprocess
    import sys

    (block,) = blocks("serve-session")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    block = block.replace("7878", port)
    cmds: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            cmds.append((line[2:], []))
        else:
            cmds[-1][1].append(line)
    serve_cmd, serve_out = cmds[0]
    argv = shlex.split(serve_cmd.rstrip("&").strip())
    assert argv[:2] == ["kgx", "serve"]
    proc = subprocess.Popen([sys.executable, "-m", "kgx.cli", *argv[1:]],
                            cwd=real_out.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # as a terminal shows both
    try:
        for expected_line in serve_out:  # the warm-up line, then the banner
            assert proc.stdout.readline().rstrip("\n") == expected_line
        for cmd, expected in cmds[1:]:
            res = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True,
                                 timeout=60)
            assert res.stdout.splitlines() == expected, cmd
    finally:
        proc.terminate()
        proc.wait(10)
