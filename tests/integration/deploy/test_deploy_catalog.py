"""The deploy service's catalog: only a version's gating evaluation decides, whatever order the topics deliver."""

from __future__ import annotations

from pathlib import Path

import pytest

from privtune.v1 import events_pb2
from services.common.envelope import Causation, new_envelope
from services.common.store import open_store
from services.deploy import catalog

pytestmark = pytest.mark.integration
CAUSE = Causation(actor="t", correlation_id="c")


def _env(payload: object, subject: str = "s") -> events_pb2.EventEnvelope:
    return new_envelope(payload, subject=subject, tenant_id="acme", source="test", causation=CAUSE)  # type: ignore[arg-type]


def _registered() -> events_pb2.ModelVersionRegistered:
    return events_pb2.ModelVersionRegistered(model_version_id="bot/v1", model_name="bot", version=1, kind="adapter",
                                             artifact_uri="file:///a", artifact_sha256="a" * 64,
                                             base_model_id="tiny-llama", evaluation_suite_id="suite-" + "b" * 20,
                                             dataset_uri="file:///d")


def _requested(eval_id: str, trigger: str = "training_completed") -> events_pb2.EvalRequested:
    return events_pb2.EvalRequested(eval_id=eval_id, model_version_id="bot/v1", trigger=trigger)


def _completed(eval_id: str, passed: bool) -> events_pb2.EvalCompleted:
    return events_pb2.EvalCompleted(eval_id=eval_id, model_version_id="bot/v1", passed=passed, reason="why")


@pytest.mark.parametrize("order", ["registration first", "evaluation first"])
def test_the_gating_evaluation_decides_in_either_topic_order(tmp_path: Path, order: str) -> None:
    engine = open_store(f"sqlite:///{tmp_path}/store.db")
    evaluation = [_env(_requested("ev-1"), "ev-1"), _env(_completed("ev-1", True), "ev-1")]
    on_demand = [_env(_requested("ev-2", "on_demand"), "ev-2"), _env(_completed("ev-2", False), "ev-2")]
    registration = [_env(_registered())]
    events = registration + evaluation if order == "registration first" else evaluation + registration
    with engine.begin() as conn:
        for env in events[:2]:
            catalog.apply(conn, env)
    if order == "evaluation first":  # an evaluation seen before the registration is never deployable on its own
        assert catalog.find_version(engine, "acme", "bot/v1", 0) is None
    with engine.begin() as conn:
        for env in events[2:] + on_demand:  # an on-demand run with gates of its caller's choosing never decides
            catalog.apply(conn, env)
    found = catalog.find_version(engine, "acme", "bot/v1", 0)
    assert found is not None and (found.eval_id, found.eval_done, found.eval_passed) == ("ev-1", True, True)
    assert (found.kind, found.dataset_uri, found.artifact_sha256) == ("adapter", "file:///d", "a" * 64)
    assert catalog.find_version(engine, "other", "bot/v1", 0) is None  # tenant scoped
    engine.dispose()
