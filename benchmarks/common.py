"""What the benchmarks share: the machine they ran on, tables (a results page's, and the
ways-of-doing-one-job table), results pages, measuring in a child process (its seconds, CPU
and peak memory; a command's process-tree peak), and the synthetic dump (the sample's pages
copied under fresh ids and titles into a multistream dump).

Every benchmark prints its figures and writes ``docs/benchmarks/NAME.md`` from the same run:
the machine, kgx's version, the command, the date, and the tables. Nothing is copied by hand.
"""

from __future__ import annotations

import bz2
import contextlib
import datetime as _dt
import hashlib
import io
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT / "docs" / "benchmarks"
SAMPLE = ROOT / "data" / "enwiki-2016-excerpt.xml.bz2"


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


class _Tee:
    """Writes to a stream and keeps a copy."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def printed_page(script: str, doc: str | None) -> Iterator[None]:
    """Run a benchmark's ``main`` inside: what it prints goes to the terminal as before and,
    when it finishes without error, also to its results page (``docs/benchmarks/NAME.md``,
    :func:`write_page`): what it measures (its docstring's second paragraph), then its output
    as printed. For the benchmarks that print their tables rather than build a page."""
    name = Path(script).stem
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        yield
    title = (doc or name).strip().split("\n")[0].rstrip(".")
    printed = "\n".join("    " + line for line in tee.copy.getvalue().rstrip().splitlines())
    write_page(name, title, [about(doc), "As printed:", printed])  # indented: preformatted


def write_page(name: str, title: str, sections: Sequence[str], argv: Sequence[str] | None = None,
               script: str | None = None) -> Path:
    """``docs/benchmarks/NAME.md``: what ran (``script``, by default NAME, with ``argv``),
    where, and ``sections`` (Markdown), in that order. Returns its path."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python -m benchmarks." + (script or name), *argv])
    head = [f"# {title}", "",
            f"Written by `{command}` on {_dt.date.today().isoformat()}, kgx {version()}.", "",
            f"Machine: {machine()}.", ""]
    PAGES.mkdir(parents=True, exist_ok=True)
    path = PAGES / f"{name}.md"
    body = "\n\n".join(markdown(s).rstrip().lstrip("\n") for s in sections)
    path.write_text("\n".join(head) + "\n" + body + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
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

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, **kwargs)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, sum(_rss_mb(p) for p in _tree(proc.pid)))
            time.sleep(every)
        out.seek(0)
        err.seek(0)
        return peak, subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())


class PeakRSS:
    """Samples the resident memory of a process and all its descendants every 50 ms, keeping
    the peak (bytes) and each sample with its time."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = sum(int(_rss_mb(p) * 2**20) for p in _tree(self.pid))
            self.peak = max(self.peak, total)
            self.samples.append((time.time(), total))
            time.sleep(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.peak

    def peak_between(self, t0: float, t1: float) -> int:
        """The peak among the samples taken from ``t0`` to ``t1`` (``time.time()``)."""
        return max((r for t, r in self.samples if t0 <= t <= t1), default=0)


# --------------------------------------------------------------------- a child's figures

def child_usage(seconds: float, **extra: Any) -> None:
    """In a child started by :func:`run_child`: print the JSON line it reads, its wall
    ``seconds``, the CPU seconds of it and its children, its peak RSS in MB, and ``extra``."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"seconds": seconds,
                      "cpu": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
                      "rss_mb": max(me.ru_maxrss, kids.ru_maxrss) / 1024, **extra}))


