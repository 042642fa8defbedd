"""Build, encode and decode event envelopes (CloudEvents attributes + privtune's)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from google.protobuf.message import DecodeError, Message

from privtune.v1 import events_pb2
from services.common import random_ids
from services.common.errors import MalformedEvent
from services.common.identity import UNAUTHENTICATED_TENANT, is_tenant_id
from services.common.topics import topic_for_payload

SPEC_VERSION = "1.0"
SCHEMA_VERSION = 1  # bump on a change consumers must opt in to; older consumers dead-letter newer ones
_REQUIRED = ("id", "type", "subject", "tenant_id", "source")
# the longest value the event store keeps (stored_events columns): longer ones are dead-lettered, not stored
_MAX_LENGTH = {"id": 64, "type": 128, "subject": 128, "tenant_id": 128}


@dataclass(frozen=True)
class Causation:
    """Who asked, and what caused this event: carried from command to every event it emits."""

    actor: str
    correlation_id: str
    causation_id: str = ""


def new_envelope(
    payload: Message,
    *,
    subject: str,
    tenant_id: str,
    source: str,
    causation: Causation,
    aggregate_version: int = 0,
    event_id: str | None = None,
    time: datetime | None = None,
) -> events_pb2.EventEnvelope:
    """Wrap a domain event in an envelope; the payload type picks the oneof field."""
    env = events_pb2.EventEnvelope(
        id=event_id or str(random_ids.uuid4()),
        source=source,
        type=payload.DESCRIPTOR.full_name,
        specversion=SPEC_VERSION,
        subject=subject,
        tenant_id=tenant_id,
        actor=causation.actor,
        correlation_id=causation.correlation_id,
        causation_id=causation.causation_id,
        schema_version=SCHEMA_VERSION,
        aggregate_version=aggregate_version,
    )
    env.time.FromDatetime(time or datetime.now(timezone.utc))
    field = _payload_field_for(payload)
    getattr(env, field).CopyFrom(payload)
    return env


def _payload_field_for(payload: Message) -> str:
    for field in events_pb2.EventEnvelope.DESCRIPTOR.oneofs_by_name["payload"].fields:
        if field.message_type is payload.DESCRIPTOR:
            return field.name
    raise TypeError(f"{payload.DESCRIPTOR.full_name} is not an event of the catalogue (events.proto EventEnvelope.payload)")


def payload_name(env: events_pb2.EventEnvelope) -> str:
    """The oneof field set on the envelope, e.g. ``dataset_registered``."""
    return env.WhichOneof("payload") or ""


def payload_of(env: events_pb2.EventEnvelope) -> Message:
    """The domain event inside the envelope."""
    return getattr(env, payload_name(env))


def topic_of(env: events_pb2.EventEnvelope) -> str:
    """The topic this envelope is published on."""
    return topic_for_payload(payload_name(env))


def encode(env: events_pb2.EventEnvelope) -> bytes:
    """Serialize deterministically, so the same envelope always has the same bytes."""
    return env.SerializeToString(deterministic=True)


def decode(data: bytes) -> events_pb2.EventEnvelope:
    """Parse and validate bytes from the bus.

    Raises:
        MalformedEvent: garbage bytes, a newer schema version, a missing attribute,
            or a payload this build does not know (kind says which).
    """
    env = events_pb2.EventEnvelope()
    try:
        env.ParseFromString(data)
    except DecodeError as exc:
        raise MalformedEvent("undecodable", f"not a privtune EventEnvelope ({exc}); {len(data)} bytes") from None
    if env.schema_version > SCHEMA_VERSION:
        raise MalformedEvent(
            "unsupported_schema_version",
            f"event {env.id or '?'} has schema_version {env.schema_version}, this consumer understands up to "
            f"{SCHEMA_VERSION}; upgrade the consumer and replay the dead-letter topic",
        )
    missing = [name for name in _REQUIRED if not getattr(env, name)]
    if missing:
        raise MalformedEvent("missing_attribute", f"event {env.id[:64] or '?'} lacks {', '.join(missing)}")
    if not is_tenant_id(env.tenant_id) and env.tenant_id != UNAUTHENTICATED_TENANT:
        # a tenant id names folders, policies and keys: an event that carries anything else is forged or broken
        raise MalformedEvent("invalid_tenant", f"event {env.id[:64]} carries a tenant id that is not one")
    too_long = [name for name, limit in _MAX_LENGTH.items() if len(getattr(env, name)) > limit]
    if too_long:
        raise MalformedEvent("attribute_too_long", f"event {env.id[:64]} has {', '.join(too_long)} longer than "
                                                   f"{', '.join(str(_MAX_LENGTH[n]) for n in too_long)} characters")
    field = payload_name(env)
    if not field:
        raise MalformedEvent(
            "unknown_type", f"event {env.id} of type {env.type!r} carries no payload this build knows"
        )
    expected = getattr(env, field).DESCRIPTOR.full_name
    if env.type != expected:
        raise MalformedEvent("unknown_type", f"event {env.id} says type {env.type!r} but carries {expected}")
    return env
