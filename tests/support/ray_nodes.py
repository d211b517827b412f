"""A Ray cluster of two nodes on this machine, for the cluster tests and
``benchmarks/bench_cluster.py``.

``ray start --head`` and a second ``ray start --address``, each with its own CPUs, both
announcing 127.0.0.1, with token authentication and a token of the cluster's own, and a Ray
temporary folder of its own. It is stopped by the PIDs of its own processes (those whose
environment names its token), never by ``ray stop``, which stops every Ray on the machine.

Ray 2.60's servers listen on every interface whatever address a node announces (checked with
``ss -ltnp``); the token is what keeps other hosts out.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TwoNodeCluster:
    """Start with :meth:`start` (or ``with``); ``address`` is what ``--ray-address`` takes and
    ``env`` what a process that joins it needs."""

    def __init__(self, cpus: tuple[int, int] = (1, 1)) -> None:
        self.cpus = cpus
        # Short: Ray's Unix sockets live under it, and their paths are limited to 107 bytes.
        self.temp = Path(tempfile.mkdtemp(prefix="kgxray-", dir="/tmp"))
        token = self.temp / "token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        self.port, self.node_port = free_port(), free_port()
        self._seen: set[int] = set()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
                    "RAY_USAGE_STATS_ENABLED": "0"}

    def start(self) -> TwoNodeCluster:
        common = ["--node-ip-address=127.0.0.1", "--disable-usage-stats"]
        for cmd in ([RAY, "start", "--head", f"--port={self.port}", f"--temp-dir={self.temp}",
                     "--include-dashboard=false", f"--num-cpus={self.cpus[0]}", *common],
                    [RAY, "start", f"--address={self.address}",
                     f"--node-manager-port={self.node_port}", f"--num-cpus={self.cpus[1]}",
                     *common]):
            res = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=180)
            if res.returncode:
                self.stop()
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}"
                                   f"{res.stderr[-2000:]}")
        self.pids()  # seen while their parents live
        return self

    def pids(self) -> list[int]:
        """This cluster's processes: those whose environment carries its token's path (every
        process ``ray start`` spawns inherits it), their descendants, and every one seen so
        before (an agent that renamed itself ``ray::...`` and lost its parent shows neither)."""
        mark = f"RAY_AUTH_TOKEN_PATH={self.env['RAY_AUTH_TOKEN_PATH']}".encode()
        parents: dict[int, int] = {}
        for p in Path("/proc").iterdir():
            if not p.name.isdigit() or int(p.name) == os.getpid():
                continue
            try:
                stat = (p / "stat").read_text()
                parents[int(p.name)] = int(stat.rsplit(")", 1)[1].split()[1])
                if mark in (p / "environ").read_bytes().split(b"\0"):
                    self._seen.add(int(p.name))
            except (OSError, ValueError, IndexError):
                continue
        grew = True
        while grew:
            before = len(self._seen)
            self._seen |= {pid for pid, ppid in parents.items() if ppid in self._seen}
            grew = len(self._seen) > before
        return sorted(pid for pid in self._seen if pid in parents)

    def second_raylet(self) -> int | None:
        """The PID of the second node's raylet."""
        mark = f"--node_manager_port={self.node_port}".encode()
        for pid in self.pids():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"raylet" in cmd.split(b"\0")[0] and mark in cmd:
                return pid
        return None

    def stop(self) -> None:
        """SIGTERM to this cluster's processes, SIGKILL to those left after 10 s."""
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 0.0)):
            pids = self.pids()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            end = time.monotonic() + wait
            while pids and time.monotonic() < end and self.pids():
                time.sleep(0.2)
        shutil.rmtree(self.temp, ignore_errors=True)

    def __enter__(self) -> TwoNodeCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
