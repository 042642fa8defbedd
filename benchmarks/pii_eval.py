"""Precision and recall of the PII stage per entity type, on the labelled synthetic set.

    .venv/bin/python benchmarks/pii_eval.py [--records 2000] [--seed 2026]

Generates ``--records`` records with :mod:`tests.generators.pii_corpus` (seeded, so the
same command gives the same corpus anywhere), runs the default ``PiiConfig`` (in ``redact`` mode) over them
with ``PiiRedactor.detect_many`` and prints a Markdown table (matching rules in
:mod:`tests.generators.pii_scoring`), recall per name culture, phone shape and key
family, false-flagged characters, the overlap of the generator's hand-written names
with the detector's name lists, and throughput. Building the analyzer (spaCy, name
lists) is timed separately and not counted in records/s.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.pii import PiiConfig, PiiRedactor  # noqa: E402
from services.common.pii.engine import analyzer_engine  # noqa: E402
from services.common.pii.name_lexicon import name_lexicon  # noqa: E402
from tests.generators.pii_corpus import NAMES_BY_CULTURE, generate_records  # noqa: E402
from tests.generators.pii_scoring import (  # noqa: E402
    false_flagged_chars,
    format_table,
    person_recall_by_form,
    recall_by_kind,
    score_corpus,
)


def gazetteer_overlap() -> dict[str, float]:
    """Share of each culture's hand-written names (given and family) that the detector's lists know."""
    lexicon = name_lexicon()
    overlap = {}
    for culture, (firsts, lasts) in NAMES_BY_CULTURE.items():
        words = {w for name in (*firsts, *lasts) for w in name.split()}
        overlap[culture] = sum(lexicon.is_name(w) for w in words) / len(words)
    return overlap


def _print_kinds(title: str, kinds: dict[str, tuple[int, int]]) -> None:
    print(f"{title}: " + ", ".join(f"{kind} {found / planted:.3f} ({found}/{planted})"
                                   for kind, (found, planted) in kinds.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2000, help="synthetic records to generate")
    parser.add_argument("--seed", type=int, default=2026, help="generator seed")
    args = parser.parse_args()

    records = generate_records(args.records, seed=args.seed)
    start = time.perf_counter()
    analyzer_engine()
    name_lexicon()
    load_seconds = time.perf_counter() - start

    redactor = PiiRedactor(PiiConfig(mode="redact"))
    start = time.perf_counter()
    detections = list(redactor.detect_many(r.text for r in records))
    seconds = time.perf_counter() - start
    report = score_corpus(records, detections, redactor.config.entities, seconds)

    chars = sum(len(r.text) for r in records)
    print(f"{datetime.date.today()}  python {platform.python_version()}  records={args.records} seed={args.seed}  "
          f"negatives planted={sum(r.negatives for r in records)}\n")
    print(format_table(report))
    print()
    for form, (found, planted) in person_recall_by_form(records, detections).items():
        print(f"PERSON recall, {form}: {found / planted:.3f} ({found}/{planted})")
    _print_kinds("PERSON recall by culture", recall_by_kind(records, detections, "PERSON"))
    _print_kinds("PHONE_NUMBER recall by shape", recall_by_kind(records, detections, "PHONE_NUMBER"))
    missed = {k: v for k, v in recall_by_kind(records, detections, "SECRET").items() if v[0] < v[1]}
    print(f"SECRET key families with misses: {missed or 'none'}")
    flagged, total = false_flagged_chars(records, detections)
    print(f"false-flagged characters (outside planted spans): {flagged} of {total} "
          f"({flagged / total * 1000:.2f} per 1,000)")
    print("hand-written names known to the name lists: "
          + ", ".join(f"{c} {share:.0%}" for c, share in gazetteer_overlap().items()))
    print(f"\nanalyzer load (spaCy + recognizers + name lists): {load_seconds:.1f} s")
    print(f"throughput: {report.records_per_second:.1f} records/s, {chars / seconds / 1000:.1f} k chars/s "
          f"(mean record {chars / len(records):.0f} chars)")


if __name__ == "__main__":
    main()
