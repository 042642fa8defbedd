"""One controller tick over a real store and bus: within a tick it acts on its own writes.

A tick reads the jobs in play once (thousands of rows on a long queue) and then follows its own
appends in memory; these tests pin that nothing it decided waits for the next tick because of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common.bus import open_bus
from services.common.envelope import Causation
from services.common.store import open_store
from services.common.store.engine import reader
from services.common.topics import TRAINING_CONTROL
from services.orchestrator import job_domain, job_store
from services.orchestrator.controller import Controller
from services.orchestrator.job_domain import TrainingJobState
from services.orchestrator.resources import Pool
from services.orchestrator.settings import OrchestratorSettings

pytestmark = pytest.mark.integration
CAUSE = Causation("test", "tick")


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Controller]:
    engine = open_store(f"sqlite:///{tmp_path}/store.db")
    bus = open_bus(f"sqlite:///{tmp_path}/bus.db")
    settings = OrchestratorSettings(pools={"local": Pool(name="local", gpu_type="cpu", gpus=1, executor="local")},
                                    policies_dir=tmp_path / "no-policies")
    yield Controller(engine, settings, bus=bus)
    bus.close()
    engine.dispose()


def _append(controller: Controller, tenant: str, state: TrainingJobState, payloads: list) -> TrainingJobState:
    with controller.engine.begin() as conn:
        return job_store.append_job(conn, tenant, payloads[0].job_id, state, payloads, CAUSE)


def _queued(controller: Controller, tenant: str, job_id: str, priority: int) -> TrainingJobState:
    return _append(controller, tenant, TrainingJobState(), [
        events_pb2.TrainingRequested(job_id=job_id, name=job_id, priority=priority, gpus=1, gpu_pool="local"),
        events_pb2.TrainingQueued(job_id=job_id, gpu_pool="local", priority=priority, gpus=1)])


def _stops(controller: Controller) -> list[events_pb2.TrainingAttemptStop]:
    sub = controller.bus.subscribe("test-stops", [TRAINING_CONTROL], from_beginning=True)  # type: ignore[union-attr]
    try:
        return [codec.decode(r.value).training_attempt_stop for r in sub.poll(timeout=0.5)]
    finally:
        sub.close()


def test_a_tick_places_a_queued_job_once_and_a_preemption_it_decides_stops_the_victim_in_that_tick(
        controller: Controller) -> None:
    low = _queued(controller, "acme", "tj-low", priority=0)
    first = controller.tick()
    assert first.placed == ["tj-low"]
    assert controller.tick().placed == [], "a job the last tick placed is not placed again"
    with reader(controller.engine).connect() as conn:
        low = job_store.load_job(conn, "acme", "tj-low")
    assert low.state == job_domain.SCHEDULED and low.attempt == 1
    _append(controller, "acme", low, [
        events_pb2.TrainingAttemptClaimed(job_id="tj-low", attempt=1, worker_id="w-1", claim_id="claim-1"),
        events_pb2.TrainingStarted(job_id="tj-low", attempt=1, worker_id="w-1")])
    _queued(controller, "globex", "tj-high", priority=2)

    report = controller.tick()

    assert report.preempted == ["tj-low"] and report.placed == [], report
    stops = _stops(controller)
    assert [(s.job_id, s.attempt, s.reason, s.worker_id) for s in stops] == [("tj-low", 1, "preempt", "w-1")], \
        "the stop for the attempt this tick preempted goes out in the same tick"
