"""`privtune events tail`: decoded events from the bus, filtered by tenant and type."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Iterator, Sequence, TextIO

from google.protobuf.json_format import MessageToDict

from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common.bus import EventBus, Record
from services.common.errors import MalformedEvent


def matches(env: events_pb2.EventEnvelope, tenant: str | None, types: Sequence[str]) -> bool:
    """True when the event is of the tenant (if given) and one of the types (if given).

    A type matches the full name (``privtune.v1.DatasetRegistered``), the short name
    (``DatasetRegistered``) or the payload field (``dataset_registered``).
    """
    if tenant and env.tenant_id != tenant:
        return False
    if not types:
        return True
    names = {env.type, env.type.rsplit(".", 1)[-1], codec.payload_name(env)}
    return any(t in names for t in types)


def iter_events(bus: EventBus, topics: Sequence[str], *, from_beginning: bool, follow: bool,
                stop: threading.Event) -> Iterator[tuple[Record, events_pb2.EventEnvelope | None, str]]:
    """(record, envelope or None, error) from a throwaway consumer group, never committing."""
    sub = bus.subscribe(f"privtune-tail-{uuid.uuid4().hex[:8]}", topics, from_beginning=from_beginning)
    targets = {(t, p): end for t in topics for p, end in bus.end_offsets(t).items()}
    positions = {tp: 0 for tp in targets}
    try:
        while not stop.is_set():
            records = sub.poll(timeout=0.5)
            for r in records:
                positions[(r.topic, r.partition)] = r.offset + 1
                try:
                    yield r, codec.decode(r.value), ""
                except MalformedEvent as exc:
                    yield r, None, str(exc)
            if not follow and not records and all(positions.get(tp, 0) >= end for tp, end in targets.items()):
                return
            if not follow and not from_beginning and not records:
                return
    finally:
        sub.close()


def print_events(events: Iterator[tuple[Record, events_pb2.EventEnvelope | None, str]], out: TextIO,
                 tenant: str | None, types: Sequence[str], limit: int = 0) -> int:
    """Write one JSON line per matching event; returns how many were written."""
    n = 0
    for record, env, error in events:
        if env is None:
            if not tenant and not types:
                out.write(json.dumps({"topic": record.topic, "offset": record.offset, "malformed": error}) + "\n")
            continue
        if not matches(env, tenant, types):
            continue
        doc = MessageToDict(env, preserving_proto_field_name=True)
        doc["_topic"] = f"{record.topic}[{record.partition}]@{record.offset}"
        out.write(json.dumps(doc, sort_keys=True) + "\n")
        out.flush()
        n += 1
        if limit and n >= limit:
            break
    return n
