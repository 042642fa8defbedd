"""Precision and recall of the PII stage per entity type, on the labelled synthetic set.

    .venv/bin/python benchmarks/pii_eval.py [--records 2000] [--seed 2026]

Generates ``--records`` records with :mod:`services.curation.pii_synthetic` (seeded, so
the same command gives the same corpus anywhere), runs the default ``PiiConfig`` over
them with ``PiiRedactor.detect_many`` and prints a Markdown table (matching rules in
:mod:`services.curation.pii_eval`), PERSON recall for full vs given-only names, and
throughput. spaCy loading is timed separately and not counted in records/s.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time

from services.curation.pii import PiiConfig, PiiRedactor
from services.curation.pii.engine import analyzer_engine
from services.curation.pii_eval import format_table, person_recall_by_form, score_corpus
from services.curation.pii_synthetic import generate_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2000, help="synthetic records to generate")
    parser.add_argument("--seed", type=int, default=2026, help="generator seed")
    args = parser.parse_args()

    records = generate_records(args.records, seed=args.seed)
    start = time.perf_counter()
    analyzer_engine()
    load_seconds = time.perf_counter() - start

    redactor = PiiRedactor(PiiConfig())
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
    print(f"\nanalyzer load (spaCy + recognizers): {load_seconds:.1f} s")
    print(f"throughput: {report.records_per_second:.1f} records/s, {chars / seconds / 1000:.1f} k chars/s "
          f"(mean record {chars / len(records):.0f} chars)")


if __name__ == "__main__":
    main()