def run_child(code: str, *args: Any, what: str = "the child") -> Any:
    """Run ``code`` (a script that ends with :func:`child_usage`) in a fresh Python with
    ``args``, so that each way measured starts cold and its peak memory is its own; its last
    line of output, parsed. Exits with the child's error output if it failed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    res = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env,
                         capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"{what} failed:\n{res.stderr[-4000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def print_ways(rows: dict[str, dict[str, Any]], items: int, unit: str, same: str) -> None:
    """The table of benchmarks that compare ways of doing one job: each way's seconds,
    throughput, cost per item, cores busy (CPU seconds of its process tree over wall
    seconds), peak memory and speed against the first way, then whether every way made the
    same output.

    ``rows``: way -> {"seconds", "cpu", "rss_mb", "digest"}; ``items`` of ``unit`` (a
    singular noun) each; ``same`` names the output compared by digest."""
    base = next(iter(rows.values()))["seconds"]
    print(f"| way | seconds | {unit}s/s | us per {unit} | cores busy | peak RSS MB | speed |")
    print("|---|---|---|---|---|---|---|")
    for way, r in rows.items():
        print(f"| {way} | {r['seconds']:.1f} | {items / r['seconds']:,.0f} | "
              f"{1e6 * r['seconds'] / items:,.1f} | {r['cpu'] / r['seconds']:.2f} | "
              f"{r['rss_mb']:,.0f} | {base / r['seconds']:.2f}x |")
    digests = {r["digest"] for r in rows.values()}
    print(f"same {same}: {len(digests) == 1} ({', '.join(sorted(digests))})")


# --------------------------------------------------------------------- the synthetic dump

_LINK = re.compile(r"\[\[([^\[\]|#]*)(#[^\[\]|]*)?(\|[^\[\]]*)?\]\]")
_PAGE = re.compile(r"  <page>.*?</page>\n", re.S)


def sample_pages() -> tuple[str, list[str]]:
    """The sample dump's header (up to its first page) and its pages' XML."""
    xml = bz2.decompress(SAMPLE.read_bytes()).decode("utf-8")
    head = xml[:xml.index("<page>")].rstrip(" ")
    return head, _PAGE.findall(xml)


def _norm(title: str) -> str:
    t = title.replace("_", " ").strip()
    return t[:1].upper() + t[1:]


def copy_pages(pages: list[str], copy: int, first_id: int) -> list[str]:
    """The sample's articles as copy ``copy``: ids from ``first_id``, titles ``T (copy N)``,
    links kept inside the copy (a link to a page outside the sample goes to one of its
    articles, chosen by the link's hash)."""
    titles = [re.search(r"<title>(.*?)</title>", p).group(1) for p in pages]  # type: ignore[union-attr]
    known = {_norm(t) for t in titles}
    articles = [t for t, p in zip(titles, pages, strict=True)
                if "<redirect" not in p and "<ns>0</ns>" in p]

    def target(t: str) -> str:
        n = _norm(t)
        if n in known:
            return f"{n} (copy {copy})"
        h = int(hashlib.blake2b(n.encode(), digest_size=8).hexdigest(), 16)
        return f"{articles[h % len(articles)]} (copy {copy})"

    def link(m: re.Match[str]) -> str:
        t, section, label = m.group(1), m.group(2) or "", m.group(3)
        if ":" in t or not t.strip():  # categories, files, other namespaces, other wikis
            return m.group(0)
        return f"[[{target(t)}{section}{label or '|' + t}]]"

    out = []
    for k, (p, t) in enumerate(zip(pages, titles, strict=True)):
        if "<ns>0</ns>" not in p:
            continue
        p = p.replace(f"<title>{t}</title>", f"<title>{t} (copy {copy})</title>", 1)
        p = re.sub(r"<id>\d+</id>", f"<id>{first_id + k}</id>", p, count=1)
        p = re.sub(r'<redirect title="(.*?)"', lambda m: f'<redirect title="{target(m.group(1))}"',
                   p, count=1)
        a, b = p.index("<text"), p.index("</text>")
        out.append(p[:a] + _LINK.sub(link, p[a:b]) + p[b:])
    return out


def build_dump(copies: int, work: Path, name: str = "scale") -> dict[str, Any]:
    """A multistream dump of ``copies`` copies of the sample (streams of 100 pages, with its
    index, as Wikimedia publishes), kept in ``work`` and reused: ``{"dump", "copies",
    "pages", "xml_bytes", "bz2_bytes"}``."""
    dump = work / f"{name}{copies}-multistream.xml.bz2"
    index = work / f"{name}{copies}-multistream-index.txt.bz2"
    meta_path = work / f"{name}{copies}.json"
    if dump.exists() and index.exists() and meta_path.exists():
        return dict(json.loads(meta_path.read_text()))
    head, pages = sample_pages()
    idx: list[str] = []
    xml_bytes = n = 0
    with open(dump, "wb") as f:
        data = head.encode()
        f.write(bz2.compress(data))
        xml_bytes += len(data)
        for c in range(1, copies + 1):
            copy = copy_pages(pages, c, c * 1_000_000)
            for s in range(0, len(copy), 100):
                stream = copy[s:s + 100]
                off = f.tell()
                for p in stream:
                    pid = re.search(r"<id>(\d+)</id>", p).group(1)  # type: ignore[union-attr]
                    title = re.search(r"<title>(.*?)</title>", p).group(1)  # type: ignore[union-attr]
                    idx.append(f"{off}:{pid}:{title}")
                data = "".join(stream).encode()
                f.write(bz2.compress(data, 9))
                xml_bytes += len(data)
                n += len(stream)
        f.write(bz2.compress(b"</mediawiki>\n"))
    with bz2.open(index, "wt", encoding="utf-8") as ix:
        ix.write("\n".join(idx) + "\n")
    meta = {"dump": str(dump), "copies": copies, "pages": n, "xml_bytes": xml_bytes,
            "bz2_bytes": dump.stat().st_size}
    meta_path.write_text(json.dumps(meta))
    return meta


def silver_corpus(dump: Path, work: Path) -> Path:
    """The structure pass and the silver corpus of ``dump`` in ``work`` (kept and reused), with
    no infobox fact held back from the labels."""
    from kgx.corpus.build import build_corpus
    from kgx.structure.extract import ExtractOptions, extract

    graph, corpus = work / "graph", work / "corpus"
    if not (corpus / "stats.json").exists():
        extract(dump, graph, ExtractOptions(keep_documents=True, progress=False))
        build_corpus(graph, corpus, held_out_share=0.0)
    return corpus
