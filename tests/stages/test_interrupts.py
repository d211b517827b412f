"""Stopping a run: Ctrl-C stops it within seconds and says how to go on; a kill -9 of the run
takes its workers with it; a failed start leaves nothing behind; a folder whose run did not
finish says so to its readers."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kgx.cli import app
from tests.support import ROOT, SAMPLE

# A process started in the background by a non-interactive shell (``nohup pytest &``) ignores
# SIGINT, and so do the processes it starts: there is no Ctrl-C to test there.
CTRL_C = pytest.mark.skipif(signal.getsignal(signal.SIGINT) is signal.SIG_IGN,
                            reason="SIGINT is ignored in this process (started in the "
                            "background by a non-interactive shell): Ctrl-C cannot be tested")

runner = CliRunner()


def group_gone(pgid: int, timeout: float) -> bool:
    """Whether every process of the group has ended within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@CTRL_C
def test_ctrl_c_in_the_read_stage_stops_within_seconds(readme_out: Path, tmp_path: Path,
                                                       busy_core: None) -> None:
    out = tmp_path / "out"
    shutil.copytree(readme_out, out)  # structure and entities reused: the run goes to reading
    env = {**os.environ, "KGX_PROGRESS_SECONDS": "0.3"}
    proc = subprocess.Popen([sys.executable, "-m", "kgx", "extract", str(SAMPLE), "-o", str(out),
                             "--model", str(out / "model"), "--workers", "2"],
                            cwd=ROOT, start_new_session=True, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "kgx.log"
    try:
        deadline = time.monotonic() + 240
        # Progress moves inside the one chunk of 106 documents, not only between chunks.
        while not log.exists() or not any(
                "[read] " in ln and "/106 documents" in ln
                and not ln.split("[read] ")[1].startswith("0/")
                for ln in log.read_text("utf-8").splitlines()):
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the read stage did not start"
            time.sleep(0.1)
        t = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        _, err = proc.communicate(timeout=15)
        stopped = time.monotonic() - t
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130 and stopped < 10, (proc.returncode, stopped, err[-1500:])
    assert "interrupted" in err and "run the same command again" in err
    assert "Traceback" not in err
    assert group_gone(proc.pid, 5), "a worker outlived the run"
    rep = json.loads((out / "report.json").read_text("utf-8"))
    assert rep["finished"] is False and "read stage" in rep["error"]
    res = runner.invoke(app, ["query", str(out), "ASK { ?s ?p ?o }"])
    assert res.exit_code == 0 and "did not finish" in res.output


STRUCTURE = ("import sys; from kgx.structure.extract import ExtractOptions, extract; "
             "extract(sys.argv[1], sys.argv[2], ExtractOptions(workers=2, progress=False, "
             "keep_documents=True))")


def test_kill_9_of_the_run_takes_its_workers(tmp_path: Path, busy_core: None) -> None:
    """Only the main process is killed, as `kill -9 PID` does: its forked workers end with
    it, and never hold the folder's lock, so the same command goes on at once."""
    from kgx.dump.repack import repack
    from kgx.engines.journal import count_committed
    from kgx.structure.extract import ExtractOptions, extract

    dump = tmp_path / "enwiki-multistream.xml.bz2"
    repack(SAMPLE, dump, 10)
    out = tmp_path / "out"
    journal = out / ".work" / "structure" / "aliases.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", STRUCTURE, str(dump), str(out)], cwd=ROOT,
                            start_new_session=True, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while count_committed(journal) < 3:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert group_gone(proc.pid, 5), "a worker outlived the run"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    rep = extract(dump, out, ExtractOptions(workers=2, progress=False, keep_documents=True))
    assert rep.finished and rep.resumed_chunks >= 3


def test_a_stage_that_stops_marks_the_report_until_a_run_finishes(tmp_path: Path) -> None:
    from kgx.outdir import run_state
    from kgx.stages.runner import Run, Stage, run_stages

    (tmp_path / "report.json").write_text(json.dumps({"finished": True, "error": None}))

    class Stops(Stage):
        name = "corpus"

        def outputs(self, run: Run) -> list[str]:
            return []

        def key(self, run: Run) -> str:
            return "k"

        def execute(self, run: Run) -> dict:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stages([Stops()], Run(SAMPLE, tmp_path, object(), lambda m: None))
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["finished"] is False and rep["error"] == "interrupted during the corpus stage"
    assert "did not finish (interrupted during the corpus stage)" in run_state(tmp_path)


