"""Audit records as OCSF 1.5 events, the normalized form every SIEM export derives from.

Which OCSF class a record becomes:

* ``auth.*``, and ``rpc.denied`` whose denial was for missing or invalid credentials
  (``rule=authentication`` or an authentication ``reason`` code): **Authentication**
  (3002, Identity & Access Management). The subject is the record's actor (``anonymous``
  when the caller proved no identity).
* ``break_glass.*``: **Authorize Session** (3003), activity *Assign Privileges*, with
  ``privileges=["break-glass"]``, severity High: the emergency role was exercised.
* everything else, ``rpc.*`` included: **API Activity** (6003, Application Activity).
  ``rpc.*`` records are API calls by definition. The domain records (``dataset.registered``,
  ``checkpoint.saved``, ``model.alias_moved``, ``data.mounted``...) are create / read /
  update / delete activities on a platform resource by a verified principal, which is
  what API Activity describes ("general CRUD API activities, e.g. AWS CloudTrail"), and
  it keeps ``actor.user.uid`` and ``resources[].uid`` where every SIEM query expects
  them. OCSF's Base Event (class 0) would also fit "an event not otherwise defined", but
  it has no actor and no resources, so "everything alice did" would need two queries.
  The activity comes from the verb (``Get``/``List`` -> Read, ``registered`` -> Create,
  ``moved`` -> Update...); an unknown verb is activity 99 *Other* named after the kind.

Every event carries the record's ``record_id`` as ``metadata.uid`` (the dedupe key: an
export is at least once), the tenant as ``metadata.tenant_uid``, the correlation id as
``metadata.correlation_uid``, ``seq`` as ``metadata.sequence``, the chain fields
(``seq``, ``hash``, ``prev_hash``), ``kind`` and the attributes under ``unmapped``, and the
record's stored JSON (``record_to_json``) as ``raw_data``, so a SIEM can recompute the
hash and check the chain link without privtune.

Validation: ``validate_ocsf`` builds a pydantic model of the event from py-ocsf-models
(``BaseEvent``, ``Metadata``, ``User``, ``API``, ``Service``, ``ResourceDetails``) plus the
class attributes that library (findings only, as of 0.10) does not model: activity,
class, category and type ids, ``time``, ``actor``, ``src_endpoint``, ``privileges``. Note
that py-ocsf-models types ``status_id`` with the *Finding* status enum (1 New, 2 In
Progress); the values we send are the event ones (1 Success, 2 Failure), which OCSF
defines for every event class, so only the library's enum names differ.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import json
from importlib import metadata as _dist
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator
from py_ocsf_models.events.base_event import BaseEvent
from py_ocsf_models.objects.api import API
from py_ocsf_models.objects.resource_details import ResourceDetails
from py_ocsf_models.objects.service import Service
from py_ocsf_models.objects.user import User

from services.audit.chain import AuditRecord, record_to_json

OCSF_VERSION = "1.5.0"
PRODUCT_NAME = "privtune"
VENDOR_NAME = "privtune"
LOG_NAME = "privtune-audit"

API_ACTIVITY = 6003
AUTHENTICATION = 3002
AUTHORIZE_SESSION = 3003

# severity_id (OCSF, every class)
UNKNOWN, INFORMATIONAL, LOW, MEDIUM, HIGH, CRITICAL, FATAL, OTHER = 0, 1, 2, 3, 4, 5, 6, 99
SEVERITY_NAMES = {0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical",
                  6: "Fatal", 99: "Other"}
# status_id (OCSF, every class)
STATUS_UNKNOWN, STATUS_SUCCESS, STATUS_FAILURE, STATUS_OTHER = 0, 1, 2, 99

_CLASSES = {  # class_uid -> (class name, category_uid, category name, {activity_id: name})
    API_ACTIVITY: ("API Activity", 6, "Application Activity",
                   {0: "Unknown", 1: "Create", 2: "Read", 3: "Update", 4: "Delete"}),
    AUTHENTICATION: ("Authentication", 3, "Identity & Access Management",
                     {0: "Unknown", 1: "Logon", 2: "Logoff", 3: "Authentication Ticket",
                      4: "Service Ticket Request", 5: "Service Ticket Renew", 6: "Preauth"}),
    AUTHORIZE_SESSION: ("Authorize Session", 3, "Identity & Access Management",
                        {0: "Unknown", 1: "Assign Privileges", 2: "Assign Groups"}),
}

_SUCCESS = frozenset({"allowed", "succeeded", "success", "ok", "completed", "granted"})
_FAILURE = frozenset({"denied", "failed", "failure", "error", "rejected", "refused", "expired",
                      # gRPC status code names: an admitted call's outcome
                      "cancelled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists",
                      "permission_denied", "resource_exhausted", "failed_precondition", "aborted", "out_of_range",
                      "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated"})
# reason codes of services/common/auth/grpc_auth.py (and token errors) that mean "who are you?"
_AUTHENTICATION_REASONS = frozenset({
    "MISSING_CREDENTIALS", "MALFORMED_TOKEN", "TOKENS_NOT_ACCEPTED", "UNKNOWN_CLIENT_CERTIFICATE",
    "MISSING_IDENTITY", "INVALID_TOKEN", "EXPIRED_TOKEN", "UNAUTHENTICATED"})
# the first word of a gRPC method name, or the verb of a kind -> API Activity activity_id
_CRUD_WORDS = {
    1: ("create", "register", "submit", "start", "request", "upload", "import", "add", "issue", "new",
        "created", "registered", "submitted", "started", "requested", "uploaded", "imported", "added",
        "saved", "issued", "written", "appended", "enqueued"),
    2: ("get", "list", "read", "watch", "stream", "describe", "search", "download", "export", "query",
        "verify", "listed", "mounted", "downloaded", "exported", "viewed", "queried", "accessed"),
    3: ("update", "set", "move", "promote", "flip", "cancel", "pause", "resume", "approve", "rollback",
        "roll", "complete", "retry", "rename", "label", "updated", "moved", "promoted", "flipped",
        "cancelled", "canceled", "paused", "resumed", "approved", "rolled_back", "completed", "failed",
        "changed", "progressed", "evaluated"),
    4: ("delete", "remove", "revoke", "purge", "drop", "deleted", "removed", "revoked", "purged",
        "dropped", "expired", "unmounted"),
}
_CRUD = {word: activity for activity, words in _CRUD_WORDS.items() for word in words}


def to_ocsf(record: AuditRecord, *, include_raw: bool = True) -> dict[str, Any]:
    """The OCSF event for ``record`` (a JSON-ready dict; see the module docstring for the mapping).

    Args:
        record: the audit record.
        include_raw: put the record's stored JSON in ``raw_data`` (so the chain hash can be
            checked from the event alone); turn off where the SIEM bills by volume.
    """
    class_uid = ocsf_class(record)
    class_name, category_uid, category_name, activities = _CLASSES[class_uid]
    activity_id = _activity(record, class_uid)
    activity_name = activities.get(activity_id) or _verb(record.kind) or "Other"
    status = status_id(record)
    severity = severity_id(record)
    event: dict[str, Any] = {
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{class_name}: {activity_name}",
        "time": record.time_ms,
        "severity_id": severity,
        "severity": SEVERITY_NAMES[severity],
        "status_id": status,
        "status": _status_name(status, record.outcome),
        "message": _message(record),
        "metadata": _metadata(record),
        "actor": {"user": _user(record)},
        "unmapped": _unmapped(record),
    }
    reason = _attribute(record, "reason")
    if reason:
        event["status_detail"] = reason
    if class_uid == API_ACTIVITY:
        event["api"] = _api(record)
        event["src_endpoint"] = _src_endpoint(record)
        if record.resource:
            event["resources"] = [_resource(record.resource)]
    elif class_uid == AUTHENTICATION:
        event["user"] = _user(record)
        event["service"] = _service(record)
        src = _src_endpoint(record)
        if src != _UNKNOWN_ENDPOINT:
            event["src_endpoint"] = src
    else:
        event["user"] = _user(record)
        event["privileges"] = ["break-glass"]
    if include_raw:
        event["raw_data"] = record_to_json(record).decode("utf-8")
    return event


def to_ocsf_json(record: AuditRecord, *, include_raw: bool = True) -> str:
    """``to_ocsf`` as compact JSON text (UTF-8 characters kept, keys sorted)."""
    return json.dumps(to_ocsf(record, include_raw=include_raw), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


def ocsf_class(record: AuditRecord) -> int:
    """The OCSF class_uid a record maps to."""
    domain = record.kind.partition(".")[0]
    if domain == "auth" or (record.kind == "rpc.denied" and _is_authentication_denial(record)):
        return AUTHENTICATION
    if domain == "break_glass":
        return AUTHORIZE_SESSION
    return API_ACTIVITY


def status_id(record: AuditRecord) -> int:
    """OCSF status_id of the record's outcome: 1 Success, 2 Failure, 0 Unknown (none), 99 Other."""
    outcome = record.outcome.strip().lower()
    if not outcome:
        return STATUS_UNKNOWN
    if outcome in _SUCCESS:
        return STATUS_SUCCESS
    if outcome in _FAILURE:
        return STATUS_FAILURE
    return STATUS_OTHER


