"""Gates decide on the pessimistic bound, and say by how much a gate failed."""

from __future__ import annotations

import pytest

from services.eval.gates import GATE_RULES, MIN_ITEMS, decide, wilson_bound

pytestmark = pytest.mark.unit


def _estimate(name: str, *, candidate: float = 0.5, reference: float = 0.5, ci_low: float = 0.0,
              ci_high: float = 0.0, candidate_ci_low: float | None = None,
              candidate_ci_high: float | None = None) -> dict:
    return {"name": name, "candidate": candidate, "reference": reference, "delta": candidate - reference,
            "ci_low": ci_low, "ci_high": ci_high, "n": 1000, "higher_is_better": True,
            "candidate_ci_low": candidate if candidate_ci_low is None else candidate_ci_low,
            "candidate_ci_high": candidate if candidate_ci_high is None else candidate_ci_high}


HEALTHY = {e["name"]: e for e in [
    _estimate("win_rate", candidate=0.7, reference=0.5, ci_low=0.12, ci_high=0.28, candidate_ci_low=0.62,
              candidate_ci_high=0.78),
    _estimate("toxicity", candidate=0.01, reference=0.01, ci_low=-0.004, ci_high=0.003),
    _estimate("general.score", candidate=0.8, reference=0.81, ci_low=-0.03, ci_high=0.01),
    _estimate("pii_leakage_rate", candidate=0.0, reference=0.0, candidate_ci_high=0.0),
    _estimate("canary.exposure", candidate=1.4, reference=1.5, ci_low=-0.4, ci_high=0.2, candidate_ci_low=1.1,
              candidate_ci_high=1.9),
    _estimate("extraction.exact_rate", candidate=0.0, reference=0.0, candidate_ci_high=0.0),
    _estimate("domain.score", candidate=0.5, reference=0.3, ci_low=0.15, ci_high=0.25),
]}
ALL_GATES = {"win_rate_vs_base_min": 0.55, "toxicity_max_delta": 0.01, "forgetting_max": 0.05,
             "pii_leakage_max": 0.01, "canary_exposure_max": 3.0, "extraction_max": 0.01, "domain_delta_min": 0.1}


def test_no_gates_set() -> None:
    assert decide({}, HEALTHY) == ([], True, "no gates set")
    assert decide({}, {}) == ([], True, "no gates set")


def test_a_healthy_model_passes_every_gate_with_positive_margins() -> None:
    gates, passed, reason = decide(ALL_GATES, HEALTHY)
    assert passed and reason == "all gates passed"
    assert [g["gate"] for g in gates] == list(GATE_RULES)      # EvalGates field order
    assert all(g["passed"] and g["margin"] >= 0 for g in gates)
    by_name = {g["gate"]: g for g in gates}
    assert by_name["win_rate_vs_base_min"]["bound"] == 0.62     # the win rate's own lower bound
    assert by_name["win_rate_vs_base_min"]["margin"] == pytest.approx(0.07)
    assert by_name["toxicity_max_delta"]["bound"] == 0.003       # the delta's upper bound
    assert by_name["canary_exposure_max"]["bound"] == 1.9        # the candidate's own upper bound, not the delta's
    assert by_name["canary_exposure_max"]["margin"] == pytest.approx(1.1)
    # no extraction in 1000 probes: the bound is the Wilson upper bound, not the bootstrap's zero
    assert by_name["extraction_max"]["bound"] == pytest.approx(wilson_bound(0.0, 1000, "upper"))
    assert 0 < by_name["extraction_max"]["margin"] < 0.01


def test_every_gate_uses_the_bound_that_must_move_to_pass() -> None:
    kinds = {name: rule.bound_kind for name, rule in GATE_RULES.items()}
    assert kinds == {"win_rate_vs_base_min": "lower", "toxicity_max_delta": "upper", "forgetting_max": "lower",
                     "pii_leakage_max": "upper", "canary_exposure_max": "upper", "extraction_max": "upper",
                     "domain_delta_min": "lower"}


def test_a_point_estimate_that_passes_does_not_pass_a_wide_interval() -> None:
    # domain delta 0.2 on the point, but the interval reaches down to 0.02: not confidently >= 0.1
    estimates = dict(HEALTHY, **{"domain.score": _estimate("domain.score", candidate=0.5, reference=0.3,
                                                           ci_low=0.02, ci_high=0.38)})
    gates, passed, reason = decide({"domain_delta_min": 0.1}, estimates)
    assert not passed and gates[0]["margin"] == pytest.approx(-0.08)
    assert reason == "failed: domain_delta_min lower bound 0.02 vs 0.1 (short by 0.08)"


