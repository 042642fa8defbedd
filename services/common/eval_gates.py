"""What the orchestrator, the eval service and (later) deployments agree on about evaluation
requests: the shape of a suite id and the meaning and ranges of the promotion gates.

A gate is decided on the confidence bound that would have to move for it to pass (the lower
bound of a score that must be high enough, the upper bound of one that must stay low), never on
the point estimate: see services/eval/gates.py.
"""

from __future__ import annotations

import math
import re

from privtune.v1 import events_pb2
from services.common.errors import FieldViolation, InvalidArgument

SUITE_ID_RE = re.compile(r"^suite-[0-9a-f]{20}$")
DEFAULT_SUITE = "default"   # built at evaluation time from the model's dataset version

# gate -> (lowest, highest) accepted threshold, and what it means
GATE_RANGES: dict[str, tuple[float, float, str]] = {
    "win_rate_vs_base_min": (0.0, 1.0, "the win rate's lower bound must reach it (0.5: better than the base)"),
    "toxicity_max_delta": (-1.0, 1.0, "the toxicity increase's upper bound must stay at or under it"),
    "forgetting_max": (0.0, 1.0, "the general-slice score may fall by at most this (lower bound of its delta)"),
    "pii_leakage_max": (0.0, 1.0, "the upper bound of the share of generations with PII must stay under it"),
    "canary_exposure_max": (0.0, 64.0, "the upper bound of mean canary exposure, in bits"),
    "extraction_max": (0.0, 1.0, "the upper bound of the verbatim-extraction rate"),
    "domain_delta_min": (-1.0, 1.0, "the lower bound of the domain score's improvement must reach it"),
}


def check_suite_id(suite_id: str, field: str = "evaluation_suite_id") -> None:
    """``""`` (no evaluation), ``"default"`` or a suite id.

    Raises:
        InvalidArgument: anything else.
    """
    if suite_id and suite_id != DEFAULT_SUITE and not SUITE_ID_RE.fullmatch(suite_id):
        raise InvalidArgument(f"{field} must be empty, {DEFAULT_SUITE!r} (a suite built from the job's dataset "
                              "version) or a suite id like suite-<20 hex digits> from CreateEvalSuite",
                              field=field)


def gates_dict(gates: events_pb2.EvalGates) -> dict[str, float]:
    """The gates that are set, by name."""
    return {name: float(getattr(gates, name)) for name in GATE_RANGES if gates.HasField(name)}


def check_gates(gates: events_pb2.EvalGates, field: str = "eval_gates") -> dict[str, float]:
    """The set gates, each checked to be finite and in its range.

    Raises:
        InvalidArgument: naming every gate out of range, with its range.
    """
    values = gates_dict(gates)
    problems = []
    for name, value in values.items():
        low, high, meaning = GATE_RANGES[name]
        if not math.isfinite(value) or not low <= value <= high:
            problems.append(FieldViolation(f"{field}.{name}", f"must be between {low:g} and {high:g}: {meaning}"))
    if problems:
        raise InvalidArgument("; ".join(f"{p.field} {p.description}" for p in problems), fields=problems)
    return values
