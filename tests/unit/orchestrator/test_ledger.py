"""Privacy ledger: the cap refuses before compute, settlement replaces reservations, replay from envelopes."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from services.common.training_spec import TrainingSpec
from privtune.v1 import events_pb2
from services.common.envelope import Causation, new_envelope
from services.common.errors import InvalidArgument
from services.orchestrator.ledger import (SETTLED, LedgerEntry, LedgerState, check_budget, decide_reserve,
                                          decide_settle, evolve, ledger_stream_id, month_of, planned_epsilon,
                                          planned_steps)

pytestmark = [pytest.mark.unit,
              # Opacus' noise search tries huge noise, where it warns about its alpha range
              pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")]

MONTH = "2026-11"
CAP = 10.0
STREAM = ledger_stream_id("acme", MONTH)


def spec(**kw: Any) -> TrainingSpec:
    return TrainingSpec(job_id="j", tenant_id="t", base_model="m", dataset_uri="file:///x", **kw)


def apply(state: LedgerState, events: list[Any]) -> LedgerState:
    """Wrap each event in a real envelope and fold it in, as replaying the stream would."""
    for payload in events:
        env = new_envelope(payload, subject=STREAM, tenant_id="acme", source="privtune/orchestrator",
                           causation=Causation(actor="alice", correlation_id="corr-1"),
                           aggregate_version=state.version + 1)
        state = evolve(state, env)
    return state


def reserve(state: LedgerState, job_id: str, epsilon: float) -> LedgerState:
    return apply(state, list(decide_reserve(state, job_id, epsilon, 1e-5, CAP, MONTH)))


def test_stream_id_and_month() -> None:
    assert STREAM == "ledger-acme-2026-11"
    assert month_of(int(datetime(2026, 11, 30, 23, 59, tzinfo=timezone.utc).timestamp() * 1000)) == "2026-11"
    assert month_of(int(datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp() * 1000)) == "2026-12"


def test_reservation_round_trips_through_envelopes() -> None:
    state = reserve(LedgerState(month=MONTH), "job-1", 3.0)
    assert state == LedgerState(month=MONTH, cap=CAP, entries={"job-1": LedgerEntry(3.0, 0.0, "reserved")},
                                version=1)
    assert state.committed == 3.0 and state.remaining() == 7.0 and state.remaining(5.0) == 2.0


def test_refuses_a_job_that_would_pass_the_cap() -> None:
    state = reserve(reserve(LedgerState(month=MONTH), "job-1", 4.0), "job-2", 4.0)
    violation = check_budget(state, 2.5, CAP)
    assert violation is not None and violation.rule == "privacy.monthly_epsilon_cap"
    assert "8" in violation.reason and "2.5" in violation.reason and "10" in violation.reason
    assert "at most 2" in violation.remedy and "2026-12" in violation.remedy


def test_allows_exactly_up_to_the_cap() -> None:
    state = reserve(LedgerState(month=MONTH), "job-1", 7.3)
    assert check_budget(state, 2.7, CAP) is None  # 7.3 + 2.7 is 10.000000000000002 in floats
    state = reserve(state, "job-2", 2.7)
    violation = check_budget(state, 0.01, CAP)
    assert violation is not None and "no budget is left" in violation.remedy


def test_reservation_is_idempotent() -> None:
    state = reserve(LedgerState(month=MONTH), "job-1", 6.0)
    assert decide_reserve(state, "job-1", 6.0, 1e-5, CAP, MONTH) == []
    assert check_budget(state, 6.0, CAP, job_id="job-1") is None  # already counted
    assert check_budget(state, 6.0, CAP) is not None


def test_settlement_replaces_the_reservation() -> None:
    state = reserve(reserve(LedgerState(month=MONTH), "job-1", 6.0), "job-2", 4.0)
    assert check_budget(state, 3.0, CAP) is not None
    events = decide_settle(state, "job-1", 1.5, "cancelled")
    assert events == [events_pb2.PrivacyBudgetSettled(job_id="job-1", month=MONTH, epsilon_spent=1.5,
                                                      outcome="cancelled")]
    state = apply(state, list(events))
    assert state.entries["job-1"] == LedgerEntry(6.0, 1.5, SETTLED)
    assert state.committed == pytest.approx(5.5) and state.version == 3
    assert check_budget(state, 3.0, CAP) is None


def test_settlement_is_idempotent_and_needs_a_reservation() -> None:
    state = reserve(LedgerState(month=MONTH), "job-1", 6.0)
    state = apply(state, list(decide_settle(state, "job-1", 5.9, "completed")))
    assert decide_settle(state, "job-1", 5.9, "completed") == []
    assert decide_settle(state, "never-reserved", 1.0, "completed") == []


def test_other_events_only_bump_the_version() -> None:
    state = reserve(LedgerState(month=MONTH), "job-1", 1.0)
    after = apply(state, [events_pb2.TrainingRejected(job_id="job-9")])
    assert after.entries == state.entries and after.version == state.version + 1


def _independent_epsilon(target: float, delta: float, q: float, steps: int) -> float:
    from opacus.accountants import RDPAccountant
    from opacus.accountants.utils import get_noise_multiplier

    sigma = get_noise_multiplier(target_epsilon=target, target_delta=delta, sample_rate=q, steps=steps)
    accountant = RDPAccountant()
    for _ in range(steps):
        accountant.step(noise_multiplier=sigma, sample_rate=q)
    return float(accountant.get_epsilon(delta))


def test_planned_epsilon_matches_the_accountant_and_stays_under_target() -> None:
    job = spec(method="lora", dp={"enabled": True, "target_epsilon": 3.0, "target_delta": 1e-5}, epochs=2,
               micro_batch_size=8, gradient_accumulation_steps=2)
    plan = planned_epsilon(job, train_records=1000)
    assert plan.sample_rate == pytest.approx(16 / 1000)
    assert plan.steps == 2 * 63  # ceil(1000 / 16) per epoch
    assert plan.delta == 1e-5 and plan.noise_multiplier > 0
    assert plan.epsilon <= 3.0
    assert plan.epsilon == pytest.approx(_independent_epsilon(3.0, 1e-5, 16 / 1000, 126), rel=0.01)


def test_planned_epsilon_uses_max_steps() -> None:
    job = spec(dp={"enabled": True, "target_epsilon": 1.0}, max_steps=10, epochs=5)
    assert planned_epsilon(job, train_records=100).steps == 10
    assert planned_steps(spec(micro_batch_size=4, num_processes=2), 100) == 12  # DDP drops the partial batch


def test_planned_noise_is_what_the_worker_uses() -> None:
    import torch

    from gpu_worker.dp import DPSGD

    job = spec(dp={"enabled": True, "target_epsilon": 2.0}, epochs=3, micro_batch_size=5)
    plan = planned_epsilon(job, train_records=200)
    model = torch.nn.Linear(4, 2)
    worker = DPSGD(model, torch.optim.SGD(model.parameters(), lr=0.1), job, n_examples=200, total_steps=plan.steps)
    assert (worker.sample_rate, worker.noise_multiplier) == (plan.sample_rate, plan.noise_multiplier)
    worker.restore(plan.steps)
    assert worker.epsilon() == pytest.approx(plan.epsilon)


def test_planned_epsilon_needs_dp_and_data() -> None:
    with pytest.raises(InvalidArgument, match="dp.enabled=false"):
        planned_epsilon(spec(), train_records=100)
    with pytest.raises(InvalidArgument, match="at least 2"):
        planned_epsilon(spec(dp={"enabled": True}), train_records=1)


def test_a_refused_job_reserves_nothing() -> None:
    """The application checks before it reserves: an over-budget job leaves the ledger untouched."""
    state = reserve(LedgerState(month=MONTH), "job-1", 9.0)
    plan = planned_epsilon(spec(dp={"enabled": True, "target_epsilon": 2.0}), train_records=500)
    assert check_budget(state, plan.epsilon, CAP, job_id="job-2") is not None
    assert "job-2" not in state.entries