def test_a_failed_start_leaves_nothing_behind(tmp_path: Path) -> None:
    rss = tmp_path / "feed.xml"
    rss.write_text('<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>'
                   "</channel></rss>")
    out = tmp_path / "out"
    res = runner.invoke(app, ["extract", str(rss), "-o", str(out), "--no-model"])
    assert res.exit_code == 2 and "<rss>" in res.output and "expected <mediawiki>" in res.output
    assert not out.exists()
    file = tmp_path / "a-file"
    file.write_text("x")
    res = runner.invoke(app, ["extract", str(SAMPLE), "-o", str(file), "--no-model"])
    assert res.exit_code == 2 and "is a file" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["extract", str(SAMPLE), "-o", str(file / "out"), "--no-model"])
    assert res.exit_code == 2 and "is a file" in res.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_refused(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        res = runner.invoke(app, ["extract", str(SAMPLE), "-o", str(ro / "out"), "--no-model"])
        assert res.exit_code == 2 and "cannot be written" in res.output
    finally:
        ro.chmod(0o755)


def test_a_read_only_output_folder_is_refused_unit(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """As root, os.access says every folder is writable: the check itself, told otherwise."""
    from kgx.outdir import check_output

    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ValueError, match="cannot be written"):
        check_output(tmp_path / "out")


def test_a_dump_read_from_a_pipe(tmp_path: Path) -> None:
    """`bzcat dump | kgx extract /dev/stdin`: the pipe is opened once and read once."""
    out = tmp_path / "out"
    bzcat = subprocess.Popen(["bzcat", str(SAMPLE)], stdout=subprocess.PIPE)
    res = subprocess.run([sys.executable, "-m", "kgx", "extract", "/dev/stdin", "-o", str(out),
                          "--no-model", "--workers", "1", "--no-progress"], cwd=ROOT,
                         stdin=bzcat.stdout, capture_output=True, text=True, timeout=300)
    bzcat.wait()
    assert res.returncode == 0, res.stderr[-2000:]
    rep = json.loads((out / "report.json").read_text("utf-8"))
    assert rep["finished"] and rep["pages"]["read"] == 206


@CTRL_C
def test_query_errors_timeouts_and_interrupts(readme_out: Path, tmp_path: Path) -> None:
    bad = tmp_path / "q.rq"
    bad.write_bytes("SELECT ?x WHERE { ?x rdfs:label \"caf\xe9\" }".encode("latin-1"))
    res = runner.invoke(app, ["query", str(readme_out), f"@{bad}"])
    assert res.exit_code == 2 and "not UTF-8" in res.output and "Traceback" not in res.output
    slow = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"
    t = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "kgx", "query", str(readme_out), slow,
                          "--timeout", "1"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 3 and "--timeout 1 s" in res.stderr and time.monotonic() - t < 20
    proc = subprocess.Popen([sys.executable, "-m", "kgx", "query", str(readme_out), slow],
                            cwd=ROOT, start_new_session=True, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4)  # the interpreter starts and the query runs
        t = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 130 and "interrupted" in err and time.monotonic() - t < 5
    finally:  # a query that did not stop is not left running its cartesian product
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@CTRL_C
def test_a_run_in_this_process_leaves_ctrl_c_working(tmp_path: Path) -> None:
    """With no worker processes the pages are read in this process: Ctrl-C must still stop it
    (a worker's "ignore Ctrl-C" once stuck to the caller and to every program it started)."""
    from kgx.structure.extract import ExtractOptions, extract

    before = signal.getsignal(signal.SIGINT)
    extract(SAMPLE, tmp_path / "out", ExtractOptions(workers=0, progress=False, limit=5))
    assert signal.getsignal(signal.SIGINT) is before is not signal.SIG_IGN


def test_a_full_disk_during_the_store_load_keeps_the_structure_pass(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RocksDB says "No space left on device" in an OSError without an errno: a clear error
    (DiskFull), and the same command then loads the store without reading the dump again."""
    import kgx.rdf.store
    from kgx.engines.journal import DiskFull
    from kgx.stages.pipeline import PipelineOptions, run
    from kgx.structure.extract import ExtractOptions

    real = kgx.rdf.store.load_store

    def full(*a: object, **k: object) -> object:
        raise OSError("IO error: No space left on device: While appending to file: 000012.sst")

    import kgx.structure.extract
    monkeypatch.setattr(kgx.structure.extract, "load_store", full)
    opts = PipelineOptions(extract=ExtractOptions(workers=1, progress=False), use_model=False,
                           index=False, progress=False)
    with pytest.raises(DiskFull, match="no space left.*structure stage"):
        run(SAMPLE, tmp_path / "out", opts, log=lambda m: None)
    monkeypatch.setattr(kgx.structure.extract, "load_store", real)
    rep = run(SAMPLE, tmp_path / "out", opts, log=lambda m: None)
    assert rep["finished"] and rep["resumed_chunks"] > 0
    assert rep["pages"]["read"] == 206
