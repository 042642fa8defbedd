from __future__ import annotations

import pytest

from privtune.v1 import events_pb2
from services.common.envelope import Causation, new_envelope
from services.common.errors import AlreadyExists, InvalidArgument
from services.ingest import domain

pytestmark = pytest.mark.unit


def _cmd(**kw: object) -> domain.RegisterDataset:
    base = dict(tenant_id="acme", dataset_id="ds-1", name="tickets", storage_uri="file:///x", format_hint=1,
                classification=3, checksum_sha256="a" * 64, file_count=2, total_bytes=10, labels={"team": "ops"})
    base.update(kw)
    return domain.RegisterDataset(**base)  # type: ignore[arg-type]


def test_register_then_evolve() -> None:
    events = domain.decide_register(domain.DatasetState(), _cmd())
    assert [type(e).__name__ for e in events] == ["DatasetRegistered"]
    env = new_envelope(events[0], subject="ds-1", tenant_id="acme", source="t",
                       causation=Causation("alice", "c"), aggregate_version=1)
    state = domain.evolve(domain.DatasetState(), env)
    assert state.exists and state.name == "tickets" and state.created_by == "alice" and state.version == 1
    with pytest.raises(AlreadyExists):
        domain.decide_register(state, _cmd())


@pytest.mark.parametrize("kw, needle", [
    ({"name": ""}, "dataset name"),
    ({"name": "has space"}, "dataset name"),
    ({"name": "x" * 129}, "dataset name"),
    ({"classification": 0}, "classification is required"),
    ({"classification": 42}, "classification is required"),
    ({"format_hint": 99}, "format_hint"),
    ({"labels": {f"k{i}": "v" for i in range(40)}}, "labels"),
    ({"labels": {"bad key": "v"}}, "label"),
])
def test_invalid_registration_names_the_field(kw: dict, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        domain.decide_register(domain.DatasetState(), _cmd(**kw))


def test_registered_event_carries_metadata_only() -> None:
    (event,) = domain.decide_register(domain.DatasetState(), _cmd())
    fields = {f.name for f in events_pb2.DatasetRegistered.DESCRIPTOR.fields}
    assert not fields & {"text", "content", "body", "sample"}
    assert event.checksum_sha256 == "a" * 64