def severity_id(record: AuditRecord) -> int:
    """OCSF severity_id; CEF and syslog severities are derived from it.

    Break-glass use is High (someone must look now); a denied call or failed
    authentication Medium; any other failure (a job that failed, an admitted call that
    ended NOT_FOUND) Low; everything else Informational.
    """
    domain = record.kind.partition(".")[0]
    if domain == "break_glass":
        return HIGH
    if status_id(record) == STATUS_FAILURE:
        return MEDIUM if record.kind == "rpc.denied" or domain == "auth" else LOW
    return INFORMATIONAL


def validate_ocsf(event: dict[str, Any]) -> BaseEvent:
    """Check ``event`` against the OCSF model of its class and return the model.

    Raises:
        ValueError: the event is not a valid OCSF event of a class this module emits, or
            carries a field the models do not know (pydantic would otherwise drop it).
    """
    model_type = _MODELS.get(event.get("class_uid"))  # type: ignore[arg-type]
    if model_type is None:
        raise ValueError(f"OCSF class_uid {event.get('class_uid')!r} is not one privtune emits "
                         f"({sorted(_MODELS)})")
    model = model_type.model_validate(event)  # pydantic.ValidationError is a ValueError
    dumped = model.model_dump(mode="json", exclude_none=True)
    if dumped != event:
        raise ValueError(f"OCSF event has fields its {model_type.__name__} model does not know: "
                         f"{_difference(event, dumped)[:8]}")
    return model


