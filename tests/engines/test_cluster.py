"""``--engine ray``: the stages' chunks on Ray actors give the local engine's graph; a chunk
whose actor dies is run again, and one that dies every time is reported as lost.

Ray is started on this machine by each test (loopback only) and shut down at its end.
Skipped, with the reason, where Ray is not installed (``pip install 'kgx[cluster]'``).
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kgx.engines.ray import ray_available
from kgx.structure.extract import ExtractOptions
from tests.support import SAMPLE, pipeline_options

# Each test starts a Ray of its own (seconds each, 2.5 minutes in all on 2 cores): the slow
# run of .ci/run runs them.
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not ray_available(),
                                 reason="Ray is not installed: pip install 'kgx[cluster]'")]


def sorted_lines(path: Path) -> list[str]:
    return sorted(path.read_text(encoding="utf-8").splitlines())


def test_structure_on_ray_equals_local(tmp_path: Path) -> None:
    from kgx.stages.pipeline import PipelineOptions, run

    graphs = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        rep = run(SAMPLE, out, PipelineOptions(
            extract=ExtractOptions(workers=2, progress=False), use_model=False, index=False,
            progress=False, engine=engine), log=lambda m: None)
        assert rep["finished"] and not rep["pages"]["lost"]
        graphs[engine] = sorted_lines(out / "graph.nq")
        if engine == "ray":
            info = rep["pipeline"]["engine"]
            assert info["name"] == "ray" and info["nodes"] == 1
            assert sum(info["chunks_per_node"].values()) > 0
            assert info["chunks_per_node"].keys() == info["task_seconds_per_node"].keys()
    assert graphs["ray"] == graphs["local"]


def model_options(readme_out: Path, engine: str) -> object:
    """The whole pipeline with the README fixture's (tiny) reader, 2 workers, on ``engine``."""
    opts = pipeline_options(readme_out / "model")
    opts.extract.workers = 2
    opts.engine = engine
    return opts