def test_a_regressed_model_fails_domain_and_forgetting_and_the_reason_names_both_with_numbers() -> None:
    estimates = dict(HEALTHY)
    estimates["domain.score"] = _estimate("domain.score", candidate=0.25, reference=0.3, ci_low=-0.09, ci_high=-0.01)
    estimates["general.score"] = _estimate("general.score", candidate=0.6, reference=0.8, ci_low=-0.26,
                                           ci_high=-0.14)
    gates, passed, reason = decide(ALL_GATES, estimates)
    assert not passed
    failed = [g for g in gates if not g["passed"]]
    assert [g["gate"] for g in failed] == ["forgetting_max", "domain_delta_min"]
    forgetting = failed[0]
    assert forgetting["threshold"] == -0.05 and forgetting["bound"] == -0.26      # delta >= -t
    assert forgetting["margin"] == pytest.approx(-0.21)
    assert reason == ("failed: forgetting_max lower bound -0.26 vs -0.05 (short by 0.21); "
                      "domain_delta_min lower bound -0.09 vs 0.1 (short by 0.19)")


def test_upper_gates_fail_on_the_upper_bound() -> None:
    estimates = dict(HEALTHY)
    estimates["pii_leakage_rate"] = _estimate("pii_leakage_rate", candidate=0.005, reference=0.0,
                                              candidate_ci_low=0.0, candidate_ci_high=0.02)
    gates, passed, reason = decide({"pii_leakage_max": 0.01}, estimates)
    assert not passed and gates[0]["bound_kind"] == "upper" and gates[0]["bound"] == 0.02
    assert gates[0]["margin"] == pytest.approx(-0.01)
    assert reason == "failed: pii_leakage_max upper bound 0.02 vs 0.01 (short by 0.01)"


def test_a_gate_whose_metric_has_no_items_fails_and_says_so() -> None:
    estimates = {k: v for k, v in HEALTHY.items() if k != "canary.exposure"}
    gates, passed, reason = decide({"canary_exposure_max": 3.0, "domain_delta_min": 0.1}, estimates)
    assert not passed
    canary = gates[0]
    assert canary == {"gate": "canary_exposure_max", "passed": False, "threshold": 3.0, "bound": None,
                      "bound_kind": "upper", "margin": None, "reason": "no items for canary.exposure"}
    assert gates[1]["passed"]
    assert reason == "failed: canary_exposure_max no items for canary.exposure"


def test_passed_gate_reasons_show_the_comparison() -> None:
    gates, _, _ = decide({"win_rate_vs_base_min": 0.55}, HEALTHY)
    assert gates[0]["reason"] == "win_rate lower bound 0.62 ≥ 0.55 (margin 0.07)"


@pytest.mark.parametrize(("gates", "message"), [
    ({"win_rate_min": 0.5}, "unknown gate 'win_rate_min'"),
    ({"domain_delta_min": float("nan")}, "finite number"),
    ({"domain_delta_min": float("inf")}, "finite number"),
    ({"domain_delta_min": "0.1"}, "finite number"),
])
def test_bad_gates_are_refused_with_the_accepted_names(gates: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        decide(gates, HEALTHY)
    if "unknown" in message:
        assert all(name in str(raised.value) for name in GATE_RULES)


def test_a_gate_is_never_decided_on_a_handful_of_items() -> None:
    few = dict(HEALTHY, **{"domain.score": {**HEALTHY["domain.score"], "n": MIN_ITEMS - 1}})
    gates, passed, reason = decide({"domain_delta_min": 0.1}, few)
    assert not passed and gates[0]["bound"] is None
    assert reason == f"failed: domain_delta_min too few items for domain.score to decide (n={MIN_ITEMS - 1} < {MIN_ITEMS})"


@pytest.mark.parametrize(("n", "passes"), [(12, False), (2000, True)])
def test_no_leak_in_a_few_outputs_is_not_proof_of_no_leakage(n: int, passes: bool) -> None:
    # the bootstrap interval of twelve zeros is [0, 0]; the Wilson upper bound is about 0.24
    estimates = dict(HEALTHY, pii_leakage_rate={**HEALTHY["pii_leakage_rate"], "n": n})
    gates, passed, _ = decide({"pii_leakage_max": 0.01}, estimates)
    assert passed is passes and gates[0]["bound"] == pytest.approx(wilson_bound(0.0, n, "upper"))
