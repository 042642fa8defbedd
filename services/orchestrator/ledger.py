"""The privacy ledger: a tenant's monthly epsilon budget for DP-SGD jobs (pure, no I/O).

One event stream per tenant and calendar month (UTC), ``ledger-<tenant>-<YYYY-MM>``.
Before a DP job runs, its epsilon is computed from the plan (:func:`planned_epsilon`),
checked against the cap (:func:`check_budget`) and reserved
(``PrivacyBudgetReserved``). When the job ends, the epsilon the worker's accountant
actually reported replaces the reservation (``PrivacyBudgetSettled``): a job that was
cancelled before its first step gives its whole reservation back.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Iterable, Mapping, NamedTuple

from services.common.training_spec import TrainingSpec
from privtune.v1 import events_pb2
from services.common.errors import InvalidArgument
from services.orchestrator.policy import Violation

RESERVED = "reserved"
SETTLED = "settled"
OUTCOMES = ("completed", "failed", "cancelled", "rejected")
_TOLERANCE = 1e-9  # a job that brings the total exactly to the cap is allowed despite float rounding


def ledger_stream_id(tenant_id: str, month: str) -> str:
    return f"ledger-{tenant_id}-{month}"


def month_of(ms: int) -> str:
    """The ledger month (``"YYYY-MM"``, UTC) of an epoch-milliseconds time."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m")


def next_month(month: str) -> str:
    year, mon = (int(part) for part in month.split("-"))
    return f"{year + 1:04d}-01" if mon == 12 else f"{year:04d}-{mon + 1:02d}"


class LedgerEntry(NamedTuple):
    reserved: float
    spent: float
    state: str  # RESERVED or SETTLED


@dataclass(frozen=True)
class LedgerState:
    """One tenant-month of the ledger, rebuilt from its stream.

    Attributes:
        cap: the monthly cap recorded with the latest reservation (policy may change it).
        entries: job id -> its reservation, actual spend and state.
        version: aggregate version of the last event applied.
    """

    month: str
    cap: float = 0.0
    entries: Mapping[str, LedgerEntry] = field(default_factory=dict)
    version: int = 0

    @property
    def committed(self) -> float:
        """Epsilon spent by settled jobs plus epsilon held for open ones."""
        return sum(e.spent if e.state == SETTLED else e.reserved for e in self.entries.values())

    def remaining(self, cap: float | None = None) -> float:
        """Budget left under ``cap`` (default: the cap recorded in the stream)."""
        return max(0.0, (self.cap if cap is None else cap) - self.committed)


def evolve(state: LedgerState, env: events_pb2.EventEnvelope) -> LedgerState:
    kind = env.WhichOneof("payload")
    if kind == "privacy_budget_reserved":
        r = env.privacy_budget_reserved
        entries = {**state.entries, r.job_id: LedgerEntry(r.epsilon, 0.0, RESERVED)}
        return replace(state, month=r.month or state.month, cap=r.monthly_cap, entries=entries,
                       version=env.aggregate_version)
    if kind == "privacy_budget_settled":
        s = env.privacy_budget_settled
        held = state.entries.get(s.job_id, LedgerEntry(0.0, 0.0, RESERVED)).reserved
        entries = {**state.entries, s.job_id: LedgerEntry(held, s.epsilon_spent, SETTLED)}
        return replace(state, entries=entries, version=env.aggregate_version)
    return replace(state, version=env.aggregate_version)


def fold(month: str, events: Iterable[events_pb2.EventEnvelope]) -> LedgerState:
    """The month's ledger from its stream."""
    state = LedgerState(month=month)
    for env in events:
        state = evolve(state, env)
    return state


