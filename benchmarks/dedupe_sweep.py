"""Sweep the deduper's shingles and threshold on the edited-copies corpus: precision, recall per edit, docs/s.

    .venv/bin/python benchmarks/dedupe_sweep.py [--docs 10000] [--seed 0]
        [--shingles word:5,word:3,char:5,char:7,char:9] [--thresholds 0.65,0.7,0.75,0.8,0.85]

One seeded corpus from tests/generators/dedupe_corpus.py (edited copies of every kind
and strength, hard negatives, shared company boilerplate) is held in memory; every
configuration runs a fresh ``Deduper`` over it in this process, one after the other, so
the docs/s column compares configurations on the same machine at the same time.
Printed: one summary row per configuration (middle-strength recall per edit kind, the
lowest precision over all edits, hard-negative pairs merged, pairwise precision/recall, docs/s), two rows for the
defaults with the facts check or the boilerplate stripping turned off, then the full
kind x strength table for the current defaults and for the defaults before issue 13.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.curation.dedupe import DedupeConfig  # noqa: E402
from tests.generators.dedupe_corpus import (PlantedDoc, generate_corpus, pairwise_scores, run_deduper,  # noqa: E402
                                            scores_by_edit)
from tests.generators.dedupe_edits import EDIT_KINDS, STRENGTHS  # noqa: E402

PREVIOUS_DEFAULTS = DedupeConfig(strip_boilerplate=False, shingle_unit="word", shingle_size=5, threshold=0.8,
                                 min_fact_overlap=0.0)


def measure(docs: list[PlantedDoc], config: DedupeConfig) -> dict[str, object]:
    start = time.perf_counter()
    predicted = run_deduper(docs, config)
    seconds = time.perf_counter() - start
    pairwise = pairwise_scores({doc.doc_id: doc.cluster for doc in docs}, predicted)
    return {"docs_per_s": len(docs) / seconds, "pairwise": pairwise, "edits": scores_by_edit(docs, predicted)}


def summary_row(name: str, config: DedupeConfig, result: dict[str, object]) -> str:
    edits = result["edits"]
    pairwise = result["pairwise"]
    middle = [edits[f"{kind}:middle"].recall for kind in EDIT_KINDS]
    lowest_precision = min(score.precision for name, score in edits.items() if name != "negatives")
    negatives = edits["negatives"]
    return (f"| {name} | {config.threshold:.2f} | {result['docs_per_s']:,.0f} | {pairwise.precision:.3f} | "
            f"{pairwise.recall:.3f} | {lowest_precision:.3f} | {negatives.predicted_pairs - negatives.correct_pairs} | "
            + " | ".join(f"{r:.2f}" for r in middle) + f" | {min(middle):.2f} | {edits['mixed'].recall:.2f} |")


def detail_table(title: str, result: dict[str, object]) -> str:
    edits = result["edits"]
    lines = [f"\n{title}\n", "| edit kind | " + " | ".join(f"{s} recall | {s} precision" for s in STRENGTHS) + " |",
             "| --- |" + " ---: |" * (2 * len(STRENGTHS))]
    for kind in EDIT_KINDS:
        cells = [f"{edits[f'{kind}:{s}'].recall:.3f} | {edits[f'{kind}:{s}'].precision:.3f}" for s in STRENGTHS]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    mixed = edits["mixed"]
    lines.append(f"| mixed (2-3 edits, light/middle) | {mixed.recall:.3f} | {mixed.precision:.3f} | | | | |")
    pairs = {s: sum(edits[f"{kind}:{s}"].pairs for kind in EDIT_KINDS) for s in STRENGTHS}
    lines.append(f"\n(base, copy) pairs per strength: {pairs}; mixed {mixed.pairs}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shingles", default="word:5,word:3,char:5,char:7,char:9")
    parser.add_argument("--thresholds", default="0.65,0.7,0.75,0.8,0.85")
    args = parser.parse_args()

    docs = list(generate_corpus(args.docs, seed=args.seed))
    truth = pairwise_scores({d.doc_id: d.cluster for d in docs}, {d.doc_id: d.doc_id for d in docs})
    families = Counter(doc.cluster.split(".")[0] for doc in docs if doc.role == "template")
    print(f"{len(docs):,} documents (seed {args.seed}), {truth.true_pairs:,} true duplicate pairs, "
          f"{sum(n * (n - 1) // 2 for n in families.values()):,} same-template (hard negative) pairs\n")
    kinds = " | ".join(kind.replace("_", " ") for kind in EDIT_KINDS)
    print(f"| shingles | threshold | docs/s | pairwise precision | pairwise recall | lowest precision (any edit) | "
          f"hard negatives merged (pairs) | {kinds} | lowest middle recall | mixed recall |")
    print("| --- |" + " ---: |" * (9 + len(EDIT_KINDS)))

    default = DedupeConfig()
    results = {"previous": measure(docs, PREVIOUS_DEFAULTS)}
    print(summary_row("word 5, no boilerplate stripping (before issue 13)", PREVIOUS_DEFAULTS, results["previous"]))
    for shingle in args.shingles.split(","):
        unit, size = shingle.split(":")
        for threshold in (float(t) for t in args.thresholds.split(",")):
            config = default.model_copy(update={"shingle_unit": unit, "shingle_size": int(size),
                                                "threshold": threshold})
            result = measure(docs, config)
            if config == default:
                results["default"] = result
            marker = " (default)" if config == default else ""
            print(summary_row(f"{unit} {size}{marker}", config, result), flush=True)
    if "default" not in results:
        results["default"] = measure(docs, default)
    for name, change in (("defaults without the facts check", {"min_fact_overlap": 0.0}),
                         ("defaults without boilerplate stripping", {"strip_boilerplate": False})):
        config = default.model_copy(update=change)
        print(summary_row(f"{default.shingle_unit} {default.shingle_size}, {name}", config, measure(docs, config)),
              flush=True)
    print(detail_table(f"Defaults ({default.shingle_unit} {default.shingle_size}-grams, threshold "
                       f"{default.threshold}), per edit kind and strength:", results["default"]))
    print(detail_table("Before issue 13 (word 5-grams, threshold 0.8, no boilerplate stripping):",
                       results["previous"]))


if __name__ == "__main__":
    main()