# --- the mapping -------------------------------------------------------------------------

def _metadata(record: AuditRecord) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "version": OCSF_VERSION,
        "product": {"name": PRODUCT_NAME, "vendor_name": VENDOR_NAME, "version": product_version()},
        "uid": record.record_id,
        "event_code": record.kind,
        "tenant_uid": record.tenant_id,
        "sequence": record.seq,
        "log_name": LOG_NAME,
        "log_provider": "privtune audit service",
    }
    original = rfc3339(record.time_ms)
    if original is not None:
        meta["original_time"] = original
    if record.correlation_id:
        meta["correlation_uid"] = record.correlation_id
    return meta


def _user(record: AuditRecord) -> dict[str, Any]:
    actor = record.actor or "anonymous"
    if actor == "system" or actor.startswith(("service:", "worker:", "spiffe://")):
        type_id, type_name = 3, "System"
    elif actor == "anonymous":
        type_id, type_name = 0, "Unknown"
    else:
        type_id, type_name = 1, "User"
    # py-ocsf-models requires an account: the tenant is the account a principal acts in
    account = {"uid": record.tenant_id, "name": record.tenant_id, "type_id": 99, "type": "privtune tenant"}
    return {"uid": actor, "name": actor, "type_id": type_id, "type": type_name, "account": account}