def check_budget(state: LedgerState, epsilon: float, cap: float, job_id: str | None = None) -> Violation | None:
    """Refuse a job whose epsilon would take the month's committed total above ``cap``.

    A job that already holds a reservation passes: its epsilon is already counted.
    """
    if job_id is not None and job_id in state.entries:
        return None
    committed = state.committed
    if committed + epsilon <= cap + _TOLERANCE:
        return None
    left = max(0.0, cap - committed)
    wait = f"wait until {next_month(state.month)} when the ledger starts afresh" if state.month else \
        "wait until next month when the ledger starts afresh"
    remedy = (f"lower dp.target_epsilon to at most {left:.4g}, or {wait}" if left > 0 else
              f"no budget is left this month: {wait}")
    return Violation(
        "privacy.monthly_epsilon_cap",
        f"the tenant has committed epsilon {committed:.4g} of its monthly cap {cap:g} in {state.month or 'this month'}; "
        f"this job needs epsilon {epsilon:.4g}, which would make {committed + epsilon:.4g}",
        remedy)


def decide_reserve(state: LedgerState, job_id: str, epsilon: float, delta: float, cap: float,
                   month: str) -> list[events_pb2.PrivacyBudgetReserved]:
    """Hold ``epsilon`` for a job; call :func:`check_budget` first. A second reservation is a no-op."""
    if job_id in state.entries:
        return []
    return [events_pb2.PrivacyBudgetReserved(job_id=job_id, month=month, epsilon=epsilon, delta=delta,
                                             monthly_cap=cap)]


def decide_settle(state: LedgerState, job_id: str, epsilon_spent: float,
                  outcome: str) -> list[events_pb2.PrivacyBudgetSettled]:
    """Replace a job's reservation with what it actually spent (no-op if unreserved or already settled)."""
    entry = state.entries.get(job_id)
    if entry is None or entry.state == SETTLED:
        return []
    return [events_pb2.PrivacyBudgetSettled(job_id=job_id, month=state.month, epsilon_spent=epsilon_spent,
                                            outcome=outcome)]


# ---------------------------------------------------------------- the plan's epsilon

@dataclass(frozen=True)
class PlannedPrivacy:
    epsilon: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int


def planned_steps(spec: TrainingSpec, units: int) -> int:
    """Optimizer steps the trainer will take over ``units`` training rows.

    Mirrors ``gpu_worker/trainer.py`` (``Trainer.__init__``): data-parallel runs drop a
    last partial batch, single-process runs keep it.
    """
    per_epoch = units / spec.effective_batch_size
    steps_per_epoch = max(1, math.floor(per_epoch) if spec.num_processes > 1 else math.ceil(per_epoch))
    return spec.max_steps or spec.epochs * steps_per_epoch


def planned_epsilon(spec: TrainingSpec, train_records: int) -> PlannedPrivacy:
    """The epsilon a DP job will spend, computed before it runs.

    Derives the sample rate, steps and noise multiplier exactly as ``gpu_worker/dp.py``
    does (noise solved for the target with Opacus' RDP accountant), then reports what
    that accountant says for (noise, sample rate, steps, delta): at most
    ``dp.target_epsilon``. The trainer skips records that are not chat-shaped or do not
    fit ``max_seq_length``; it then re-solves the noise for the same target, so its
    actual epsilon still stays at or below the target.

    Raises:
        InvalidArgument: DP-SGD is off, or the dataset has fewer than 2 training records.
    """
    from opacus.accountants import RDPAccountant
    from opacus.accountants.utils import get_noise_multiplier

    if not spec.dp.enabled:
        raise InvalidArgument(f"job {spec.job_id} does not use DP-SGD (dp.enabled=false): it has no epsilon to plan")
    if train_records < 2:
        raise InvalidArgument(f"DP-SGD needs at least 2 training examples; the dataset version has {train_records}")
    sample_rate = min(1.0, spec.effective_batch_size / train_records)
    steps = planned_steps(spec, train_records)
    delta = spec.dp.target_delta
    with warnings.catch_warnings():  # the search tries huge noise, where Opacus warns about its alpha range
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        noise = float(get_noise_multiplier(target_epsilon=spec.dp.target_epsilon, target_delta=delta,
                                           sample_rate=sample_rate, steps=steps, accountant="rdp"))
    accountant = RDPAccountant()
    accountant.history = [(noise, sample_rate, steps)]
    return PlannedPrivacy(epsilon=float(accountant.get_epsilon(delta)), delta=delta, noise_multiplier=noise,
                          sample_rate=sample_rate, steps=steps)
