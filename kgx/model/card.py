"""The model card saved beside a trained model."""

from __future__ import annotations

from collections import Counter
from typing import Any

from kgx.model.tuning import parse_tuning
from kgx.version import DISTRIBUTION


def model_card(meta: dict[str, Any]) -> str:
    """A model card: what the model was trained on and how well it does."""

    def row(name: str, s: dict[str, Any]) -> str:
        ent = s.get("entities", {}).get("micro", {})
        rel = s.get("relations", {}).get("micro", {})
        return (f"| {name} | {s.get('sentences', 0):,} | {ent.get('precision', '-')} | "
                f"{ent.get('recall', '-')} | {ent.get('f1', '-')} | {rel.get('f1', '-')} |")

    st = meta.get("corpus_stats", {})
    tr = meta["training"]
    silver = meta.get("sources", [{"format": "corpus"}])[0]["format"] == "corpus"
    types: Counter[str] = Counter(st.get("mentions", {}))
    lines = [
        "---", "library_name: transformers", "pipeline_tag: token-classification",
        f"base_model: {meta['base_model']}", "tags: [kgx, ner, relation-extraction]", "---", "",
        "# kgx reader", "",
        f"A `{meta['base_model']}` encoder fine-tuned by kgx {meta['kgx_version']} for entity "
        "tagging (BIO over " + ", ".join(meta["entity_labels"]) + ") and relation "
        f"classification over {len(meta['relation_labels']) - 1} ontology properties "
        "(span pooling over a shared encoder).", "",
        "## Training data", "",
        (f"Silver labels the dump gives itself: `{meta['trained_on']}` "
         f"({tr['train_sentences']:,} training sentences per epoch). Mentions come from "
         "wikilinks typed through the linked page's class; relations from infobox facts whose "
         "subject and object share a sentence (distant supervision). Mentions per type in the "
         "corpus: " + (", ".join(f"{k} {v:,}" for k, v in types.most_common()) or "n/a") + "."
         + _link_typing_sentence(tr.get("link_typing") or {})
         if silver else
         f"Gold data: `{meta['trained_on']}` ({tr['train_sentences']:,} training sentences "
         "per epoch)."), "",
        *_sources_section(meta),
        "## Scores (silver labels)" if silver else "## Scores", "",
        "| split | sentences | entity P | entity R | entity F1 | relation F1 (gold mentions) |",
        "|---|---|---|---|---|---|",
        row("dev", meta.get("dev", {})), row("test", meta.get("test", {})),
        *(row(f"dev of {n}", s) for n, s in list(meta.get("dev_by_source", {}).items())[1:]),
        "",
        f"Fine-tuning `{tr.get('tuning', 'full')}`: "
        f"{parse_tuning(tr.get('tuning', 'full')).describe()}; arithmetic "
        f"{tr.get('precision', 'fp32')}"
        + (f" (autocast) on {meta.get('settings', {}).get('device') or 'the GPU'}"
           if tr.get("precision", "fp32") != "fp32" else "") + ".", "",
        f"Best epoch {tr['best_epoch']} of {tr['epochs_run']}; {tr['seconds']} s of training "
        f"at {tr['sentences_per_second']} sentences/s. Scores against silver labels measure "
        "agreement with the dump's own links, not gold accuracy: see kgx's README for "
        "Re-DocRED figures and the limits of a small dump.", "",
        *_decoding_section(meta),
        "## Use", "",
        f"Needs kgx ({DISTRIBUTION} {meta['kgx_version']} or later, with its model extra: "
        f"`pip install \"{DISTRIBUTION}[model]\"`)"
        + (f", and the base encoder `{meta['base_model']}`, which a LoRA model does not hold."
           if tr.get("tuning", "full").startswith("lora") else "."), "", "```python",
        "from kgx.model.predictor import Predictor", "p = Predictor.load('THIS_DIRECTORY')",
        "p.predict(['Ayn Rand was born in Saint Petersburg.'])", "```", "",
        "kgx loads it (a LoRA adapter is merged into its base encoder's weights on loading)."
        if tr.get("tuning", "full").startswith("lora") else
        "`AutoModelForTokenClassification.from_pretrained` loads the encoder and the entity "
        "tagger; the relation head (`relation_head.*`) is read by kgx.",
    ]
    return "\n".join(lines) + "\n"


def _link_typing_sentence(lt: dict[str, Any]) -> str:
    if not lt:
        return ""
    return (f" After the first epoch the tagger read {lt['links']:,} links to "
            f"{lt['targets']:,} pages of no known type and typed those most of their links "
            "agreed on (" + (", ".join(f"{k} {v:,}" for k, v in lt["typed"].items()) or "none")
            + f"); the later epochs learned {lt['mentions_added']:,} more mentions from them.")


def _decoding_section(meta: dict[str, Any]) -> list[str]:
    """The model card's lines on how tags and relation scores are decoded."""
    lines = ["## Decoding", ""]
    dec = meta.get("tag_decoder")
    if dec:
        lines.append(f"Entity tags: {dec}, chosen on dev (entity F1: " + ", ".join(
            f"{k} {v:.4f}" for k, v in meta.get("tag_decoder_dev_f1", {}).items())
            + "). Viterbi uses the tag transitions counted on the training rows (`kgx.json`, "
            "`tag_transitions`).")
    cal = meta.get("relation_calibration")
    if cal:
        if dec:
            lines.append("")
        lines.append(f"Relation scores: `sigmoid((logit - threshold logit) / "
                     f"{meta['relation_temperature']})`, the temperature fitted on "
                     f"{cal['examples']:,} dev scores (pairs x properties, {cal['positives']:,} "
                     "positive): log loss "
                     f"{cal['log_loss_before']} -> {cal['log_loss_after']}, expected calibration "
                     f"error of the scores at or above 0.5 {cal['ece_before']} -> "
                     f"{cal['ece_after']}.")
    return [*lines, ""] if len(lines) > 2 else []


def _sources_section(meta: dict[str, Any]) -> list[str]:
    """The model card's table of training sources, when there is more than one."""
    sources = meta.get("sources", [])
    if len(sources) < 2:
        return []
    lines = ["Sources mixed in each epoch (weight: how many times its rows an epoch draws):", "",
             "| source | format | weight | rows drawn | rows per epoch | dev rows |",
             "|---|---|---|---|---|---|"]
    lines += [f"| `{s['path']}` | {s['format']} | {s['weight']:g} | {s['rows_drawn']:,} | "
              f"{s['rows_per_epoch']:,} | {s['dev_rows']:,} |" for s in sources]
    return [*lines, ""]