def _api(record: AuditRecord) -> dict[str, Any]:
    method = _attribute(record, "method")
    api: dict[str, Any] = {"operation": method or record.kind}
    parsed = _parse_method(method)
    if parsed is not None:
        package, service, _ = parsed
        version = package.rsplit(".", 1)[-1] if "." in package else product_version()
        api["service"] = {"name": service, "uid": f"{package}.{service}", "version": version}
    return api


def _service(record: AuditRecord) -> dict[str, Any]:
    parsed = _parse_method(_attribute(record, "method"))
    if parsed is None:
        return {"name": PRODUCT_NAME, "uid": PRODUCT_NAME, "version": product_version()}
    package, service, _ = parsed
    return {"name": service, "uid": f"{package}.{service}", "version": package.rsplit(".", 1)[-1]}


def _resource(resource: str) -> dict[str, Any]:
    kind, sep, _ = resource.partition("/")
    return {"uid": resource, "type": kind} if sep and kind else {"uid": resource}


_UNKNOWN_ENDPOINT = {"name": "unknown"}


def _src_endpoint(record: AuditRecord) -> dict[str, Any]:
    """The caller's address from a ``peer`` (gRPC form ``ipv4:1.2.3.4:5678``) or ``src_ip`` attribute.

    OCSF requires a source endpoint on API Activity; a record without an address gets
    ``{"name": "unknown"}`` rather than an invented one.
    """
    for key in ("peer", "src_ip", "client_ip"):
        value = _attribute(record, key)
        if value:
            parsed = _parse_peer(value)
            if parsed is not None:
                return parsed
    return dict(_UNKNOWN_ENDPOINT)


