"""What goes into the audit log for each event on the bus: ids, hashes, counts and outcomes, never data.

Pure: ``entries(envelope)`` maps one event to the audit entries it stands for (usually one; a
training start or a curated version is also a *data mount*, recorded as a second entry). The
record id of the first entry is the event id, so a redelivered event maps to the same record id
and exports can dedupe on it.

Which payload fields reach a record is decided by an allow-list of field *shapes*, not by a list
of events, so a new event type is audited from the day it appears without leaking its text:

- numbers, booleans and enum names always;
- strings only from fields named like ids, hashes, methods and principals (``*_id``, ``*sha256``,
  ``method``, ``principal``...), at most ``MAX_VALUE_CHARS`` characters;
- never URIs (paths can name people: ``john_doe_discharge.pdf``), free-text reasons, configs,
  labels or any map or nested message.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from privtune.v1 import events_pb2
from services.common.identity import PLATFORM_TENANT, is_tenant_id

MAX_VALUE_CHARS = 128
SYSTEM_ACTOR = "system"

_ID_FIELD = re.compile(r"(^|_)(id|ids|sha256|hash|method|principal|rule|issuer|via|outcome|alias|attempt|executor"
                       r"|recipe|version|error_code|state|method_name|roles)$")
_NEVER = re.compile(r"(uri|reason|json|text|message|detail|labels|name)$")
_PRIMARY_IDS = ("deployment_id", "job_id", "dataset_version_id", "model_version_id", "dataset_id", "checkpoint_id")
_KINDS = {  # payload field -> kind, where "<domain>.<what happened>" by the first underscore does not read right
    "access_allowed": "rpc.allowed",
    "access_denied": "rpc.denied",
    "break_glass_used": "break_glass.used",
    "rolled_back": "deployment.rolled_back",
    "pool_deployed": "deployment.pool_deployed",
    "traffic_flipped": "deployment.traffic_flipped",
    "pool_healthy": "deployment.pool_healthy",
    "shadow_started": "deployment.shadow_started",
    "shadow_judged": "deployment.shadow_judged",
    "model_version_registered": "model.version_registered",
    "model_alias_moved": "model.alias_moved",
    "privacy_budget_reserved": "privacy.budget_reserved",
    "privacy_budget_settled": "privacy.budget_settled",
    "training_attempt_claimed": "training.attempt_claimed",
    "training_attempt_stop": "training.attempt_stop",
    "training_stop_requested": "training.stop_requested",
    "dataset_version_created": "dataset.version_created",
}
_FAILED = ("failed", "rejected", "denied", "cancelled", "preempted", "rolled_back")


@dataclass(frozen=True)
class Entry:
    """One audit record to append, before it is chained (see ``services.audit.chain.append``)."""

    tenant_id: str
    record_id: str
    time_ms: int
    kind: str
    actor: str
    resource: str
    outcome: str
    correlation_id: str
    attributes: dict[str, str] = field(default_factory=dict)


def kind_of(payload_field: str) -> str:
    """``training_completed`` -> ``training.completed``; a few read better spelled out (``_KINDS``)."""
    if payload_field in _KINDS:
        return _KINDS[payload_field]
    domain, _, what = payload_field.partition("_")
    return f"{domain}.{what}" if what else payload_field


def entries(env: events_pb2.EventEnvelope) -> list[Entry]:
    """The audit entries event ``env`` stands for (none for an event without a payload or tenant)."""
    which = env.WhichOneof("payload")
    if which is None:
        return []
    tenant = env.tenant_id if is_tenant_id(env.tenant_id) else PLATFORM_TENANT  # e.g. "_unauthenticated"
    payload = getattr(env, which)
    attributes = _attributes(payload)
    attributes.update({"event_type": env.type[:MAX_VALUE_CHARS], "source": env.source[:MAX_VALUE_CHARS]})
    if env.causation_id:
        attributes["causation_id"] = env.causation_id[:MAX_VALUE_CHARS]
    if env.aggregate_version:
        attributes["aggregate_version"] = str(env.aggregate_version)
    time_ms = env.time.seconds * 1000 + env.time.nanos // 1_000_000
    kind = kind_of(which)
    first = Entry(tenant_id=tenant, record_id=env.id, time_ms=time_ms, kind=kind,
                  actor=(env.actor or SYSTEM_ACTOR)[:MAX_VALUE_CHARS], resource=_resource(which, payload, env),
                  outcome=_outcome(which, payload), correlation_id=env.correlation_id[:MAX_VALUE_CHARS],
                  attributes=attributes)
    mount = _mount(which, payload, first)
    return [first] if mount is None else [first, mount]


def _mount(which: str, payload: Any, first: Entry) -> Entry | None:
    """A second record: a data mount (a training attempt read a dataset version, a curation run read raw
    files), or, for a call a platform auditor made on a tenant's log, the same call in that tenant's log
    (only allowed calls: denied ones stay in the caller's log, so no one can flood another's trail)."""
    if which == "access_allowed" and payload.resource.startswith("tenant_id="):
        subject = payload.resource[len("tenant_id="):]
        if subject != first.tenant_id and is_tenant_id(subject):
            return Entry(tenant_id=subject, record_id=f"{first.record_id}/subject", time_ms=first.time_ms,
                         kind=first.kind, actor=f"{first.tenant_id}:{first.actor}"[:MAX_VALUE_CHARS],
                         resource=f"audit_log/{subject}", outcome=first.outcome,
                         correlation_id=first.correlation_id, attributes=dict(first.attributes))
        return None
    if which == "training_started":
        resource, attrs = f"dataset_manifest/{payload.dataset_manifest_sha256}", {
            "job_id": payload.job_id, "attempt": str(payload.attempt), "worker_id": payload.worker_id[:MAX_VALUE_CHARS],
            "base_model_sha256": payload.base_model_sha256, "purpose": "training"}
    elif which == "dataset_version_created":
        resource, attrs = f"dataset/{payload.dataset_id}", {
            "job_id": payload.job_id, "dataset_checksum_sha256": payload.dataset_checksum_sha256,
            "dataset_version_id": payload.dataset_version_id, "purpose": "curation"}
    else:
        return None
    attrs = {k: v[:MAX_VALUE_CHARS] for k, v in attrs.items() if v}
    return Entry(tenant_id=first.tenant_id, record_id=f"{first.record_id}/mount", time_ms=first.time_ms,
                 kind="data.mounted", actor=first.actor, resource=resource, outcome="succeeded",
                 correlation_id=first.correlation_id, attributes=attrs)


def _resource(which: str, payload: Any, env: events_pb2.EventEnvelope) -> str:
    if which in ("access_allowed", "access_denied", "break_glass_used"):
        resource = getattr(payload, "resource", "")
        return (resource or f"rpc/{payload.method.lstrip('/')}")[:2 * MAX_VALUE_CHARS]
    if which == "model_alias_moved":
        return f"model_alias/{payload.model_name}@{payload.alias}"[:2 * MAX_VALUE_CHARS]
    for name in _PRIMARY_IDS:
        value = getattr(payload, name, "") if _has_field(payload, name) else ""
        if value:
            return f"{name[:-3]}/{value}"[:2 * MAX_VALUE_CHARS]
    return f"subject/{env.subject}"[:2 * MAX_VALUE_CHARS]


def _outcome(which: str, payload: Any) -> str:
    if which == "access_allowed":
        return payload.outcome[:32] or "OK"
    if which == "access_denied":
        return "denied"
    if which == "break_glass_used":
        return "allowed"
    return "failed" if which.endswith(_FAILED) else "succeeded"


def _has_field(message: Any, name: str) -> bool:
    return name in message.DESCRIPTOR.fields_by_name


def _attributes(payload: Any) -> dict[str, str]:
    """The payload's fields that are safe to keep: numbers, enums, and strings shaped like ids or hashes."""
    out: dict[str, str] = {}
    for fd, value in payload.ListFields():
        if fd.message_type is not None:  # maps and nested messages: labels, metrics, configs
            continue
        if fd.type == FieldDescriptor.TYPE_ENUM:
            values = value if _is_repeated(fd) else [value]
            out[fd.name] = ",".join(fd.enum_type.values_by_number[v].name if v in fd.enum_type.values_by_number
                                    else str(v) for v in values)
        elif fd.type == FieldDescriptor.TYPE_STRING:
            if not _keeps(fd.name):
                continue
            text = ",".join(value) if _is_repeated(fd) else value
            out[fd.name] = text[:MAX_VALUE_CHARS]
        elif fd.type == FieldDescriptor.TYPE_BYTES:
            continue
        elif _is_repeated(fd):
            out[fd.name] = ",".join(_scalar(v) for v in value)[:MAX_VALUE_CHARS]
        else:
            out[fd.name] = _scalar(value)
    return out


@functools.lru_cache(maxsize=4096)
def _keeps(name: str) -> bool:
    """Whether a string field of this name is shaped like an id or a hash (and not like text)."""
    return _NEVER.search(name) is None and _ID_FIELD.search(name) is not None


def _is_repeated(fd: FieldDescriptor) -> bool:
    return bool(fd.is_repeated)


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)