@pytest.fixture(scope="module")
def local_run(short_articles: Path, readme_out: Path,  # noqa: F811
              tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 40-article wiki through the whole pipeline on the local engine."""
    from kgx.stages.pipeline import run

    out = tmp_path_factory.mktemp("local") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KGX_THREADS", "1")  # the same arithmetic in every process
        run(short_articles, out, model_options(readme_out, "local"), log=lambda m: None)
    return out


@pytest.mark.parametrize("step_pools", ["auto", "pools"])
def test_model_stages_on_ray_equal_local(step_pools: str, short_articles: Path,  # noqa: F811
                                         readme_out: Path, local_run: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """With no GPU the read stage's steps run fused on one actor ("auto"); forced into a
    pool per step (the Ray Data pipeline a GPU cluster gets), they give the same graph."""
    import kgx.engines.ray
    from kgx.stages.pipeline import run

    monkeypatch.setattr(kgx.engines.ray, "STEP_POOLS", step_pools)
    monkeypatch.setenv("KGX_THREADS", "1")
    rep = run(short_articles, tmp_path / "ray", model_options(readme_out, "ray"),
              log=lambda m: None)
    assert rep["pipeline"]["read"]["chunks"] >= 10
    assert sorted_lines(tmp_path / "ray" / "graph.nq") == sorted_lines(local_run / "graph.nq")


# ---------------------------------------------------------------- faults, on the pool itself


def _square_or_die(x: int) -> int:
    """A chunk function: kills its own process on the chunks it is told to."""
    if x in (3, 30):  # chunk 3 dies whole; its part 30 dies again when retried alone
        os._exit(1)
    return x * x


def _split(task: tuple[int]) -> list[tuple[int]]:
    return [(task[0] * 10,), (task[0] * 10 + 1,)]


def _nothing() -> None:
    pass


def test_a_killed_actor_costs_only_its_chunk() -> None:
    import ray.cloudpickle

    from kgx.engines.local import Crashed
    from kgx.engines.ray import RayPool, ray_session, stop_autoscaler_monitor

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # tests/ is not installed
    with ray_session(None, 2, lambda m: None):
        pool = RayPool(None, 2, initializer=_nothing)
        out = list(pool.map(_square_or_die, [(i,) for i in range(6)], split=_split))
        # the session's shutdown ends Ray's autoscaler monitor first, without the second
        # Ray gives it after SIGTERM: where Ray keeps it has not moved
        monitors = [i.process for i in
                    ray._private.worker._global_node.all_processes.get("monitor", [])]
        assert monitors and all(m.poll() is None for m in monitors)
        stop_autoscaler_monitor(ray)
        assert all(m.poll() is not None for m in monitors)
    assert out[:3] == [0, 1, 4] and out[5:] == [16, 25]
    # chunk 3 died; retried as its parts 30 and 31: 30 dies again and is reported, 31 is done
    assert isinstance(out[3], Crashed) and out[3].task == (30,) and out[4] == 31 * 31
    assert pool.crashes == 2


def _pid_or_die(x: int) -> int:
    """A chunk function: its process's id, or the process killed on chunk 3."""
    if x == 3:
        os._exit(1)
    return os.getpid()


def test_a_pool_that_reuses_workers_keeps_its_actors_until_closed() -> None:
    """``reuse_workers``: a second map runs on the first map's actors (the same processes);
    an actor that dies is replaced and the next map runs; a map left half way ends the
    actors (they may hold chunks); and :meth:`close` gives their CPUs back: on 2 CPUs, a
    pool started while another held both would wait for :data:`REPLACE_TIMEOUT`."""
    import ray.cloudpickle

    from kgx.engines.local import Crashed
    from kgx.engines.ray import RayPool, ray_session

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

    def run() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        with ray_session(None, 2, lambda m: None):
            pool = RayPool(None, 2, initializer=_nothing, reuse_workers=True)
            seen["first"] = set(pool.map(_pid_or_die, [(i,) for i in (0, 1, 2, 4)]))
            seen["second"] = set(pool.map(_pid_or_die, [(i,) for i in (0, 1, 2, 4)]))
            seen["deaths"] = list(pool.map(_pid_or_die, [(i,) for i in (0, 3, 4)]))
            seen["after_deaths"] = set(pool.map(_pid_or_die, [(i,) for i in (0, 1, 2)]))
            half = pool.map(_pid_or_die, [(i,) for i in range(20)])
            next(half)
            half.close()
            seen["actors_after_half"] = list(pool._actors)
            seen["fresh"] = set(pool.map(_pid_or_die, [(0,), (1,), (2,)]))
            pool.close()
            seen["next_pool"] = set(RayPool(None, 2, initializer=_nothing).map(
                _pid_or_die, [(0,), (1,), (2,), (4,)]))
        return seen

    seen = _in_time(120, run)
    assert len(seen["first"]) == 2 and seen["second"] == seen["first"]
    assert isinstance(seen["deaths"][1], Crashed)  # chunk 3, once and once retried
    assert all(isinstance(p, int) for p in seen["after_deaths"])
    assert seen["actors_after_half"] == []
    assert seen["fresh"] and not seen["fresh"] & (seen["first"] | seen["after_deaths"])
    assert len(seen["next_pool"]) == 2 and not seen["next_pool"] & seen["fresh"]


def _in_time(seconds: float, fn: Callable[[], Any]) -> Any:
    """``fn()``, or a test failure once it has run ``seconds`` (a hang fails, not stalls);
    an exception of ``fn`` is raised here."""
    box: dict[str, Any] = {}

    def call() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - raised in the test's thread below
            box["error"] = exc

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        pytest.fail(f"still waiting after {seconds} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def test_an_actor_counted_on_a_lost_nodes_cpu_is_given_up(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """Ray counts a lost node's CPUs until it knows the node is lost: the pool asks for an
    actor that will never start. Once the cluster has fewer CPUs than the pool has actors,
    that actor is given up and its chunk runs on the others, in its place in the order."""
    import ray
    import ray.cloudpickle

    import kgx.engines.ray
    from kgx.engines.ray import RayPool, ray_session

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(kgx.engines.ray, "POLL_SECONDS", 0.2)
    monkeypatch.setattr(kgx.engines.ray, "REPLACE_TIMEOUT", 1e9)  # not the rule at work here

    def run() -> tuple[list[int], int, int]:
        with ray_session(None, 2, lambda m: None):
            real = ray.cluster_resources
            calls = []

            def stale() -> dict[str, float]:  # the first look still counts a third CPU
                calls.append(1)
                return {**real(), "CPU": 3.0} if len(calls) == 1 else real()

            monkeypatch.setattr(ray, "cluster_resources", stale)
            pool = RayPool(None, 3, initializer=_nothing)
            out = list(pool.map(_square_or_die, [(i,) for i in (0, 1, 2, 4, 5, 6, 7)]))
            return out, pool.crashes, len(calls)

    out, crashes, looks = _in_time(120, run)
    assert out == [0, 1, 4, 16, 25, 36, 49] and crashes == 0 and looks > 1


def test_an_actor_whose_cpu_went_to_another_job_is_given_up_in_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another actor takes the CPU the pool's second actor needed: after
    :data:`kgx.engines.ray.REPLACE_TIMEOUT` the pool goes on without it."""
    import ray
    import ray.cloudpickle

    import kgx.engines.ray
    from kgx.engines.ray import RayPool, ray_session

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(kgx.engines.ray, "POLL_SECONDS", 0.2)
    monkeypatch.setattr(kgx.engines.ray, "REPLACE_TIMEOUT", 1.0)

    def run() -> list[int]:
        with ray_session(None, 2, lambda m: None):
            other = ray.remote(num_cpus=1)(_OtherJob).remote()
            ray.get(other.ping.remote())
            pool = RayPool(None, 2, initializer=_nothing)
            return list(pool.map(_square_or_die, [(i,) for i in (1, 2, 4, 5)]))

    assert _in_time(120, run) == [1, 4, 16, 25]


class _OtherJob:
    def ping(self) -> bool:
        return True


def test_progress_lines_name_the_nodes_and_their_throughput() -> None:
    import ray.cloudpickle

    from kgx.engines.ray import NODE_CHUNKS, RayPool, ray_session
    from kgx.runtime.progress import Progress

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    lines = []
    with ray_session(None, 2, lambda m: None):
        NODE_CHUNKS.clear()
        pool = RayPool(None, 2, initializer=_nothing)
        with Progress(total=5, unit="chunks", enabled=False, desc="squares") as bar:
            for _ in pool.map(_square_or_die, [(i,) for i in (1, 2, 4, 5, 6)]):
                bar.update(1)
                lines.append(bar.line())
            after = bar.line()
    assert lines[-1].startswith("[squares] 5/5 chunks (100%)")
    node, (chunks, seconds) = next(iter(NODE_CHUNKS.items()))
    assert lines[-1].endswith(f"1 node(s); node {node[:6]}: 5 chunks, "
                              f"{float(lines[-1].rsplit(', ', 1)[1][:-2]):.2f}/s")
    assert chunks == 5 and seconds >= 0 and "node(s)" not in after


class _Double:
    """A first step: called with a task's items."""

    def __call__(self, x: int) -> int:
        return 2 * x


class _DieOrPair:
    """A model step: kills its own process on 6 every time, on 4 the first time only."""

    def __init__(self, marker: str, threads: int | None = None) -> None:
        self.marker = Path(marker)
        self.threads = threads

    def __call__(self, x: int) -> tuple[int, int | None]:
        if x == 6 or (x == 4 and not self.marker.exists()):
            self.marker.touch()
            os._exit(1)
        if x == 8:
            raise ValueError("eight is not welcome")
        return x, self.threads


def test_steps_on_ray_data_retry_a_killed_actor_and_report_a_chunk_that_always_dies(
        tmp_path: Path) -> None:
    """Each step a pool of its own: a task whose actor died once is done on a restarted one;
    one that kills every actor is yielded as lost once the stream ends; the model step gets
    torch threads for its CPUs. A task queued on an actor that the always-dying task kills
    loses a retry with it each time, so now and then the task that died once is lost as well
    (seen once in CI): it is then reported, never dropped, and ``map_steps`` reads every lost
    task again in parts (the next test)."""
    import ray.cloudpickle

    from kgx.engines.local import Crashed
    from kgx.engines.pools import Step
    from kgx.engines.ray import map_step_pools, ray_session, step_pools

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    steps = [Step(_Double), Step(_DieOrPair, (str(tmp_path / "died"),), model=True)]
    with ray_session(None, 2, lambda m: None):
        out = list(map_step_pools(steps, [(i,) for i in range(4)]))
    threads = math.ceil(step_pools(steps, 2.0, 0)[1][1])
    done = sorted(r for r in out if not isinstance(r, Crashed))
    lost = sorted(r.task for r in out if isinstance(r, Crashed))
    assert (tmp_path / "died").exists()  # the task of 4 killed its actor once
    assert done == [(0, threads), (2, threads), (4, threads)] and lost == [(3,)] or \
        done == [(0, threads), (2, threads)] and lost == [(2,), (3,)]  # lost beside 3
    assert all(isinstance(r, Crashed) for r in out[len(done):])  # after every chunk done


def _split_apart(task: tuple[int]) -> list[tuple[int]]:
    """The task and a part far from the others (a part of 2 or 3 never meets the 4 and 6
    that kill, nor the 8 that raises)."""
    return [task, (task[0] + 10,)]


def test_a_chunk_lost_on_the_pools_is_read_again_in_parts(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """The pools lose chunk 3 (its model step kills every actor); it is read again as its
    parts 3 and 13 in a local worker: 13 is done, 3 alone is reported lost. Now and then
    a chunk queued on an actor that 3 kills is lost beside it (see the test above): chunk 2
    is then read again as 2 and 12, and both are done (0 likewise as 0 and 10)."""
    import ray.cloudpickle

    import kgx.engines.ray
    from kgx.engines.local import Crashed
    from kgx.engines.pools import Step
    from kgx.engines.ray import map_steps, ray_session

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(kgx.engines.ray, "STEP_POOLS", "pools")
    steps = [Step(_Double), Step(_DieOrPair, (str(tmp_path / "died"),), model=True)]
    with ray_session(None, 2, lambda m: None):
        out = list(map_steps(steps, [(0,), (2,), (3,)], 2, split=_split_apart))
    done = sorted(r[0] for r in out if not isinstance(r, Crashed))
    again = [x for x in done if x not in (0, 4, 26)]  # far parts of chunks lost beside 3
    assert sorted(set(done) - set(again)) == [0, 4, 26] and len(set(done)) == len(done)
    assert set(again) <= {20, 24}
    assert [r.task for r in out if isinstance(r, Crashed)] == [(3,)]


def test_chunks_lost_beside_the_dying_one_are_read_again_in_parts_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rare case of the test above, forced: the pools yield chunk 0 and lose 2 beside 3.
    Both lost chunks are read again in parts; only the part that kills its worker is lost."""
    import ray

    import kgx.engines.ray
    from kgx.engines.local import Crashed
    from kgx.engines.pools import Step
    from kgx.engines.ray import map_steps

    def pools_losing_2_and_3(steps: list[Step], tasks: list[tuple[int]]):
        assert list(tasks) == [(0,), (2,), (3,)]
        yield 0, None
        yield Crashed((2,))
        yield Crashed((3,))

    monkeypatch.setattr(kgx.engines.ray, "STEP_POOLS", "pools")
    monkeypatch.setattr(kgx.engines.ray, "map_step_pools", pools_losing_2_and_3)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    (tmp_path / "died").touch()  # 4 no longer kills
    steps = [Step(_Double), Step(_DieOrPair, (str(tmp_path / "died"),), model=True)]
    out = list(map_steps(steps, [(0,), (2,), (3,)], 2, split=_split_apart))
    assert sorted(r[0] for r in out if not isinstance(r, Crashed)) == [0, 4, 24, 26]
    assert [r.task for r in out if isinstance(r, Crashed)] == [(3,)]


def test_a_steps_own_error_on_ray_data_is_raised_with_its_traceback(tmp_path: Path) -> None:
    import ray.cloudpickle

    from kgx.engines.pools import Step
    from kgx.engines.ray import map_step_pools, ray_session

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    steps = [Step(_Double), Step(_DieOrPair, (str(tmp_path / "died"),), model=True)]
    with ray_session(None, 2, lambda m: None), \
            pytest.raises(RuntimeError, match="(?s)step failed on Ray.*eight is not welcome"):
        list(map_step_pools(steps, [(4,)]))


def test_step_pools_fit_the_cluster() -> None:
    """The model step gets the GPUs (two actors on each), or two CPUs in three; every pool
    fits the cluster."""
    from kgx.engines.pools import Step
    from kgx.engines.ray import step_pools

    steps = [Step(int), Step(int, model=True), Step(int)]
    for cpus, gpus in ((2.0, 0), (16.0, 0), (16.0, 1), (64.0, 4), (1.0, 0), (2.0, 1)):
        pools = step_pools(steps, cpus, gpus)
        assert sum(n * c for n, c, _ in pools) <= cpus + 1e-9 or gpus, (cpus, gpus, pools)
        assert sum(n * g for n, _, g in pools) == gpus
        assert all(n >= 1 and c > 0 for n, c, _ in pools)
    assert step_pools(steps, 16.0, 0)[1] == (5, 2.0, 0.0)
    assert step_pools(steps, 16.0, 1)[1] == (2, 1.0, 0.5)  # two model actors share a GPU
    assert step_pools(steps, 64.0, 4)[1] == (8, 1.0, 0.5)


# ---------------------------------------------------------------- resume across engines


@pytest.mark.parametrize("first,then", [("local", "ray"), ("ray", "local")])
def test_a_run_killed_on_one_engine_is_finished_on_the_other(
        first: str, then: str, short_articles: Path, readme_out: Path,  # noqa: F811
        local_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The read stage is killed after 3 committed chunks on one engine; the same command on
    the other engine skips those chunks and ends with the uninterrupted run's graph."""
    from kgx.engines.journal import Journal
    from kgx.stages.pipeline import run

    monkeypatch.setenv("KGX_THREADS", "1")  # the same arithmetic in every process
    commit = Journal.commit
    read_commits: list[int] = []

    def killed_after_three(self: Journal, chunk: int, info: dict, write=None) -> None:  # noqa: ANN001
        if "/read/" in self.db.execute("PRAGMA database_list").fetchone()[2]:
            if len(read_commits) == 3:
                raise KeyboardInterrupt
            read_commits.append(chunk)
        commit(self, chunk, info, write)

    out = tmp_path / "out"
    monkeypatch.setattr(Journal, "commit", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        run(short_articles, out, model_options(readme_out, first), log=lambda m: None)
    monkeypatch.setattr(Journal, "commit", commit)
    log: list[str] = []
    rep = run(short_articles, out, model_options(readme_out, then), log=log.append)
    assert any("[read] resuming: 3 chunks committed before" in m for m in log), log
    assert rep["pipeline"]["engine"]["name"] == then
    assert sorted_lines(out / "graph.nq") == sorted_lines(local_run / "graph.nq")


# ---------------------------------------------------------------- two nodes, one lost


@pytest.mark.slow
def test_a_two_node_cluster_that_loses_a_node_gives_the_local_graph(tmp_path: Path) -> None:
    """``ray start --head`` plus a second node on this machine; the second node's raylet is
    killed while the structure stage's pages are read; the run ends with the local engine's
    graph, its lost chunks rerun on the node left. (``benchmarks/bench_cluster.py`` does
    the same on a 4x synthetic dump, with timings.)"""
    import signal
    import subprocess
    import time

    from kgx.dump.repack import repack
    from tests.support.ray_nodes import TwoNodeCluster

    dump = tmp_path / "sample-multistream.xml.bz2"
    repack(SAMPLE, dump, pages_per_stream=5)  # 43 streams: chunks enough to kill one

    def extract(out: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "kgx", "extract", str(dump), "-o", str(out), "--no-model",
             "--no-progress", "--workers", "2", *extra], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)

    local = extract(tmp_path / "local")
    assert local.wait(300) == 0, local.stdout.read()  # type: ignore[union-attr]
    with TwoNodeCluster() as cluster:
        run = extract(tmp_path / "ray", "--engine", "ray", "--ray-address", cluster.address,
                      env=cluster.env)
        parts = tmp_path / "ray" / ".work" / "structure" / "parts"
        end = time.monotonic() + 120
        while time.monotonic() < end and run.poll() is None and \
                not (parts.exists() and len(list(parts.iterdir())) >= 6):
            time.sleep(0.05)
        raylet = cluster.second_raylet()
        assert raylet and run.poll() is None, "the run ended before the kill"
        os.kill(raylet, signal.SIGKILL)
        output, _ = run.communicate(timeout=400)
        assert run.returncode == 0, output
    report = json.loads((tmp_path / "ray" / "report.json").read_text())
    assert report["pipeline"]["engine"]["nodes"] == 2 and not report["pages"]["lost"]
    assert sorted_lines(tmp_path / "ray" / "graph.nq") == \
        sorted_lines(tmp_path / "local" / "graph.nq")