def _parse_peer(value: str) -> dict[str, Any] | None:
    text = value
    for prefix in ("ipv4:", "ipv6:"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    port: int | None = None
    if text.startswith("["):  # [::1]:5678
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif text.count(":") == 1:  # 1.2.3.4:5678
        host, _, tail = text.partition(":")
        if tail.isdigit():
            port = int(tail)
    else:
        host = text
    try:
        ip = str(ipaddress.ip_address(host))
    except ValueError:
        return None
    return {"ip": ip, "port": port} if port is not None and 0 <= port <= 65535 else {"ip": ip}


def _unmapped(record: AuditRecord) -> dict[str, Any]:
    return {
        "kind": record.kind,
        "outcome": record.outcome,
        "resource": record.resource,
        "seq": record.seq,
        "hash": record.hash,
        "prev_hash": record.prev_hash,
        "attributes": dict(record.attributes),
    }


def _message(record: AuditRecord) -> str:
    text = f"{record.kind} by {record.actor or 'anonymous'}"
    if record.resource:
        text += f" on {record.resource}"
    return f"{text}: {record.outcome}" if record.outcome else text


def _activity(record: AuditRecord, class_uid: int) -> int:
    verb = _verb(record.kind)
    if class_uid == AUTHENTICATION:
        return 2 if verb in ("logoff", "logout", "logged_out", "signed_out") else 1
    if class_uid == AUTHORIZE_SESSION:
        return 1 if verb in ("used", "granted", "assigned", "started", "opened") else 99
    parsed = _parse_method(_attribute(record, "method"))
    if parsed is not None:
        word = _first_word(parsed[2])
        if word in _CRUD:
            return _CRUD[word]
    return _CRUD.get(verb) or _CRUD.get(verb.rpartition("_")[2], 99)  # alias_moved: moved


def _is_authentication_denial(record: AuditRecord) -> bool:
    if _attribute(record, "rule") == "authentication":
        return True
    return any(_attribute(record, key).upper() in _AUTHENTICATION_REASONS for key in ("reason", "code"))


def _status_name(status: int, outcome: str) -> str:
    return {STATUS_UNKNOWN: "Unknown", STATUS_SUCCESS: "Success", STATUS_FAILURE: "Failure"}.get(status, outcome)


def _attribute(record: AuditRecord, key: str) -> str:
    for name, value in record.attributes:
        if name == key:
            return value
    return ""


def _verb(kind: str) -> str:
    return kind.rpartition(".")[2].lower()


def _first_word(method_name: str) -> str:
    """``GetDataset`` -> ``get``; ``rollback`` -> ``rollback``."""
    end = 1
    while end < len(method_name) and not method_name[end].isupper():
        end += 1
    return method_name[:end].lower()


def _parse_method(method: str) -> tuple[str, str, str] | None:
    """``/privtune.v1.DatasetService/GetDataset`` -> (``privtune.v1``, ``DatasetService``, ``GetDataset``)."""
    if not method.startswith("/") or method.count("/") != 2:
        return None
    full_service, _, name = method[1:].partition("/")
    package, _, service = full_service.rpartition(".")
    if not (package and service and name):
        return None
    return package, service, name


def rfc3339(time_ms: int) -> str | None:
    """``time_ms`` as ``2023-11-14T22:13:20.123Z``; None past year 9999 (a record may hold any 53-bit time)."""
    try:
        when = dt.datetime.fromtimestamp(time_ms // 1000, tz=dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{time_ms % 1000:03d}Z"


@functools.cache
def product_version() -> str:
    """privtune's installed version (``0.0.0`` when run from a tree that was never installed)."""
    try:
        return _dist.version("privtune")
    except _dist.PackageNotFoundError:
        return "0.0.0"


# --- validation models: py-ocsf-models objects plus the class attributes it lacks ---------

class _Endpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ip: str | None = None
    port: int | None = None
    name: str | None = None
    hostname: str | None = None
    uid: str | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> _Endpoint:
        if not (self.ip or self.name or self.hostname or self.uid):
            raise ValueError("an OCSF endpoint needs at least one of ip, name, hostname, uid")
        return self


class _Actor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: User


class _Event(BaseEvent):
    """Attributes every OCSF event class has and py-ocsf-models' BaseEvent leaves out."""

    model_config = ConfigDict(extra="forbid")
    class_uid: int
    class_name: str
    category_uid: int
    category_name: str
    activity_id: int
    activity_name: str
    type_uid: int
    type_name: str
    time: int
    actor: _Actor

    @model_validator(mode="after")
    def _consistent_ids(self) -> _Event:
        name, category, _, activities = _CLASSES[self.class_uid]
        if self.class_name != name or self.category_uid != category:
            raise ValueError(f"class {self.class_uid} is {name!r} in category {category}")
        if self.activity_id not in activities and self.activity_id != 99:
            raise ValueError(f"activity_id {self.activity_id} is not defined for {name}")
        if self.type_uid != self.class_uid * 100 + self.activity_id:
            raise ValueError("type_uid must be class_uid * 100 + activity_id")
        if self.metadata.version != OCSF_VERSION:
            raise ValueError(f"metadata.version must be {OCSF_VERSION}")
        return self


class ApiActivity(_Event):
    class_uid: Literal[6003]
    api: API
    src_endpoint: _Endpoint
    resources: list[ResourceDetails] | None = None


class Authentication(_Event):
    class_uid: Literal[3002]
    user: User
    service: Service
    src_endpoint: _Endpoint | None = None


class AuthorizeSession(_Event):
    class_uid: Literal[3003]
    user: User
    privileges: list[str]


_MODELS: dict[int, type[_Event]] = {API_ACTIVITY: ApiActivity, AUTHENTICATION: Authentication,
                                    AUTHORIZE_SESSION: AuthorizeSession}


def _difference(sent: Any, kept: Any, path: str = "") -> list[str]:
    if isinstance(sent, dict) and isinstance(kept, dict):
        out: list[str] = []
        for key in sent:
            where = f"{path}.{key}" if path else str(key)
            out += [where] if key not in kept else _difference(sent[key], kept[key], where)
        return out
    if isinstance(sent, list) and isinstance(kept, list) and len(sent) == len(kept):
        return [d for i, (a, b) in enumerate(zip(sent, kept)) for d in _difference(a, b, f"{path}[{i}]")]
    return [] if sent == kept else [path]
