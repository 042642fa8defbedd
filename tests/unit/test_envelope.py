"""Envelope codec: round trip, routing of the whole catalogue, and each kind of malformed bytes."""

from __future__ import annotations

import pytest

from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common.errors import MalformedEvent
from services.common.topics import ALL_TOPICS, payload_fields

pytestmark = pytest.mark.unit

CAUSE = codec.Causation(actor="alice", correlation_id="corr-1", causation_id="cmd-1")


def _registered() -> events_pb2.EventEnvelope:
    return codec.new_envelope(events_pb2.DatasetRegistered(dataset_id="ds-1", name="tickets"),
                              subject="ds-1", tenant_id="acme", source="privtune/ingest", causation=CAUSE)


def test_round_trip_keeps_every_attribute() -> None:
    env = _registered()
    back = codec.decode(codec.encode(env))
    assert back == env
    assert back.type == "privtune.v1.DatasetRegistered"
    assert back.specversion == "1.0" and back.schema_version == codec.SCHEMA_VERSION
    assert (back.actor, back.correlation_id, back.causation_id) == ("alice", "corr-1", "cmd-1")
    assert codec.topic_of(back) == "privtune.dataset.events"


def test_encoding_is_deterministic() -> None:
    env = _registered()
    env.dataset_registered.labels.update({"b": "2", "a": "1", "c": "3"})
    assert codec.encode(env) == codec.encode(codec.decode(codec.encode(env)))


def test_every_event_of_the_catalogue_is_routed_to_a_known_topic() -> None:
    oneof = events_pb2.EventEnvelope.DESCRIPTOR.oneofs_by_name["payload"]
    assert {f.name for f in oneof.fields} == set(payload_fields())
    for field in oneof.fields:
        env = codec.new_envelope(field.message_type._concrete_class(), subject="s", tenant_id="t",
                                 source="test", causation=CAUSE)
        assert codec.topic_of(env) in ALL_TOPICS


def test_required_catalogue_events_exist() -> None:
    names = {f.message_type.name for f in events_pb2.EventEnvelope.DESCRIPTOR.oneofs_by_name["payload"].fields}
    required = {
        "DatasetRegistered", "CurationRequested", "DatasetVersionCreated", "CurationFailed", "TrainingRequested",
        "TrainingRejected", "TrainingQueued", "TrainingStarted", "TrainingProgress", "CheckpointSaved",
        "TrainingCompleted", "TrainingFailed", "EvalRequested", "EvalCompleted", "DeploymentRequested",
        "DeploymentApproved", "PoolDeployed", "TrafficFlipped", "RolledBack", "AccessDenied",
    }
    assert required <= names


def test_non_catalogue_payload_is_refused() -> None:
    with pytest.raises(TypeError, match="not an event of the catalogue"):
        codec.new_envelope(events_pb2.LoraConfig(), subject="s", tenant_id="t", source="x", causation=CAUSE)


def malformed_samples() -> dict[str, bytes]:
    """One sample of each kind of malformed message, keyed by the expected dead-letter reason."""
    newer = _registered()
    newer.schema_version = codec.SCHEMA_VERSION + 1
    missing = _registered()
    missing.tenant_id = ""
    no_payload = _registered()
    no_payload.ClearField("dataset_registered")
    # field 99 (length-delimited) is a payload a newer producer added: unknown to this build
    unknown = codec.encode(no_payload) + bytes([0x9A, 0x06, 0x03]) + b"abc"
    lying = _registered()
    lying.type = "privtune.v1.TrainingCompleted"
    return {
        "undecodable": b"\xff\xfe garbage \x00\x01",
        "unsupported_schema_version": codec.encode(newer),
        "missing_attribute": codec.encode(missing),
        "unknown_type": unknown,
        "unknown_type/mismatch": codec.encode(lying),
    }


@pytest.mark.parametrize("kind", list(malformed_samples()))
def test_malformed_bytes_raise_with_their_kind(kind: str) -> None:
    with pytest.raises(MalformedEvent) as info:
        codec.decode(malformed_samples()[kind])
    assert info.value.kind == kind.split("/")[0]
    assert str(info.value)
