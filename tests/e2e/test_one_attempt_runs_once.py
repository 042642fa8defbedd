"""One training attempt runs once, even when its command reaches two workers.

The orchestrator and two ``privtune serve training`` workers run as separate processes
(embedded SQLite bus and store, then Apache Kafka and PostgreSQL). As soon as the job's
``TrainingScheduled`` is recorded, the test publishes the very same command a second time,
as a relay re-sending a batch would. Each copy reaches a worker; each worker claims the
attempt before any setup; exactly one wins and trains, the other logs that it lost the
claim and does nothing. The job's stream and its artifact are those of a single delivery
(the artifact is compared with the same spec trained directly).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from privtune.v1 import training_service_pb2 as pb
from services.common import eventstore
from services.common.bus import Message, open_bus
from services.common.store import open_store
from services.common.store.schema import stored_events
from services.common.topics import TRAINING_COMMANDS
from services.common.training_spec import TrainingSpec
from tests.e2e.test_orchestrated_training_on_kafka import _serve, stop_processes
from tests.e2e.test_separate_processes import _free_port, _serving
from tests.orchestrator_fixtures import job_request, register_version, training_stub
from tests.platform_fixtures import metadata, wait_until
from tests.stores import fresh_postgres_database
from tests.training_fixtures import TENANT, completed, make_models, run_to_end

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
# the second copy reaches the other worker (it loses the claim) or the winner (it knows it claimed it)
LOST = ("lost the claim on attempt 1", "attempt 1 was already claimed here")


def _refusals(logs: list[Path]) -> int:
    return sum(log.read_text().count(marker) for log in logs for marker in LOST)


def _backends(request: pytest.FixtureRequest, kind: str, data: Path) -> tuple[str, str]:
    if kind == "embedded":
        return f"sqlite:///{data}/events.db?session_timeout_ms=3000", f"sqlite:///{data}/privtune.db"
    bus = f"kafka://{request.getfixturevalue('kafka_bootstrap')}?partitions=3&namespace=once-{uuid.uuid4().hex[:8]}"
    return bus, fresh_postgres_database(request.getfixturevalue("postgres_url"))


@pytest.mark.parametrize("kind", ["embedded", "kafka+postgresql"])
def test_the_same_scheduled_command_delivered_twice_runs_one_attempt(request: pytest.FixtureRequest, kind: str,
                                                                     tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "tenants").mkdir(parents=True)
    (data / "pools.yaml").write_text("pools:\n  - {name: local, gpu_type: cpu, gpus: 2, shared: false}\n")
    make_models(data / "models")
    bus_uri, store = _backends(request, kind, data)
    engine = open_store(store)
    version = register_version(engine, f"file://{data / 'tenants'}")
    port, component_port = _free_port(), _free_port()
    logs = [tmp_path / "worker-0.log", tmp_path / "worker-1.log"]
    orchestrator = _serve("orchestrator", bus_uri, store, data, tmp_path / "orchestrator.log", port, component_port)
    workers = [_serve("training", bus_uri, store, data, log, orchestrator=f"127.0.0.1:{component_port}")
               for log in logs]  # workers claim on the component port with their certificates
    bus = open_bus(bus_uri)
    try:
        wait_until(lambda: _serving(port, orchestrator, tmp_path / "orchestrator.log"), 120, "the orchestrator")
        wait_until(lambda: all("running" in log.read_text() for log in logs), 120, "both workers")
        job = training_stub(f"127.0.0.1:{port}").CreateTrainingJob(
            job_request(version, max_steps=6, checkpoint_every=3), metadata=metadata(), timeout=60).job

        def recorded(kind_: str) -> list:  # type: ignore[type-arg]
            with engine.connect() as conn:
                return [e for e in eventstore.load_stream(conn, TENANT, job.job_id) if e.WhichOneof("payload") == kind_]

        wait_until(lambda: bool(recorded("training_scheduled")), 60, "the job to be scheduled")
        command = recorded("training_scheduled")[0]
        with engine.connect() as conn:
            raw = conn.execute(select(stored_events.c.payload).where(stored_events.c.event_id == command.id)).scalar_one()
        bus.publish([Message(TRAINING_COMMANDS, job.job_id.encode(), raw)])  # the relay's re-send, byte for byte

        wait_until(lambda: bool(recorded("training_completed")), 240, "the job to complete")
        wait_until(lambda: _refusals(logs) >= 1, 120, "the second delivery to be refused")
        with engine.connect() as conn:
            events = eventstore.load_stream(conn, TENANT, job.job_id)
        kinds = [e.WhichOneof("payload") for e in events if e.WhichOneof("payload") != "training_heartbeat"]
        assert kinds[:5] == ["training_requested", "training_queued", "training_scheduled",
                             "training_attempt_claimed", "training_started"]
        assert kinds[-1] == "training_completed"
        for once in ("training_scheduled", "training_attempt_claimed", "training_started", "training_completed"):
            assert kinds.count(once) == 1, (once, kinds)
        steps = [e.training_progress.step for e in events if e.WhichOneof("payload") == "training_progress"]
        assert steps == sorted(set(steps)) and steps[-1] == 6  # one run's progress, never two interleaved
        winners = {e.actor for e in events if e.WhichOneof("payload") not in (
            "training_requested", "training_queued", "training_scheduled")}
        assert len(winners) == 1  # every worker fact comes from the claimant
        assert _refusals(logs) == 1
        assert job.job_id in next(log for log in logs if any(m in log.read_text() for m in LOST)).read_text()
        state = training_stub(f"127.0.0.1:{port}").GetTrainingJob(pb.GetTrainingJobRequest(job_id=job.job_id),
                                                                   metadata=metadata(), timeout=10).job
        assert state.state == pb.TRAINING_JOB_STATE_SUCCEEDED
    finally:
        bus.close()
        stop_processes([orchestrator, *workers])
        engine.dispose()

    # the artifact is the one a single, direct run of the same spec produces
    spec = TrainingSpec.model_validate_json(events[0].training_requested.config_json)
    rc, direct = run_to_end(spec, data / "models", f"file://{data / 'tenants'}", tmp_path / "direct")
    assert rc == 0
    assert events[-1].training_completed.artifact_sha256 == completed(direct)["artifact_sha256"]
