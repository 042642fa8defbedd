"""Gates on a shadow candidate's answers (pure, apart from the detector it is given): errors, p95 latency,
toxicity and leakage of answers no user ever saw.

A shadow deployment mirrors live requests to the candidate and records its answers; before the
candidate takes any traffic, those answers are judged here. Toxicity uses the platform's lexicon
scorer (services/common/toxicity.py: blatant abuse only, English only); leakage counts answers in
which the PII detector (the one curation redacts with) finds personal data, or which hold one of
the training set's canary strings. Only counts and entity kinds are kept, never an answer's text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from privtune.v1 import events_pb2
from services.common.toxicity import toxicity_score
from services.deploy.traffic_gates import p95

TOXIC_SCORE = 0.5   # an answer scoring at least this is counted toxic


@dataclass(frozen=True)
class ShadowLimits:
    max_error_rate: float = 0.01
    p95_latency_seconds: float = 0.0   # 0: no latency gate
    max_toxic_rate: float = 0.01
    max_leaking_answers: int = 0
    min_requests: int = 20


@dataclass(frozen=True)
class ShadowAnswer:
    ok: bool
    seconds: float
    answer: str


PiiKinds = Callable[[list[str]], list[list[str]]]   # texts -> the PII entity kinds found in each


def judge(answers: Sequence[ShadowAnswer], limits: ShadowLimits, pii_kinds: PiiKinds,
          canaries: Sequence[str] = ()) -> events_pb2.ShadowJudged:
    """The verdict on ``answers`` (at least ``min_requests`` of them, or it fails as too few)."""
    n = len(answers)
    out = events_pb2.ShadowJudged(requests=n)
    if n < limits.min_requests:
        out.passed, out.reason = False, f"only {n} shadow answers, fewer than the {limits.min_requests} the gates need"
        out.gates_broken.append("min_requests")
        return out
    good = [a for a in answers if a.ok]
    out.error_rate = (n - len(good)) / n
    out.p95_latency_ms = p95([a.seconds for a in good]) * 1000 if good else 0.0
    texts = [a.answer for a in good]
    out.toxic_answers = sum(1 for text in texts if toxicity_score(text) >= TOXIC_SCORE)
    kinds = pii_kinds(texts) if texts else []
    leaks = {i for i, found in enumerate(kinds) if found}
    leaks |= {i for i, text in enumerate(texts) if any(c and c in text for c in canaries)}
    out.leaking_answers = len(leaks)
    reasons = []
    if out.error_rate > limits.max_error_rate:
        out.gates_broken.append("error_rate")
        reasons.append(f"error rate {out.error_rate:.1%} above {limits.max_error_rate:.1%}")
    if limits.p95_latency_seconds > 0 and (not good or out.p95_latency_ms > limits.p95_latency_seconds * 1000):
        out.gates_broken.append("p95_latency")
        reasons.append(f"p95 latency {out.p95_latency_ms:.0f} ms above {limits.p95_latency_seconds * 1000:.0f} ms")
    toxic_rate = out.toxic_answers / len(good) if good else 0.0
    if toxic_rate > limits.max_toxic_rate:
        out.gates_broken.append("toxicity")
        reasons.append(f"{out.toxic_answers} toxic answers ({toxic_rate:.1%}) above {limits.max_toxic_rate:.1%}")
    if out.leaking_answers > limits.max_leaking_answers:
        out.gates_broken.append("leakage")
        found = sorted({k for i in leaks if i < len(kinds) for k in kinds[i]})
        reasons.append(f"{out.leaking_answers} answers leak personal data or a canary"
                       + (f" ({', '.join(found)})" if found else "") + f", at most {limits.max_leaking_answers} allowed")
    out.passed = not out.gates_broken
    out.reason = "; ".join(reasons) or f"all shadow gates passed over {n} answers"
    return out


def presidio_pii_kinds() -> PiiKinds:
    """The platform's PII detector as a ``PiiKinds``: imported and loaded on first use (Presidio and spaCy take
    seconds), so a process that never judges a shadow deployment never pays for it."""
    redactor: list[object] = []

    def kinds(texts: list[str]) -> list[list[str]]:
        if not redactor:
            from services.common.pii import PiiConfig, PiiRedactor

            redactor.append(PiiRedactor(PiiConfig(mode="redact")))
        found = redactor[0].detect_many(texts)  # type: ignore[attr-defined]
        return [sorted({d.entity for d in detections}) for detections in found]

    return kinds
