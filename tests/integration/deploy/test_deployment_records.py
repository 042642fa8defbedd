"""Recording a deployment decision while another writer appends to the same deployment (PostgreSQL, where
two transactions can race on one stream; SQLite serialises the writers): the losing append's transaction
is rolled back whole, the decision is made again on the new state, and nothing is half-written."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import Engine, event

from privtune.v1 import events_pb2
from services.common import eventstore
from services.common.envelope import Causation, new_envelope
from services.common.errors import ConcurrencyConflict
from services.common.store import open_store
from services.deploy import deployment_domain as domain
from services.deploy.application import DeploymentRecords
from tests.stores import fresh_store_url

pytestmark = pytest.mark.integration

TENANT, DEPLOYMENT = "acme", "dep-1"


@pytest.fixture
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    e = open_store(fresh_store_url(request, "postgresql", tmp_path))
    yield e
    e.dispose()


def _requested(note: str) -> events_pb2.DeploymentRequested:
    return events_pb2.DeploymentRequested(deployment_id=DEPLOYMENT, model_version_id=f"m/v1-{note}")


def _append_elsewhere(engine: Engine, version: int, note: str) -> None:
    """Another writer's append (its own connection and transaction), at ``version``."""
    env = new_envelope(_requested(note), subject=DEPLOYMENT, tenant_id=TENANT, source="test",
                       causation=Causation(actor="bob", correlation_id="c"))
    with engine.begin() as conn:
        eventstore.append(conn, domain.STREAM, [env], expected_version=version)


def _endings(engine: Engine) -> list[str]:
    """How each transaction on ``engine`` ends, in order ("commit" or "rollback")."""
    ended: list[str] = []
    event.listen(engine, "commit", lambda _conn: ended.append("commit"))
    event.listen(engine, "rollback", lambda _conn: ended.append("rollback"))
    return ended


def test_a_conflicting_writer_makes_the_decision_again_on_the_new_state(engine: Engine) -> None:
    records = DeploymentRecords(engine)
    seen: list[int] = []

    def decide(state: domain.DeploymentState) -> list[events_pb2.DeploymentRequested]:
        seen.append(state.version)
        if len(seen) == 1:
            _append_elsewhere(engine, state.version, "other")  # lands between our read and our append
        return [_requested(f"ours-{len(seen)}")]

    ended = _endings(engine)
    state = records.record(TENANT, DEPLOYMENT, "alice", decide)
    assert seen == [0, 1]  # decided again after the other writer's event
    # the other writer's commit, then our failed attempt rolled back (not committed: PostgreSQL would turn
    # that COMMIT into a rollback, SQLite would keep what the attempt wrote before the conflict), then ours
    assert ended == ["commit", "rollback", "commit"]
    assert state.version == 2
    with engine.connect() as conn:
        stored = eventstore.load_stream(conn, TENANT, DEPLOYMENT)
    assert [e.deployment_requested.model_version_id for e in stored] == ["m/v1-other", "m/v1-ours-2"]


def test_a_writer_that_always_wins_ends_in_a_conflict_and_nothing_of_ours_is_stored(engine: Engine) -> None:
    records = DeploymentRecords(engine)

    def decide(state: domain.DeploymentState) -> list[events_pb2.DeploymentRequested]:
        _append_elsewhere(engine, state.version, f"other-{state.version}")
        return [_requested("ours")]

    with pytest.raises(ConcurrencyConflict):
        records.record(TENANT, DEPLOYMENT, "alice", decide, attempts=3)
    with engine.connect() as conn:
        stored = eventstore.load_stream(conn, TENANT, DEPLOYMENT)
    assert [e.deployment_requested.model_version_id for e in stored] == ["m/v1-other-0", "m/v1-other-1",
                                                                       "m/v1-other-2"]
