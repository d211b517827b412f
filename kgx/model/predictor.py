"""The reader at work: :class:`Predictor` loads a saved model and gives each text its mentions
and relations, batched by a token budget.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy
import torch
from torch import nn

from kgx.model.decoding import PredictedRelation, Prediction, spans_from_bio, viterbi_batch
from kgx.model.network import MAX_PADDING, autocast_dtype, load_model, pick_device
from kgx.model.tokens import (
    Window,
    first_window,
    pad_batch,
    token_span,
    tokenize,
    windows_for,
    word_bounds,
)

if TYPE_CHECKING:
    from kgx.model.decoding import PredictedMention
    from kgx.model.network import KgxModel
    from kgx.model.tokens import Tokenized


@dataclass(slots=True)
class EncodedTexts:
    """One encoder pass over texts (:meth:`Predictor.encode_texts`): their tokens and
    windows, each window's (batch, row), and per batch the tag logits (on the CPU) and the
    hidden states (on the device; None when not kept). A window's row holds [CLS] at
    position 0 and its tokens from 1."""

    toks: list[Tokenized]
    windows: list[Window]
    place: list[tuple[int, int]]
    logits: list[torch.Tensor]
    hidden: list[torch.Tensor] | None
    by_text: list[list[int]]  # each text's windows, in order

    def window_logits(self, wi: int) -> torch.Tensor:
        """(tokens, labels) tag logits of window ``wi``'s own tokens."""
        b, row = self.place[wi]
        return self.logits[b][row, 1: 1 + len(self.windows[wi].input_ids)]

    def window_hidden(self, wi: int) -> torch.Tensor:
        """(tokens, hidden) states of window ``wi``'s own tokens, on the device."""
        if self.hidden is None:
            raise ValueError("the hidden states were not kept")
        b, row = self.place[wi]
        return self.hidden[b][row, 1: 1 + len(self.windows[wi].input_ids)]


