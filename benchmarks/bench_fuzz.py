"""The fuzz suite's long run: the same properties as ``tests/test_fuzz.py``, many more examples.

The test suite runs each property on a few dozen generated inputs; this script runs them with
hypothesis's ``long`` profile (3,000 examples for most properties, 300 timing checks, 1,000 raw
HTTP requests) and prints, per property, whether it held and the seconds taken; hypothesis's
statistics above the table give the examples tried. ``--profile default`` runs what the test
suite runs. Usage: ``python -m benchmarks.bench_fuzz [-k EXPR] [--profile long|default]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from benchmarks.common import printed_page

ROOT = Path(__file__).resolve().parent.parent


class _Counts:
    """A pytest plugin that records each test's outcome and duration."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, float]] = []

    def pytest_runtest_logreport(self, report) -> None:  # noqa: ANN001 - pytest's hook
        if report.when == "call":
            self.rows.append((report.nodeid.split("::")[-1], report.outcome, report.duration))


def run(profile: str, expr: str | None) -> tuple[int, _Counts, float]:
    import pytest

    os.environ["KGX_FUZZ_PROFILE"] = profile
    counts = _Counts()
    args = [str(ROOT / "tests" / "test_fuzz.py"), "-q", "-p", "no:cacheprovider",
            "--hypothesis-show-statistics"]
    if expr:
        args += ["-k", expr]
    t = time.monotonic()
    code = pytest.main(args, plugins=[counts])
    return code, counts, time.monotonic() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-k", dest="expr", help="only the properties matching this expression")
    ap.add_argument("--profile", default="long", choices=("default", "long"))
    args = ap.parse_args()
    code, counts, seconds = run(args.profile, args.expr)
    print(f"\nfuzz run, profile {args.profile}: {seconds:.0f} s")
    print(f"{'property':64} {'outcome':8} {'seconds':>8}")
    for name, outcome, dur in counts.rows:
        print(f"{name:64} {outcome:8} {dur:8.1f}")
    sys.exit(code)


if __name__ == "__main__":
    with printed_page(__file__, __doc__):
        main()
