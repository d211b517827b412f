"""What the read stage's model costs in arithmetic, and what a GPU must deliver for it.

The dump-scale projection (``bench_scale.py``) leaves the model's reading to a GPU, on the
condition that the GPU reads as fast as the CPU steps around it: for the English dump, about
9,500 sentences a second. This script turns that condition into a number a device's
datasheet can be checked against, from measurements:

* sentences cut from the first documents of a kgx output, exactly as the read stage cuts and
  tokenises them (:class:`kgx.read.steps.SentenceSplitter`), then predicted as it predicts
  them (:class:`kgx.read.steps.ChunkPredictor`: the same batches and windows);
* the floating-point operations of that prediction, counted by PyTorch's
  ``FlopCounterMode`` (matrix products and attention: the encoder, the tagger and the
  relation head; element-wise work is not counted);
* the prediction's speed on this machine, and the hardware limit measured in the same run:
  the best dense matrix product rate of this device (float32 on a CPU, bfloat16 on a GPU),
  so that the share of it the reader reaches is known.

Then: FLOP/s needed = the sentences a second asked for x FLOPs a sentence, and the matrix
product rate a device needs at the share of its limit this run reached. On a GPU the script
measures the reading itself instead of relying on the arithmetic.

It also times the model process's own work outside the encoder's forward passes (windows,
padding, tag decoding, relation pairs): no device shortens it, so it bounds what one model
process can read, however fast its GPU.

Usage: ``python -m benchmarks.bench_read_flops OUT [--model DIR] [--sentences N]
[--need 9500] [--max-padding inf]`` (``inf``: the batching before the predictor bounded its
padding).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import printed_page


def matmul_peak(device: torch.device, seconds: float = 2.0) -> tuple[float, str]:
    """The best dense matrix product rate (FLOP/s) of ``device`` over a few sizes, and the
    dtype it was measured in (float32 on a CPU, bfloat16 on a GPU)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    best = 0.0
    for n in (512, 1024, 2048) if device.type == "cpu" else (4096, 8192):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        torch.mm(a, b)  # warm-up
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 3:
            torch.mm(a, b)
            reps += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t0))
    return best, str(dtype).replace("torch.", "")


def read_cost(out: Path, model: Path, sentences: int, device: str | None,
              max_padding: float | None = None) -> dict[str, Any]:
    """Sentences of ``out``'s first documents through the read stage's first two steps: their
    count, tokens, seconds of prediction and FLOPs (and the padded tokens the encoder took)."""
    from torch.utils.flop_counter import FlopCounterMode

    from kgx.read.steps import BATCH_SENTENCES, ChunkPredictor, SentenceSplitter
    from kgx.stages.read import DOCUMENTS_FILE

    docs = out / DOCUMENTS_FILE
    with docs.open("rb") as f:
        n_docs = sum(1 for _ in f)
    split = SentenceSplitter(out, model)  # loads the tokenizer once for both reads
    chunk = split(0, str(docs), 0, n_docs, sentences)
    n, toks = len(chunk.sentences), sum(len(t.ids) + 2 for t in chunk.toks)  # [CLS], [SEP]
    predictor = ChunkPredictor(model, device, 0.5, threads=torch.get_num_threads())
    if max_padding is not None:
        predictor.predictor.max_padding = max_padding
    warm = split(0, str(docs), 0, n_docs, 64)
    predictor(warm)
    dev = predictor.predictor.device
    kept = list(chunk.toks)
    t0 = time.perf_counter()
    predictor(chunk)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    chunk.toks = kept
    with FlopCounterMode(display=False) as counter:
        predictor(chunk)
    chunk.toks = kept
    encoder_s = time_in_encoder(predictor, chunk)
    padded = 0  # the encoder's input, batched as ChunkPredictor batches it
    for i in range(0, n, BATCH_SENTENCES):
        wins = predictor.predictor._windows(kept[i: i + BATCH_SENTENCES])
        padded += sum(len(b) * max(len(wins[j].input_ids) + 2 for j in b)
                      for b in predictor.predictor._batches(wins))
    return {"device": str(dev), "sentences": n, "tokens": toks, "padded_tokens": padded,
            "seconds": seconds, "flops": counter.get_total_flops(),
            "encoder_seconds": encoder_s[0], "outside_encoder_seconds": encoder_s[1],
            "decoding_seconds": encoder_s[2]}


