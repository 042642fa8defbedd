"""Dedupe throughput, memory and accuracy: privtune's Deduper vs a plain datasketch loop.

    .venv/bin/python benchmarks/dedupe.py [--docs 100000] [--seed 0]

One seeded corpus of edited copies (tests/generators/dedupe_corpus.py: forwards,
signatures, footers, typos, sentence swaps, case/whitespace, number words, hard
negatives) is written to a temporary JSONL file; each variant then runs in its own
subprocess so that its peak resident memory (``ru_maxrss``) is its own.  A worker loads
the corpus into memory first, records ``ru_maxrss``, times only the dedupe loop, and
reports the growth of the peak as the memory the variant needed.

Variants:

* ``privtune`` — ``Deduper(DedupeConfig())``: boilerplate-stripping normalisation, exact
  digest, character shingles, vectorised MinHash, recall-biased LSH banding, signature
  verification, representatives only indexed.
* ``datasketch`` — the loop of datasketch's own README, with its defaults: for each
  document ``MinHash(num_perm=128)``, ``update`` once per distinct whitespace-separated
  word, ``lsh.query``, then ``lsh.insert`` into ``MinHashLSH(num_perm=128)`` (threshold
  0.9).  A document with any candidate joins the earliest candidate's cluster.
* ``datasketch-same-threshold`` — the same loop with ``MinHashLSH(threshold=<the
  Deduper's default>)``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.curation.dedupe import DedupeConfig, Deduper  # noqa: E402
from tests.generators.dedupe_corpus import PlantedDoc, generate_corpus, pairwise_scores, scores_by_edit  # noqa: E402
from tests.generators.dedupe_edits import EDIT_KINDS  # noqa: E402

VARIANTS = ("privtune", "datasketch", "datasketch-same-threshold")


def write_corpus(path: Path, docs: int, seed: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        for doc in generate_corpus(docs, seed=seed):
            out.write(json.dumps({"id": doc.doc_id, "text": doc.text, "cluster": doc.cluster, "role": doc.role,
                                  "edit": doc.edit}) + "\n")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # Linux reports KiB


def run_privtune(corpus: list[dict[str, str]]) -> dict[str, str]:
    deduper = Deduper(DedupeConfig())
    return {doc["id"]: deduper.check(doc["id"], doc["text"]).of or doc["id"] for doc in corpus}


def run_datasketch(corpus: list[dict[str, str]], threshold: float | None = None) -> dict[str, str]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(num_perm=128) if threshold is None else MinHashLSH(threshold=threshold, num_perm=128)
    predicted: dict[str, str] = {}
    arrival: dict[str, int] = {}
    for index, doc in enumerate(corpus):
        minhash = MinHash(num_perm=128)
        for word in set(doc["text"].split()):
            minhash.update(word.encode("utf-8"))
        candidates = lsh.query(minhash)
        earliest = min(candidates, key=arrival.__getitem__) if candidates else None
        predicted[doc["id"]] = predicted[earliest] if earliest else doc["id"]
        arrival[doc["id"]] = index
        lsh.insert(doc["id"], minhash, check_duplication=False)
    return predicted


def run_variant(variant: str, corpus: list[dict[str, str]]) -> dict[str, str]:
    if variant == "privtune":
        return run_privtune(corpus)
    if variant == "datasketch":
        return run_datasketch(corpus)
    return run_datasketch(corpus, threshold=DedupeConfig().threshold)


def worker(variant: str, corpus_path: Path) -> dict[str, float]:
    """Run one variant over the corpus; return rate, memory and accuracy."""
    corpus = [json.loads(line) for line in corpus_path.open(encoding="utf-8")]
    before = _peak_rss_bytes()
    start = time.perf_counter()
    predicted = run_variant(variant, corpus)
    seconds = time.perf_counter() - start
    grown = max(0, _peak_rss_bytes() - before)
    scores = pairwise_scores({doc["id"]: doc["cluster"] for doc in corpus}, predicted)
    kept = sum(1 for doc_id, of in predicted.items() if doc_id == of)
    planted = [PlantedDoc(doc["id"], "", doc["cluster"], doc["role"], doc["edit"]) for doc in corpus]
    edits = scores_by_edit(planted, predicted)
    middle = {kind: edits[f"{kind}:middle"].recall for kind in EDIT_KINDS}
    return {"middle_recall": middle, "mixed_recall": edits["mixed"].recall,
            "lowest_edit_precision": min(score.precision for name, score in edits.items() if name != "negatives"),
            "negatives_merged": edits["negatives"].predicted_pairs - edits["negatives"].correct_pairs,"docs": len(corpus), "kept": kept, "seconds": seconds, "docs_per_s": len(corpus) / seconds,
            "peak_growth_mib": grown / 2**20, "bytes_per_doc": grown / len(corpus),
            "precision": scores.precision, "recall": scores.recall, "true_pairs": scores.true_pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.corpus)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        start = time.perf_counter()
        write_corpus(corpus, args.docs, args.seed)
        print(f"generated {args.docs:,} documents with edited copies (seed {args.seed}) in {time.perf_counter() - start:.1f}s; "
              f"{sys.version.split()[0]} on {platform.machine()}, {platform.processor() or 'cpu'}")
        results = {}
        for variant in VARIANTS:
            out = subprocess.run([sys.executable, __file__, "--worker", variant, "--corpus", str(corpus)],
                                 check=True, capture_output=True, text=True)
            results[variant] = json.loads(out.stdout.strip().splitlines()[-1])

    peer = results["datasketch"]
    print("\n| variant | docs/s | vs datasketch | peak memory growth | bytes/doc | precision | recall |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for variant, r in results.items():
        print(f"| {variant} | {r['docs_per_s']:,.0f} | {r['docs_per_s'] / peer['docs_per_s']:.2f}x | "
              f"{r['peak_growth_mib']:,.0f} MiB | {r['bytes_per_doc']:,.0f} | {r['precision']:.3f} | "
              f"{r['recall']:.3f} |")
    print(f"\n{results['privtune']['true_pairs']:,} true duplicate pairs in the corpus; documents kept: "
          + ", ".join(f"{variant} {r['kept']:,.0f}" for variant, r in results.items()))
    print("\nRecall of (original, edited copy) pairs at middle strength, the lowest precision over all edits, and "
          "wrongly merged pairs of hard negatives and unrelated documents:\n")
    print("| variant | " + " | ".join(kind.replace("_", " ") for kind in EDIT_KINDS)
          + " | mixed | lowest precision | negatives merged |")
    print("| --- |" + " ---: |" * (len(EDIT_KINDS) + 3))
    for variant, r in results.items():
        print(f"| {variant} | " + " | ".join(f"{r['middle_recall'][kind]:.3f}" for kind in EDIT_KINDS)
              + f" | {r['mixed_recall']:.3f} | {r['lowest_edit_precision']:.3f} | {r['negatives_merged']:,} |")


if __name__ == "__main__":
    main()
