"""Preemption end to end: a high-priority job takes the only device slot from a running low-priority one.

One platform (orchestrator + one training worker, embedded SQLite bus and store) with a
single local device slot; tiny models train for real. The low job checkpoints and stops,
the high job runs, then the low job resumes from the checkpoint it was preempted at.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import select

from privtune.platform import Platform
from privtune.v1 import events_pb2
from services.common import eventstore
from services.common.config import PlatformConfig
from services.common.store.schema import stored_events
from tests.orchestrator_fixtures import create_job, job_request, register_version
from tests.platform_fixtures import wait_until
from tests.training_fixtures import TENANT, make_models

pytestmark = pytest.mark.integration


@pytest.fixture
def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    (tmp_path / "pools.yaml").write_text("pools:\n  - {name: local, gpu_type: cpu, gpus: 1, shared: false}\n")
    monkeypatch.setenv("PRIVTUNE_HEARTBEAT_S", "0.5")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # each job process: one thread, so two never fight over the cores
    config = PlatformConfig.from_env(tmp_path, grpc_address="127.0.0.1:0",
                                     bus_uri=f"sqlite:///{tmp_path}/events.db?session_timeout_ms=3000")
    make_models(config.models_dir)
    running = Platform(config, services=("orchestrator", "training")).start()
    yield running
    running.stop()


def _stream(platform: Platform, job_id: str) -> list[events_pb2.EventEnvelope]:
    with platform.engine.connect() as conn:  # type: ignore[union-attr]
        return eventstore.load_stream(conn, TENANT, job_id)


def _kinds(platform: Platform, job_id: str) -> list[str]:
    return [e.WhichOneof("payload") for e in _stream(platform, job_id)]


def _of(events: list[events_pb2.EventEnvelope], kind: str) -> list[events_pb2.EventEnvelope]:
    return [e for e in events if e.WhichOneof("payload") == kind]


def _global_seq(platform: Platform) -> dict[str, int]:
    """Event id -> its position in the store's global order."""
    with platform.engine.connect() as conn:  # type: ignore[union-attr]
        return dict(conn.execute(select(stored_events.c.event_id, stored_events.c.seq)).all())


def test_a_high_priority_job_preempts_a_running_one_which_later_resumes_from_its_checkpoint(
        platform: Platform) -> None:
    version = register_version(platform.engine, platform.config.storage_uri)  # type: ignore[arg-type]
    low = create_job(platform, job_request(version, name="low", priority=0, max_steps=120,
                                           checkpoint_every=10)).job_id
    wait_until(lambda: "checkpoint_saved" in _kinds(platform, low), 180, "the low job's first checkpoint")
    high = create_job(platform, job_request(version, name="high", priority=50, max_steps=6)).job_id
    wait_until(lambda: "training_completed" in _kinds(platform, high), 240, "the high job to complete")
    wait_until(lambda: "training_completed" in _kinds(platform, low), 240, "the resumed low job to complete")

    low_events, high_events, seq = _stream(platform, low), _stream(platform, high), _global_seq(platform)

    # The low job was asked to stop for the high one, checkpointed, and was requeued for a second attempt.
    (stop,) = _of(low_events, "training_stop_requested")
    assert (stop.training_stop_requested.reason, stop.training_stop_requested.preempting_job_id) == ("preempt", high)
    (preempted,) = _of(low_events, "training_preempted")
    preempted_at = preempted.training_preempted.checkpoint_id
    assert preempted_at.startswith("step-")
    queued = [e.training_queued for e in _of(low_events, "training_queued")]
    assert [(q.reason, q.attempt) for q in queued] == [("admitted", 1), ("preempted", 2)]
    assert seq[stop.id] < seq[preempted.id] < seq[_of(low_events, "training_queued")[1].id]

    # The single slot was never double-booked: the high job was scheduled only once the low one had stopped,
    # and the low job's second attempt only once the high one had finished.
    (high_scheduled,) = _of(high_events, "training_scheduled")
    assert seq[preempted.id] < seq[high_scheduled.id]
    low_scheduled = _of(low_events, "training_scheduled")
    assert [s.training_scheduled.attempt for s in low_scheduled] == [1, 2]
    (high_done,) = _of(high_events, "training_completed")
    assert seq[high_done.id] < seq[low_scheduled[1].id]
    assert high_done.training_completed.steps == 6 and high_done.training_completed.artifact_sha256

    # The low job resumed where it was preempted (or later) and completed exactly once.
    checkpoints = [e.checkpoint_saved.checkpoint_id for e in _of(low_events, "checkpoint_saved")]
    assert low_scheduled[1].training_scheduled.resume_from_checkpoint_id == preempted_at
    starts = [e.training_started for e in _of(low_events, "training_started")]
    assert [s.attempt for s in starts] == [1, 2] and starts[0].resumed_from_checkpoint_id == ""
    resumed = starts[1].resumed_from_checkpoint_id
    assert resumed in checkpoints and checkpoints.index(resumed) >= checkpoints.index(preempted_at)
    (low_done,) = _of(low_events, "training_completed")
    assert low_done.training_completed.steps == 120
    assert seq[low_done.id] == max(seq[e.id] for e in low_events if e.WhichOneof("payload") != "training_heartbeat")
