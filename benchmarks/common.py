"""What the benchmarks share: the machine they ran on, tables, results pages, and measuring a
command's peak memory in a child process.

Every benchmark prints its figures and writes ``docs/benchmarks/NAME.md`` from the same run:
the machine, kgx's version, the command, the date, and the tables. Nothing is copied by hand.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT / "docs" / "benchmarks"


def machine() -> str:
    """One line about this machine: CPU, cores, memory, GPU if torch sees one, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, AttributeError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = ""
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.cuda.is_available():
            gpu = f", GPU {torch.cuda.get_device_name(0)}"
    return f"{cpu}, {cores} cores{mem}{gpu}, Python {platform.python_version()}"


def version() -> str:
    from kgx import __version__

    return __version__


def markdown(text: str) -> str:
    """A docstring's reStructuredText as Markdown: ``code`` and :role:`target` as `code`."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`")


def about(doc: str | None) -> str:
    """What a benchmark measures: the second paragraph of its module docstring."""
    parts = (doc or "").split("\n\n")
    return " ".join(parts[1].split()) if len(parts) > 1 else ""


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (also readable as printed text)."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def write_page(name: str, title: str, sections: Sequence[str], argv: Sequence[str] | None = None
               ) -> Path:
    """``docs/benchmarks/NAME.md``: what ran, where, and ``sections`` (Markdown), in that
    order. Returns its path."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python -m benchmarks." + name, *argv])
    head = [f"# {title}", "",
            f"Written by `{command}` on {_dt.date.today().isoformat()}, kgx {version()}.", "",
            f"Machine: {machine()}.", ""]
    PAGES.mkdir(parents=True, exist_ok=True)
    path = PAGES / f"{name}.md"
    body = "\n\n".join(markdown(s).strip() for s in sections)
    path.write_text("\n".join(head) + "\n" + body + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)}")
    return path


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from ``/proc``."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def _rss_mb(pid: int) -> float:
    try:
        m = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return 0.0
    return int(m.group(1)) / 1024 if m else 0.0


def peak_mb(cmd: Sequence[str], every: float = 0.05, **kwargs: Any
            ) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``cmd`` and return the peak of its process tree's resident memory in MB (the child
    and its workers together, sampled every ``every`` seconds), with its completed process.
    (``ru_maxrss`` would not do: Linux carries a parent's peak across ``exec``.)"""
    import tempfile
    import time

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, **kwargs)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, sum(_rss_mb(p) for p in _tree(proc.pid)))
            time.sleep(every)
        out.seek(0)
        err.seek(0)
        return peak, subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())