def time_in_encoder(predictor: Any, chunk: Any) -> tuple[float, float, float]:
    """Seconds of one more prediction of ``chunk``: in the encoder's forward passes (the
    device synchronised after each), outside them (the model process's own work: windows,
    padding, the relation head, tag decoding), and, of that, in tag decoding, which runs on
    the CPU whatever the device."""
    from kgx.model.network import KgxModel
    from kgx.model.predictor import Predictor

    encode, decode = KgxModel.encode, Predictor.decode_mentions
    inside = [0.0, 0.0]
    cuda = predictor.predictor.device.type == "cuda"

    def timed_encode(self: Any, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        hidden = encode(self, *args, **kwargs)
        if cuda:
            torch.cuda.synchronize()
        inside[0] += time.perf_counter() - t
        return hidden

    def timed_decode(self: Any, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        mentions = decode(self, *args, **kwargs)
        inside[1] += time.perf_counter() - t
        return mentions

    KgxModel.encode = timed_encode  # type: ignore[method-assign]
    Predictor.decode_mentions = timed_decode  # type: ignore[method-assign]
    try:
        t0 = time.perf_counter()
        predictor(chunk)
        if cuda:
            torch.cuda.synchronize()
        total = time.perf_counter() - t0
    finally:
        KgxModel.encode = encode  # type: ignore[method-assign]
        Predictor.decode_mentions = decode  # type: ignore[method-assign]
    return inside[0], total - inside[0], inside[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, help="a kgx output folder (its documents.jsonl)")
    ap.add_argument("--model", type=Path, help="the reader (default: OUT/model)")
    ap.add_argument("--sentences", type=int, default=2000)
    ap.add_argument("--need", type=float, default=9500.0,
                    help="sentences a second the projection asks of the GPU")
    ap.add_argument("--device", default=None)
    ap.add_argument("--max-padding", type=float, default=None,
                    help="the predictor's padding bound (default: kgx's; inf: none, as before)")
    args = ap.parse_args()
    model = args.model or args.out / "model"
    cost = read_cost(args.out, model, args.sentences, args.device, args.max_padding)
    peak, dtype = matmul_peak(torch.device(cost["device"]))
    per_sentence = cost["flops"] / cost["sentences"]
    rate = cost["sentences"] / cost["seconds"]
    share = per_sentence * rate / peak
    needed = args.need * per_sentence
    result = dict(cost, torch_threads=torch.get_num_threads(),
                  flops_per_sentence=per_sentence, tokens_per_sentence=cost["tokens"] /
                  cost["sentences"], sentences_per_second=rate,
                  effective_flops_per_second=per_sentence * rate, matmul_peak=peak,
                  matmul_dtype=dtype, share_of_peak=share, need_sentences_per_second=args.need,
                  needed_flops_per_second=needed, needed_peak_at_this_share=needed / share)
    print(f"device {cost['device']}, torch threads {torch.get_num_threads()}")
    print(f"{cost['sentences']:,} sentences, {result['tokens_per_sentence']:.1f} tokens each "
          f"(with [CLS] and [SEP]), {cost['padded_tokens'] / cost['tokens']:.2f}x padded; "
          f"predicted in {cost['seconds']:.2f} s: {rate:,.1f} sentences/s")
    print(f"FLOPs counted: {per_sentence / 1e9:.3f} GFLOP a sentence; effective "
          f"{per_sentence * rate / 1e9:,.1f} GFLOP/s")
    print(f"hardware limit, measured now: dense {dtype} matrix products at "
          f"{peak / 1e9:,.1f} GFLOP/s; the reader reached {share:.3f} of it")
    outside = cost["outside_encoder_seconds"] / cost["sentences"]
    decoding = cost["decoding_seconds"] / cost["sentences"]
    result.update(outside_encoder_us_per_sentence=1e6 * outside,
                  decoding_us_per_sentence=1e6 * decoding,
                  one_model_process_at_most_sentences_per_second=1 / outside)
    print(f"outside the encoder's forward passes: {1e6 * outside:,.0f} us a sentence (encoder "
          f"{cost['encoder_seconds']:.2f} s, the rest {cost['outside_encoder_seconds']:.2f} s), "
          f"of which tag decoding {1e6 * decoding:,.0f} us. That is the model process's own "
          f"work (on a GPU, the kernels' launches too): one model process reads at most "
          f"{1 / outside:,.0f} sentences/s, however fast its device")
    print(f"to read {args.need:,.0f} sentences/s: {needed / 1e12:.2f} TFLOP/s of the reader's "
          f"arithmetic; at the share of the limit reached here, a device whose dense matrix "
          f"products reach {needed / share / 1e12:.1f} TFLOP/s")
    (args.out / "bench-read-flops.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    with printed_page(__file__, __doc__):
        main()
