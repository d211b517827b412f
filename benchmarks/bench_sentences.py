"""Sentence splitting, the way kgx did it (spaCy's ``sentencizer`` on a blank pipeline) against
kgx's :class:`kgx.text.sentences.Sentencizer`, on the documents of a structure output, one run.

Two kinds of table. First, the splitting alone: every paragraph of every document cut into
sentences. Second, the corpus stage's labelling of the same documents
(``CorpusBuilder.sentences``, which splits, then labels each sentence), with each splitter.
Each way runs in a fresh child process, so the memo of segments starts empty and the peak
memory is its own. Prints seconds, sentences per second, cost per sentence, cores busy, peak
memory and whether both ways made the same sentences (digest of every span, or of every
labelled row). Each process reads the documents twice (``--passes``): on the first pass kgx's
memo of segments starts empty; on the second every segment is in it, the limit a dump whose
punctuated words recur tends to.

Usage: ``python -m benchmarks.bench_sentences OUT`` (``OUT``: a ``kgx extract`` output, or a
structure output holding ``documents.jsonl``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.common import print_ways, printed_page, run_child

RUNNER = """
import hashlib, json, resource, sys, time
from pathlib import Path

job, way, graph, passes = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])


class SpacySentences:
    '''What kgx used before: spaCy's sentencizer on a blank pipeline.'''

    def __init__(self, lang):
        import spacy
        try:
            self.nlp = spacy.blank(lang)
        except (ImportError, KeyError):
            self.nlp = spacy.blank("xx")
        self.nlp.add_pipe("sentencizer")

    def spans(self, text):
        return [(s.start_char, s.end_char) for s in self.nlp(text).sents]


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


lang = json.loads((graph / "report.json").read_text("utf-8")).get("site", {}).get("lang", "en")
if job == "label":
    from kgx.corpus.labelling import CorpusBuilder
    from kgx.structure.entity_types import load_entities
    builder = CorpusBuilder(load_entities(graph), lang)
    if way == "spacy":
        builder.sentencizer = SpacySentences(lang)
else:
    from kgx.text.sentences import Sentencizer
    splitter = SpacySentences(lang) if way == "spacy" else Sentencizer(lang)
results = []
for _ in range(passes):
    digest = hashlib.sha256()
    n = 0
    t0, c0 = time.perf_counter(), cpu()
    with open(graph / "documents.jsonl", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            if job == "label":
                for row in builder.sentences(doc):
                    digest.update(json.dumps(row, sort_keys=True).encode())
                    n += 1
            else:
                for para in doc["text"].split("\\n"):
                    for span in splitter.spans(para):
                        digest.update(repr(span).encode())
                        n += 1
    seconds, cpu_s = time.perf_counter() - t0, cpu() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sp = builder.sentencizer if job == "label" else splitter
    results.append({"seconds": seconds, "cpu": cpu_s, "rss_mb": rss, "items": n,
                    "digest": digest.hexdigest()[:12], "by_spacy": getattr(sp, "by_spacy", None)})
print(json.dumps(results))
"""


def run(job: str, way: str, graph: Path, passes: int) -> list[dict]:
    return list(run_child(RUNNER, job, way, graph, passes, what=f"{job} with {way}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, help="kgx extract output (or a structure output)")
    ap.add_argument("--passes", type=int, default=2,
                    help="passes over the documents in each process: the first starts with "
                         "an empty memo, later ones find every segment in it")
    args = ap.parse_args()
    docs = args.out / "documents.jsonl"
    if not docs.exists():
        sys.exit(f"{docs}: missing (run kgx extract with --keep-intermediate, or the "
                 "structure pass with documents)")
    print(f"documents: {docs} ({docs.stat().st_size / 1e6:.1f} MB)")
    for job, title in (("split", "splitting alone"),
                       ("label", "corpus labelling (split + label)")):
        runs = {name: run(job, way, args.out, args.passes)
                for way, name in (("spacy", "spaCy sentencizer (kgx before)"),
                                  ("kgx", "kgx Sentencizer"))}
        for i in range(args.passes):
            rows = {name: r[i] for name, r in runs.items()}
            ours = rows["kgx Sentencizer"]
            print(f"\n{title}, pass {i + 1} of the documents in the process: "
                  f"{ours['items']:,} sentences; paragraphs kgx handed to spaCy whole "
                  f"(so far): {ours['by_spacy']:,}")
            print_ways(rows, ours["items"], "sentence", "sentences" if job == "split" else "rows")

if __name__ == "__main__":
    with printed_page(__file__, __doc__):
        main()
