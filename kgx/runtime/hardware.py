"""How many processes a stage runs, from the cores and the GPUs and their memory."""

from __future__ import annotations

from typing import Any


def read_workers(opts: Any) -> int:
    """Read processes (:func:`encoder_workers`); 0, this process, when ``--read-sentences``
    caps the count, which must then be exact."""
    return 0 if opts.read_sentences is not None else encoder_workers(opts)


# GPU memory a reading process may take: its CUDA context (about half a GiB with torch's
# kernels and cuBLAS workspace, NVIDIA's and PyTorch's usual figure, not measured here), the
# encoder (90 MB for the default MiniLM in float32) and one predict call's activations (at
# most 256 sentences of 128 tokens: 32,768 tokens x the feed-forward's 1,536 floats, 0.2 GB
# a layer, freed layer by layer under inference mode).
READER_GPU_BYTES = 2 << 30


def encoder_workers(opts: Any) -> int:
    """Processes that run an encoder: every core busy, two torch threads each on a CPU. On a
    GPU, one a core, as many as its memory holds (:data:`READER_GPU_BYTES` each), sharing
    it: each process splits and links its own chunks on its core, and the GPU's part of a
    sentence is small (0.775 GFLOP: about 1 us at the dense bfloat16 rate of an H100's
    datasheet, not measured here), so the cores, not the GPU, bound the read stage."""
    from kgx.runtime.cpu import usable_cores

    n = min(opts.extract.workers or 1, usable_cores())
    gpu = opts.device not in (None, "cpu") or (opts.device is None and _cuda())
    if not gpu:
        return max(1, n // 2)
    return max(1, min(n, _gpu_bytes(opts.device) // READER_GPU_BYTES))


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _gpu_bytes(device: str | None) -> int:
    """The memory of the GPU ``device`` names (``cuda``, ``cuda:1``; None: the first)."""
    import torch

    dev = torch.device(device or "cuda")
    return int(torch.cuda.get_device_properties(dev.index or 0).total_memory)
