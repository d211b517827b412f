"""kgx's benchmarks: each prints its figures and writes its own page in ``docs/benchmarks/``.

Run one as ``python -m benchmarks.NAME [args]`` from the repository root (see
``benchmarks/README.md``).
"""
