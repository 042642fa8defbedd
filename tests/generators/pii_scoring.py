"""Per-entity precision and recall of the PII stage on the labelled synthetic set.

Matching is by span overlap, per entity type:

* a planted (gold) span is *found* when some detection of the same type overlaps it
  by at least one character -- recall = found / planted;
* a detection is *correct* when it overlaps some planted span of the same type --
  precision = correct / detected.

Overlap rather than exact boundaries because the redactor replaces whatever it
detects: a name detected as "Ana García" inside "Dr. Ana García" is still removed.
Boundary quality is reported separately as ``exact`` (planted spans detected with
exactly the same start and end). Detections on the unlabelled look-alikes the
generator plants (order ids, Luhn-failing numbers, ...) count against precision.

Over-redaction is measured as *false-flagged characters*: detected characters that lie
outside every planted span, per 1,000 characters of text. Unlike precision it weighs a
long wrong span more than a short one and does not depend on how spans are counted.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from services.common.pii import SUPPORTED_ENTITIES, Detection, PiiRedactor
from tests.generators.pii_corpus import LabelledRecord, PlantedSpan


@dataclass(frozen=True)
class EntityScore:
    """Counts for one entity type over a corpus."""

    entity: str
    planted: int = 0
    detected: int = 0
    found: int = 0      # planted spans overlapped by a same-type detection
    correct: int = 0    # detections overlapping a same-type planted span
    exact: int = 0      # planted spans matched with identical boundaries

    @property
    def recall(self) -> float:
        return self.found / self.planted if self.planted else 1.0

    @property
    def precision(self) -> float:
        return self.correct / self.detected if self.detected else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(frozen=True)
class EvalReport:
    """Scores per entity type, and how fast the redactor went."""

    records: int
    seconds: float
    scores: dict[str, EntityScore]

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def _overlaps(a: PlantedSpan | Detection, b: PlantedSpan | Detection) -> bool:
    return a.entity == b.entity and a.start < b.end and b.start < a.end


def score_record(record: LabelledRecord, detections: Sequence[Detection]) -> dict[str, EntityScore]:
    """Overlap-matched counts for one record (see the module docstring)."""
    scores = {}
    for entity in SUPPORTED_ENTITIES:
        gold = [s for s in record.spans if s.entity == entity]
        pred = [d for d in detections if d.entity == entity]
        scores[entity] = EntityScore(
            entity, planted=len(gold), detected=len(pred),
            found=sum(any(_overlaps(g, p) for p in pred) for g in gold),
            correct=sum(any(_overlaps(p, g) for g in gold) for p in pred),
            exact=sum(any((g.start, g.end) == (p.start, p.end) for p in pred) for g in gold),
        )
    return scores


def score_corpus(records: Sequence[LabelledRecord], detections: Sequence[Sequence[Detection]],
                 entities: Iterable[str] = SUPPORTED_ENTITIES, seconds: float = 0.0) -> EvalReport:
    """Sum :func:`score_record` over a corpus; ``detections[i]`` belongs to ``records[i]``."""
    wanted = list(entities)
    totals = {e: EntityScore(e) for e in wanted}
    for record, found in zip(records, detections, strict=True):
        for entity, s in score_record(record, found).items():
            if entity in totals:
                t = totals[entity]
                totals[entity] = EntityScore(entity, t.planted + s.planted, t.detected + s.detected,
                                             t.found + s.found, t.correct + s.correct, t.exact + s.exact)
    return EvalReport(len(records), seconds, totals)


def evaluate(redactor: PiiRedactor, records: Sequence[LabelledRecord]) -> EvalReport:
    """Run ``redactor`` over ``records`` (batched, timed) and score its detections."""
    start = time.perf_counter()
    detections = list(redactor.detect_many(r.text for r in records))
    seconds = time.perf_counter() - start
    return score_corpus(records, detections, redactor.config.entities, seconds)


def person_recall_by_form(records: Sequence[LabelledRecord], detections: Sequence[Sequence[Detection]]
                          ) -> dict[str, tuple[int, int]]:
    """PERSON (found, planted) split into full names and single given names ("Hi Priya,")."""
    counts = {"full name": [0, 0], "given name only": [0, 0]}
    for record, found in zip(records, detections, strict=True):
        for span in record.spans:
            if span.entity == "PERSON":
                form = "full name" if " " in record.text[span.start:span.end] else "given name only"
                counts[form][1] += 1
                counts[form][0] += any(_overlaps(span, d) for d in found)
    return {form: (found, planted) for form, (found, planted) in counts.items()}


def recall_by_kind(records: Sequence[LabelledRecord], detections: Sequence[Sequence[Detection]],
                   entity: str) -> dict[str, tuple[int, int]]:
    """(found, planted) per ``PlantedSpan.kind`` of ``entity`` (name culture, phone shape, key family)."""
    counts: dict[str, list[int]] = {}
    for record, found in zip(records, detections, strict=True):
        for span in record.spans:
            if span.entity == entity:
                tally = counts.setdefault(span.kind or "-", [0, 0])
                tally[1] += 1
                tally[0] += any(_overlaps(span, d) for d in found)
    return {kind: (found, planted) for kind, (found, planted) in sorted(counts.items())}


def false_flagged_chars(records: Sequence[LabelledRecord], detections: Sequence[Sequence[Detection]]
                        ) -> tuple[int, int]:
    """(detected characters outside every planted span, all characters) over a corpus."""
    flagged = total = 0
    for record, found in zip(records, detections, strict=True):
        gold = bytearray(len(record.text))
        for span in record.spans:
            gold[span.start:span.end] = b"\x01" * (span.end - span.start)
        marked = bytearray(len(record.text))
        for d in found:
            marked[d.start:d.end] = b"\x01" * (d.end - d.start)
        flagged += sum(1 for m, g in zip(marked, gold) if m and not g)
        total += len(record.text)
    return flagged, total


def format_table(report: EvalReport) -> str:
    """A Markdown table, one row per entity type."""
    lines = ["| entity | planted | detected | precision | recall | F1 | exact boundaries |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in report.scores.values():
        exact = s.exact / s.planted if s.planted else 1.0
        lines.append(f"| {s.entity} | {s.planted} | {s.detected} | {s.precision:.3f} | {s.recall:.3f} | "
                     f"{s.f1:.3f} | {exact:.3f} |")
    return "\n".join(lines)
