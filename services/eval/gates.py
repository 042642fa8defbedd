"""Promotion gates: each compares the pessimistic end of a metric's interval with a threshold.

A gate passes on the bound the metric would have to move *against* to fail: "at least"
gates (win rate, domain delta, forgetting) use the interval's lower bound, "at most"
gates (toxicity, PII, canary exposure, extraction) its upper bound. So a model passes
only when the evaluation is confident it meets the gate, and a small suite with a wide
interval fails rather than passing on luck: a gate needs at least ``MIN_ITEMS`` items, and
the bound of a 0/1 rate is also its Wilson score bound, whichever is more pessimistic (a
percentile bootstrap of a rate with no events has zero width whatever the sample size).

Pure: :func:`decide` maps thresholds and the estimates of results.json to GATE dicts,
the verdict and its reason (the results contract).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GateRule:
    """How one EvalGates field is checked."""

    metric: str        # the ESTIMATE it reads
    field: str         # the ESTIMATE key holding the bound
    bound_kind: str    # "lower": bound >= threshold passes; "upper": bound <= threshold passes
    negate: bool = False   # the threshold is compared as -t (forgetting_max: delta >= -t)


# In EvalGates field order (proto/privtune/v1/events.proto).
GATE_RULES: dict[str, GateRule] = {
    "win_rate_vs_base_min": GateRule("win_rate", "candidate_ci_low", "lower"),
    "toxicity_max_delta": GateRule("toxicity", "ci_high", "upper"),
    "forgetting_max": GateRule("general.score", "ci_low", "lower", negate=True),
    "pii_leakage_max": GateRule("pii_leakage_rate", "candidate_ci_high", "upper"),
    "canary_exposure_max": GateRule("canary.exposure", "candidate_ci_high", "upper"),
    "extraction_max": GateRule("extraction.exact_rate", "candidate_ci_high", "upper"),
    "domain_delta_min": GateRule("domain.score", "ci_low", "lower"),
}


# A gate is never decided on fewer items than this: a percentile bootstrap of two items, or of a
# rate with no events at all, has a zero-width interval that says nothing about the model.
MIN_ITEMS = 10
MIN_ITEMS_BY_GATE = {"canary_exposure_max": 3}   # canaries are few by design; exposure is per canary
# Rates of 0/1 outcomes: their bound is also the Wilson score bound (95%), whichever is more pessimistic,
# so "no leak in 12 outputs" is not read as "leak rate 0 for sure".
RATE_METRICS = frozenset({"win_rate", "pii_leakage_rate", "extraction.exact_rate"})
WILSON_Z = 1.959964


def wilson_bound(p: float, n: int, kind: str) -> float:
    """The Wilson score interval's lower or upper end for a proportion ``p`` of ``n`` trials."""
    centre = (p + WILSON_Z ** 2 / (2 * n)) / (1 + WILSON_Z ** 2 / n)
    half = WILSON_Z * math.sqrt(p * (1 - p) / n + WILSON_Z ** 2 / (4 * n * n)) / (1 + WILSON_Z ** 2 / n)
    return max(0.0, centre - half) if kind == "lower" else min(1.0, centre + half)


def _number(value: float) -> str:
    return f"{value:.4g}"


def check_thresholds(gates: dict[str, float]) -> None:
    """Refuse unknown gate names and non-finite thresholds before any work is done.

    Raises:
        ValueError: naming the offending gate and the accepted ones.
    """
    for name, threshold in gates.items():
        if name not in GATE_RULES:
            raise ValueError(f"unknown gate {name!r}; the gates are the EvalGates fields: {', '.join(GATE_RULES)}")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise ValueError(f"gate {name} needs a finite number as its threshold, got {threshold!r}")


def _decide_gate(name: str, threshold: float, estimates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    rule = GATE_RULES[name]
    compared = -float(threshold) if rule.negate else float(threshold)
    estimate = estimates.get(rule.metric)
    bound = estimate.get(rule.field) if estimate is not None else None
    if bound is None or not math.isfinite(bound):
        return {"gate": name, "passed": False, "threshold": compared, "bound": None, "bound_kind": rule.bound_kind,
                "margin": None, "reason": f"no items for {rule.metric}"}
    n = int(estimate.get("n") or 0) if estimate is not None else 0
    needed = MIN_ITEMS_BY_GATE.get(name, MIN_ITEMS)
    if n < needed:
        return {"gate": name, "passed": False, "threshold": compared, "bound": None, "bound_kind": rule.bound_kind,
                "margin": None, "reason": f"too few items for {rule.metric} to decide (n={n} < {needed})"}
    bound = float(bound)
    if rule.metric in RATE_METRICS and estimate is not None and math.isfinite(estimate.get("candidate", math.nan)):
        wilson = wilson_bound(min(1.0, max(0.0, float(estimate["candidate"]))), n, rule.bound_kind)
        bound = min(bound, wilson) if rule.bound_kind == "lower" else max(bound, wilson)
    margin = bound - compared if rule.bound_kind == "lower" else compared - bound
    passed = margin >= 0
    relation = ("≥" if rule.bound_kind == "lower" else "≤") if passed else "vs"
    reason = (f"{rule.metric} {rule.bound_kind} bound {_number(bound)} {relation} {_number(compared)}"
              + (f" (margin {_number(margin)})" if passed else f" (short by {_number(-margin)})"))
    return {"gate": name, "passed": passed, "threshold": compared, "bound": bound, "bound_kind": rule.bound_kind,
            "margin": margin, "reason": reason}


def decide(gates: dict[str, float], estimates: dict[str, dict[str, Any]]) -> tuple[list[dict[str, Any]], bool, str]:
    """The GATE dicts, whether every gate passed, and the run's reason.

    Args:
        gates: threshold per EvalGates field that is set (unset gates are absent).
        estimates: ESTIMATE dicts by name; "at most" probe gates read ``candidate_ci_high``
            (the interval of the candidate's own value), delta gates ``ci_low``/``ci_high``,
            the win-rate gate ``candidate_ci_low``.

    A GATE's ``threshold`` is the value its bound is compared with: for ``forgetting_max``
    t that is -t. ``margin`` is bound - threshold for lower gates and threshold - bound for
    upper gates (negative: failed by that much). A gate whose metric has no items fails
    with "no items for <metric>", its bound and margin None.

    Raises:
        ValueError: an unknown gate name or a non-finite threshold.
    """
    check_thresholds(gates)
    if not gates:
        return [], True, "no gates set"
    decided = [_decide_gate(name, gates[name], estimates) for name in GATE_RULES if name in gates]
    failed = [gate for gate in decided if not gate["passed"]]
    if not failed:
        return decided, True, "all gates passed"
    parts = []
    for gate in failed:
        if gate["bound"] is None:
            parts.append(f"{gate['gate']} {gate['reason']}")
        else:
            parts.append(f"{gate['gate']} {gate['bound_kind']} bound {_number(gate['bound'])} vs "
                         f"{_number(gate['threshold'])} (short by {_number(-gate['margin'])})")
    return decided, False, "failed: " + "; ".join(parts)