class Predictor:
    """Loads a model directory and reads texts.

    Example::

        p = Predictor.load("model/")
        p.predict(["Ayn Rand was born in Saint Petersburg."])[0].mentions

    Args:
        model, tokenizer, metadata: From :func:`load_model`.
        max_length: Encoder window in tokens, special tokens included.
        stride: Overlap of consecutive windows, in tokens.
        batch_size: Windows per forward pass at most.
        relation_threshold: Lowest score for a non-NA relation to be returned.
        token_budget: Padded tokens per forward pass at most (default: from the device's free
            memory on a GPU, 8,192 on a CPU). Windows are sorted by length, so a batch of
            short sentences holds more of them than a batch of long ones.
        max_padding: A batch closes before a window that would make its padded tokens exceed
            its real tokens by more than this share. Sorted windows alone still padded the
            short sentences of a batch to its longest (the last batch of a chunk held those
            from 46 to 112 tokens): on 2,000 sentences of the sample's articles, read as the
            read stage reads them, the encoder took 1.55x their tokens, and 1.19x with 0.25
            (2 CPU cores: 1.3-1.7x the sentences a second; the same mentions and
            relations, their scores equal but in the last digits).
    """

    def __init__(self, model: KgxModel, tokenizer: Any, metadata: dict[str, Any],
                 max_length: int = 128, stride: int = 32, batch_size: int = 64,
                 relation_threshold: float = 0.5, token_budget: int | None = None,
                 max_padding: float = MAX_PADDING) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.metadata = metadata
        self.max_tokens = max_length - 2
        self.stride = min(stride, self.max_tokens // 2)
        self.batch_size = batch_size
        self.max_padding = max_padding
        self.relation_threshold = relation_threshold
        self.device = next(model.parameters()).device
        self.amp = autocast_dtype(self.device)
        self.token_budget = token_budget or default_token_budget(self.device, model)
        trans = metadata.get("tag_transitions")  # JSON: null for a forbidden transition
        self.transitions = numpy.array(
            [[-math.inf if v is None else v for v in row] for row in trans],
            dtype=numpy.float64) if trans else None
        self.relation_temperature = float(metadata.get("relation_temperature") or 1.0)
        if self.device.type != "cpu":
            # On a GPU the budget, not the window count, bounds a batch.
            self.batch_size = max(batch_size, self.token_budget // 16)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, **kwargs: Any) -> Predictor:
        model, tok, meta = load_model(path, pick_device(device))
        kwargs.setdefault("max_length", meta.get("settings", {}).get("max_length", 128))
        return cls(model, tok, meta, **kwargs)

    @property
    def relation_labels(self) -> list[str]:
        return self.model.relation_labels

    def _batches(self, windows: list[Window]) -> Iterator[list[int]]:
        """Window indices, shortest first, in batches of at most ``batch_size`` windows and
        ``token_budget`` padded tokens, padded by at most ``max_padding`` of their tokens."""
        order = sorted(range(len(windows)), key=lambda i: len(windows[i].input_ids))
        batch: list[int] = []
        real = 0
        for i in order:
            width = len(windows[i].input_ids) + 2  # the longest so far: sorted by length
            padded = (len(batch) + 1) * width
            if batch and (len(batch) >= self.batch_size or padded > self.token_budget
                          or padded > (1 + self.max_padding) * (real + width)):
                yield batch
                batch, real = [], 0
            batch.append(i)
            real += width
        if batch:
            yield batch

    def _forward_windows(self, windows: list[Window], keep_hidden: bool = True
                         ) -> tuple[list[tuple[int, int]], list[torch.Tensor],
                                    list[torch.Tensor] | None]:
        """Each window's (batch, row), and per batch the tag logits (on the CPU: they cross
        once a batch, never a sentence) and the hidden states (on the device), [CLS] at
        position 0 and the window's tokens from 1."""
        place: list[tuple[int, int]] = [(0, 0)] * len(windows)
        logits_of: list[torch.Tensor] = []
        hidden_of: list[torch.Tensor] | None = [] if keep_hidden else None
        tok = self.tokenizer
        for idx in self._batches(windows):
            batch = pad_batch([windows[i] for i in idx], tok.cls_token_id, tok.sep_token_id,
                              tok.pad_token_id, self.device)
            with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.amp,
                                                        enabled=self.amp is not None):
                hidden = self.model.encode(batch["input_ids"], batch["attention_mask"],
                                           batch.get("shape_ids"))
                logits = self.model.tag_logits(hidden)
            for row, i in enumerate(idx):
                place[i] = (len(logits_of), row)
            logits_of.append(logits.float().cpu())
            if hidden_of is not None:
                hidden_of.append(hidden)
        return place, logits_of, hidden_of

    def _windows(self, toks: list[Tokenized]) -> list[Window]:
        wins = []
        for ti, tk in enumerate(toks):
            for a, b in windows_for(len(tk.ids), self.max_tokens, self.stride):
                wins.append(Window(ti, a, tk.ids[a:b], shapes=tk.shapes[a:b]))
        return wins

    def predict(self, texts: Sequence[str], relations: bool = True,
                toks: Sequence[Tokenized] | None = None) -> list[Prediction]:
        """Mentions and relations for each text (any length); ``toks``, the texts'
        :func:`tokenize` output, when another process tokenised them."""
        texts = list(texts)
        if not texts:
            return []
        encoded = self.encode_texts(texts, toks, keep_hidden=relations)
        decoded = self.decode_mentions(texts, encoded)
        rels = self._relations(encoded, decoded) if relations else {}
        return [Prediction(tuple(m), rels.get(ti, ())) for ti, m in enumerate(decoded)]

    def encode_texts(self, texts: Sequence[str], toks: Sequence[Tokenized] | None = None,
                     keep_hidden: bool = True) -> EncodedTexts:
        """One encoder pass over ``texts`` (:class:`EncodedTexts`); the hidden states, which
        relations need, stay on the device unless ``keep_hidden`` is False."""
        toks = list(toks) if toks is not None else tokenize(self.tokenizer, texts)
        if len(toks) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(toks)} tokenised texts")
        for tk in toks:  # one made without its words (not by tokenize): cut them here
            if tk.ids and not tk.words:
                tk.words = word_bounds(tk.offsets, tk.word_ids)
        wins = self._windows(toks)
        place, logits, hidden = self._forward_windows(wins, keep_hidden)
        by_text: list[list[int]] = [[] for _ in toks]
        for wi, w in enumerate(wins):
            by_text[w.text_index].append(wi)
        return EncodedTexts(toks, wins, place, logits, hidden, by_text)

    def decode_mentions(self, texts: Sequence[str], encoded: EncodedTexts
                        ) -> list[list[PredictedMention]]:
        """The mentions of each text from its :meth:`encode_texts` output, under this
        predictor's tag decoding (so several decodings can share one encoder pass), the
        texts' Viterbi passes run together (:func:`viterbi_batch`). This is CPU work in the
        model process, whatever the device: on 2,000 of the sample's sentences, timed alone
        on the same encoder output (2 cores, three rounds), it took 55-57 us a sentence;
        302-309 us decoded one sentence at a time (before commit af392a1), 192-194 us with
        each sentence's word probabilities gathered on its own and every Viterbi step over
        every sentence."""
        probs = self._word_probs(encoded)
        kept = [k for k, wp in enumerate(probs) if wp is not None]
        if self.transitions is not None:
            best = viterbi_batch([numpy.log(numpy.maximum(probs[k], 1e-9)) for k in kept],
                                 self.transitions)
        else:
            best = [probs[k].argmax(-1).tolist() for k in kept]
        out: list[list[PredictedMention]] = [[] for _ in texts]
        labels = self.model.ner_labels
        for k, tags in zip(kept, best, strict=True):
            conf = probs[k][numpy.arange(len(tags)), tags].tolist()
            out[k] = spans_from_bio(texts[k], [
                (s, e, labels[t], c) for (s, e, _), t, c in zip(encoded.toks[k].words, tags, conf,
                                                                strict=True)])
        return out

    def _word_probs(self, encoded: EncodedTexts) -> list[Any]:
        """Each text's tag probabilities a word (words x labels, from the word's first
        piece; logits averaged where windows overlap), None for a text with no words. The
        texts of one window are gathered and normalised a batch at a time."""
        out: list[Any] = [None] * len(encoded.toks)
        gather: dict[int, tuple[list[int], list[int]]] = {}  # batch: texts, flat rows
        for ti, (tk, wis) in enumerate(zip(encoded.toks, encoded.by_text, strict=True)):
            if not tk.words:
                continue
            if len(wis) == 1:
                b, r = encoded.place[wis[0]]
                base = r * encoded.logits[b].shape[1] + 1  # the window starts at token 0
                texts, rows = gather.setdefault(b, ([], []))
                texts.append(ti)
                rows.extend([base + first for _, _, first in tk.words])
                continue
            total = torch.zeros((len(tk.ids), encoded.logits[0].shape[-1]))
            count = torch.zeros((len(tk.ids), 1))
            for wi in wis:
                w, lg = encoded.windows[wi], encoded.window_logits(wi)
                total[w.tok_start: w.tok_start + lg.shape[0]] += lg
                count[w.tok_start: w.tok_start + lg.shape[0]] += 1
            firsts = [first for _, _, first in tk.words]
            out[ti] = (total / count.clamp(min=1))[firsts].softmax(-1).numpy()
        for b, (texts, rows) in gather.items():
            lg = encoded.logits[b]
            probs = lg.reshape(-1, lg.shape[-1])[torch.tensor(rows)].softmax(-1).numpy()
            at = 0
            for ti in texts:
                n = len(encoded.toks[ti].words)
                out[ti] = probs[at: at + n]
                at += n
        return out

    def _relations(self, encoded: EncodedTexts, mentions: list[list[PredictedMention]]
                   ) -> dict[int, tuple[PredictedRelation, ...]]:
        """The relations of every ordered pair of mentions of a text, each pair scored in
        the first window holding both: per encoder batch, one pooling of its spans; then
        one relation head pass and one transfer from the device for all the pairs."""
        if encoded.hidden is None:
            raise ValueError("relations need the hidden states: encode_texts(keep_hidden=True)")
        span_rows: dict[int, list[list[int]]] = {}  # batch: [row, first, end] in its states
        pair_spans: list[tuple[int, int, int, int]] = []  # (batch, span, batch, span)
        owners: list[tuple[int, int, int]] = []  # (text, head, tail)
        for ti, ms in enumerate(mentions):
            if len(ms) < 2:
                continue
            tk, wis = encoded.toks[ti], encoded.by_text[ti]
            windows = [encoded.windows[wi] for wi in wis]
            tok_spans = [token_span(tk, m.start, m.end) for m in ms]
            index: dict[tuple[int, int], tuple[int, int]] = {}  # (mention, window): place
            for h, hs in enumerate(tok_spans):
                for t, ts in enumerate(tok_spans):
                    if h == t or hs is None or ts is None:
                        continue
                    k = first_window(windows, (min(hs[0], ts[0]), max(hs[1], ts[1])))
                    if k is None:
                        continue
                    b, row = encoded.place[wis[k]]
                    ends = []
                    for m, (a, e) in ((h, hs), (t, ts)):
                        if (m, k) not in index:
                            rows = span_rows.setdefault(b, [])
                            start = windows[k].tok_start - 1  # [CLS] is position 0
                            index[m, k] = (b, len(rows))
                            rows.append([row, a - start, e - start])
                        ends.append(index[m, k])
                    pair_spans.append((*ends[0], *ends[1]))
                    owners.append((ti, h, t))
        if not owners:
            return {}
        offset, vectors, at = {}, [], 0
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.amp,
                                                    enabled=self.amp is not None):
            for b, rows in span_rows.items():
                spans = torch.tensor(rows, device=self.device)
                width = max(e for _, _, e in rows)  # no span reaches past it: drop the rest
                vectors.append(self.model.span_vectors(encoded.hidden[b][:, :width], spans))
                offset[b] = at
                at += len(rows)
            pairs = torch.tensor([[offset[bh] + sh, offset[bt] + st]
                                  for bh, sh, bt, st in pair_spans], device=self.device)
            logits = self.model.pair_head(torch.cat(vectors), pairs)
        found: dict[int, list[PredictedRelation]] = {}
        for (ti, h, t), rels in zip(owners, self.decide(logits.float().cpu()), strict=True):
            found.setdefault(ti, []).extend(PredictedRelation(h, t, lab, score)
                                            for lab, score in rels)
        return {ti: tuple(rels) for ti, rels in found.items()}

    def decide(self, logits: torch.Tensor) -> list[list[tuple[str, float]]]:
        """Relations of each pair from its logits (P, C), best first, NA left out: every label
        whose score (``sigmoid((logit - threshold logit) / T)``, T the temperature fitted on
        dev at training, 1 for a model saved without one) reaches ``relation_threshold``. A
        model saved before the adaptive threshold gives its argmax, scored by softmax."""
        labels = self.model.relation_labels
        out: list[list[tuple[str, float]]] = [[] for _ in range(len(logits))]
        if not self.model.adaptive_threshold:
            top_score, top_label = logits.softmax(-1).max(-1)
            for i, (j, score) in enumerate(zip(top_label.tolist(), top_score.tolist(),
                                               strict=True)):
                if j != 0 and score >= self.relation_threshold:
                    out[i].append((labels[j], score))
            return out
        scores = torch.sigmoid((logits[:, 1:] - logits[:, :1]) / self.relation_temperature)
        hits = (scores >= self.relation_threshold).nonzero()  # by pair, then by label
        for (i, j), score in zip(hits.tolist(), scores[hits[:, 0], hits[:, 1]].tolist(),
                                 strict=True):
            out[i].append((labels[j + 1], score))
        for rels in out:
            if len(rels) > 1:
                rels.sort(key=lambda x: -x[1])
        return out

    def classify_pairs(self, text: str, spans: Sequence[tuple[int, int]],
                       pairs: Sequence[tuple[int, int]],
                       span_entity: Sequence[int] | None = None
                       ) -> list[list[tuple[str, float]]]:
        """Relations (label, score; best first, empty for NA) of given pairs in one text.

        Args:
            text: A sentence or a whole document (cut into windows as :meth:`predict` does).
            spans: Mention spans, character offsets.
            pairs: (head, tail) entity indices; mention indices when ``span_entity`` is None.
            span_entity: The entity of each span: an entity pools all its mentions, in any
                window (document-level relations).
        """
        if not pairs:
            return []
        out: list[list[tuple[str, float]]] = [[] for _ in pairs]
        todo, logits = self.pair_logits_of(text, spans, pairs, span_entity)
        if todo:
            for k, rels in zip(todo, self.decide(logits), strict=True):
                out[k] = rels
        return out

    def pair_logits_of(self, text: str, spans: Sequence[tuple[int, int]],
                       pairs: Sequence[tuple[int, int]],
                       span_entity: Sequence[int] | None = None
                       ) -> tuple[list[int], torch.Tensor]:
        """The relation logits (on the CPU, NA's first) of the pairs of
        :meth:`classify_pairs` whose entities have a mention the encoder saw, and their
        indices in ``pairs``."""
        encoded = self.encode_texts([text])
        tk, wins = encoded.toks[0], encoded.windows
        hidden = [encoded.window_hidden(wi) for wi in range(len(wins))]
        ent = list(range(len(spans))) if span_entity is None else list(span_entity)
        span_rows, span_ent = [], []
        for (s, e), en in zip(spans, ent, strict=True):
            ts = token_span(tk, s, e)
            wi = None if ts is None else first_window(wins, ts)
            if ts is not None and wi is not None:
                span_rows.append([wi, ts[0] - wins[wi].tok_start, ts[1] - wins[wi].tok_start])
                span_ent.append(en)
        seen = sorted(set(span_ent))
        index = {en: i for i, en in enumerate(seen)}
        todo = [k for k, (h, t) in enumerate(pairs) if h in index and t in index]
        if not todo:
            return [], torch.zeros((0, len(self.model.relation_labels)))
        states = torch.nn.utils.rnn.pad_sequence(hidden, batch_first=True)
        dev = self.device
        with torch.inference_mode(), torch.autocast(dev.type, dtype=self.amp,
                                                    enabled=self.amp is not None):
            logits = self.model.pair_logits(
                states, torch.tensor(span_rows, device=dev),
                torch.tensor([[index[pairs[k][0]], index[pairs[k][1]]] for k in todo],
                             device=dev),
                torch.tensor([index[en] for en in span_ent], device=dev))
        return todo, logits.float().cpu()


def default_token_budget(device: torch.device, model: nn.Module) -> int:
    """Padded tokens per forward pass: 8,192 on a CPU; on a GPU, what a quarter of its free
    memory holds at about 64 activations of the hidden size per token (fp32, generous for
    the attention maps of 128-token windows), capped at 262,144."""
    if device.type != "cuda":
        return 8192
    free, _ = torch.cuda.mem_get_info(device)
    cfg = getattr(getattr(model, "encoder", None), "config", None)
    hidden = int(getattr(cfg, "hidden_size", 768))
    return int(max(8192, min(262_144, free // 4 // (hidden * 64 * 4))))
