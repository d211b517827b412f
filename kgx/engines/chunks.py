"""One stage's chunks, run resumably on either engine: the chunk job that the structure,
corpus, entities, read and merge stages share.

A stage says what its chunks are, what a chunk's task is, and what to commit for it; the job
does the rest, the same way for all five::

    job = ChunkJob(work, key).open()          # the work folder: resumed, or cleared
    for chunk, results in job.run(partial(pool.map, fn), tasks, split):
        job.commit(chunk, info_of(results))   # the chunk and its rows, in one transaction
    job.close()

- :meth:`ChunkJob.__init__` makes the work folder (:func:`prepare_work`): a folder left by an
  interrupted run with the same key is resumed, any other cleared;
- :meth:`ChunkJob.open` opens the journal (in the stage's own database, where a chunk's rows
  must commit with it) and deletes the part files of chunks that a killed run did not commit;
- :meth:`ChunkJob.run` gives the engine's map only the chunks not yet committed, and yields
  each chunk's results once all are in. Given the stage's ``split``, a chunk whose worker died
  is retried in parts, its partial part files deleted first, and gathered back into one
  commit.
  A task that died on every retry comes as :class:`kgx.engines.local.Crashed`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from kgx.engines.journal import Journal, SplitChunks, drop_uncommitted, prepare_work
from kgx.engines.local import Crashed

JOURNAL_FILE = "journal.sqlite"

Task = tuple[Any, ...]
# The engine's map, called with the tasks to run and the job's ``split`` (None when the
# stage retries nothing in parts): ``functools.partial(pool.map, fn)`` or a
# ``kgx.engines.pools.map_steps`` wrapper.
EngineMap = Callable[..., Iterable[Any]]


def _chunk_of(result: Any) -> int:
    return int(result["chunk"])


class ChunkJob:
    """The chunks of one stage's run, committed one by one to a journal in ``work``.

    Args:
        work: The stage's work folder.
        key: What the output depends on: a folder with another key is cleared.
        parts: Sub-folder of ``work`` that holds the chunks' part files (named after their
            chunk, :func:`kgx.engines.journal.part_name`).
        chunk_of: A result -> its chunk id (default: ``result["chunk"]``).
    """

    def __init__(self, work: Path, key: str, *, parts: str = "parts",
                 chunk_of: Callable[[Any], int] = _chunk_of) -> None:
        self.work = work
        self.resumed = prepare_work(work, key)
        self.parts = work / parts
        self.parts.mkdir(exist_ok=True)
        self._chunk_of = chunk_of
        self.journal: Journal | None = None
        self.done: set[int] = set()
        self.stale = 0  # part files of uncommitted chunks deleted by open()

    def open(self, db: sqlite3.Connection | None = None) -> ChunkJob:
        """Open the journal in ``db`` (default: ``work/journal.sqlite``) and delete the part
        files of chunks it does not hold."""
        self.journal = Journal(db if db is not None
                               else sqlite3.connect(self.work / JOURNAL_FILE))
        self.done = self.journal.done()
        self.stale = drop_uncommitted(self.parts, self.done)
        return self

    @property
    def resuming(self) -> bool:
        """Whether chunks committed by an earlier, interrupted run are kept."""
        return self.resumed and bool(self.done)

    def infos(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(chunk, info)`` of every committed chunk, in chunk order."""
        assert self.journal is not None, "ChunkJob.open() first"
        return self.journal.infos()

    def todo(self, tasks: Iterable[Task]) -> Iterator[Task]:
        """The tasks whose chunk (the first item) is not committed."""
        return (t for t in tasks if t[0] not in self.done)

    def run(self, engine_map: EngineMap, tasks: Iterable[Task],
            split: Callable[[Task], list[Task]] | None = None
            ) -> Iterator[tuple[int, list[Any]]]:
        """Run the uncommitted ``tasks`` through ``engine_map``; yield ``(chunk, results)``
        once a chunk's results are all in (one result, or one per part of a retried chunk;
        a task that died on every retry as :class:`Crashed`). The caller commits.

        Args:
            split: A task whose worker died -> smaller tasks that retry it, each beginning
                with the chunk id (the chunk's part files are deleted first); None retries
                nothing in parts.
        """
        retried = None
        if split is not None:
            def retry(task: Task) -> list[Task]:
                for f in self.parts.glob(f"{task[0]:09d}*"):
                    f.unlink()
                return split(task)

            retried = SplitChunks(retry)
        for res in engine_map(self.todo(tasks), split=retried.split if retried else None):
            chunk = res.task[0] if isinstance(res, Crashed) else self._chunk_of(res)
            got = retried.gather(chunk, res) if retried is not None else [res]
            if got is not None:
                yield chunk, got

    def commit(self, chunk: int, info: dict[str, Any],
               write: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """Run ``write`` (the chunk's rows) and record ``chunk`` with ``info``, in one
        transaction."""
        assert self.journal is not None, "ChunkJob.open() first"
        self.journal.commit(chunk, info, write)
        self.done.add(chunk)

    def close(self) -> None:
        if self.journal is not None:
            self.journal.db.close()
