"""Shadow gates: each gate fires on its own breach, names what it saw, and never keeps answer text."""

from __future__ import annotations

import pytest

from services.deploy.shadow_gates import ShadowAnswer, ShadowLimits, judge

pytestmark = pytest.mark.unit


def _no_pii(texts: list[str]) -> list[list[str]]:
    return [[] for _ in texts]


def _phones(texts: list[str]) -> list[list[str]]:  # a stand-in detector: the real one is tested with curation
    return [["PHONE_NUMBER"] if "555-0199" in t else [] for t in texts]


def test_clean_answers_pass_and_too_few_answers_fail() -> None:
    answers = [ShadowAnswer(True, 0.1, "Please reset your password from the login page.")] * 20
    verdict = judge(answers, ShadowLimits(), _no_pii)
    assert verdict.passed and not verdict.gates_broken and verdict.requests == 20
    few = judge(answers[:3], ShadowLimits(min_requests=5), _no_pii)
    assert not few.passed and list(few.gates_broken) == ["min_requests"]


@pytest.mark.parametrize(("answers", "limits", "gate"), [
    ([ShadowAnswer(i % 4 != 0, 0.1, "ok") for i in range(20)], ShadowLimits(max_error_rate=0.1), "error_rate"),
    ([ShadowAnswer(True, 2.0, "ok")] * 20, ShadowLimits(p95_latency_seconds=1.0), "p95_latency"),
    ([ShadowAnswer(True, 0.1, "you are a stupid idiot, shut up")] * 2 + [ShadowAnswer(True, 0.1, "fine")] * 18,
     ShadowLimits(max_toxic_rate=0.05), "toxicity"),
    ([ShadowAnswer(True, 0.1, "call Jane on 555-0199")] + [ShadowAnswer(True, 0.1, "fine")] * 19,
     ShadowLimits(), "leakage"),
    ([ShadowAnswer(True, 0.1, "the code is CANARY-7f3a9")] + [ShadowAnswer(True, 0.1, "fine")] * 19,
     ShadowLimits(), "leakage"),
])
def test_each_gate_fires_alone_on_its_breach(answers: list[ShadowAnswer], limits: ShadowLimits, gate: str) -> None:
    verdict = judge(answers, limits, _phones, canaries=["CANARY-7f3a9"])
    assert not verdict.passed and list(verdict.gates_broken) == [gate], verdict.reason
    assert "555-0199" not in verdict.reason and "CANARY-7f3a9" not in verdict.reason  # counts and kinds only
