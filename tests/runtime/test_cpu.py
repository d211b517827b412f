"""The thread tuner follows the loop's own throughput (no timing of the machine itself)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from kgx.runtime.cpu import ThreadTuner, free_cores, usable_cores  # noqa: E402


def _run(tuner: ThreadTuner, rate_of: dict[int, float], batches: int) -> None:
    for _ in range(batches):
        threads = torch.get_num_threads()
        tuner.step(16 / rate_of[threads], 16)


@pytest.mark.skipif(usable_cores() < 2, reason="needs 2 usable cores to have a choice")
def test_tuner_moves_to_the_faster_thread_count_and_back() -> None:
    before = torch.get_num_threads()
    try:
        tuner = ThreadTuner(period=10, trial=3)
        torch.set_num_threads(2)
        tuner.threads = 2
        # Another process holds a core: one thread runs faster than two.
        _run(tuner, {1: 11.7, 2: 7.4}, 60)
        assert tuner.threads == 1 and torch.get_num_threads() == 1
        # The other process is gone: two threads are faster again.
        _run(tuner, {1: 12.6, 2: 22.0}, 60)
        assert tuner.threads == 2
    finally:
        torch.set_num_threads(before)


def test_free_cores_is_within_the_usable_ones() -> None:
    assert 1 <= free_cores(0.05) <= usable_cores()


def test_kgx_threads_overrides(monkeypatch) -> None:
    before = torch.get_num_threads()
    monkeypatch.setenv("KGX_THREADS", "1")
    try:
        tuner = ThreadTuner()
        _run(tuner, {1: 1.0, 2: 100.0}, 200)
        assert torch.get_num_threads() == 1 and not tuner.enabled
    finally:
        torch.set_num_threads(before)


def test_encoder_processes_fill_the_cores_and_as_much_of_a_gpu_as_its_memory_holds(
        monkeypatch) -> None:
    """Two torch threads a process on CPUs; on a GPU, a process a core, as many as its
    memory holds at READER_GPU_BYTES each (the GPU is never asked here)."""
    from types import SimpleNamespace

    import kgx.runtime.cpu
    from kgx.runtime import hardware

    monkeypatch.setattr(kgx.runtime.cpu, "usable_cores", lambda: 16)
    opts = SimpleNamespace(extract=SimpleNamespace(workers=16), device="cpu")
    assert hardware.encoder_workers(opts) == 8
    memory = {"cuda": 80 << 30}
    monkeypatch.setattr(hardware, "_gpu_bytes", lambda device: memory[device or "cuda"])
    monkeypatch.setattr(hardware, "_cuda", lambda: True)
    for device in ("cuda", None):
        opts.device = device
        assert hardware.encoder_workers(opts) == 16  # 80 GiB hold 40: the cores bound it
    memory["cuda"] = 8 << 30
    assert hardware.encoder_workers(opts) == 8 * (1 << 30) // hardware.READER_GPU_BYTES == 4
    memory["cuda"] = 1 << 30
    assert hardware.encoder_workers(opts) == 1  # always one
    opts.extract.workers = 2
    memory["cuda"] = 80 << 30
    assert hardware.encoder_workers(opts) == 2  # --workers bounds it too
