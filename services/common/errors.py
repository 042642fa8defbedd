"""Errors a caller can act on. The gRPC layer maps each to a status code with machine-readable
details (google.rpc.ErrorInfo, BadRequest, ResourceInfo, PreconditionFailure; see grpc_errors).

Every error has a human message (what was wrong, with which input, what to do) and a stable
``reason`` a program can branch on (UPPER_SNAKE_CASE, never reworded once published; the class
gives a generic one). Where a request field is at fault, ``fields`` names it by its full path
(``config.dedupe.threshold``); where a resource is missing or in the way, ``resource`` names it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

DOMAIN = "privtune.dev"  # ErrorInfo.domain of every privtune error


@dataclass(frozen=True)
class FieldViolation:
    """A request field that is wrong: its full path (``a.b[2].c``) and what is wrong with it."""

    field: str
    description: str


@dataclass(frozen=True)
class Resource:
    """The resource an error is about: its type (``privtune.v1.Dataset``) and name (its id)."""

    type: str
    name: str
    description: str = ""


@dataclass(frozen=True)
class Precondition:
    """A precondition that failed: ``type`` (``POLICY``, ``CLASSIFICATION``...), its subject, and why."""

    type: str
    subject: str
    description: str


@dataclass
class _Details:
    reason: str
    fields: tuple[FieldViolation, ...] = ()
    resource: Resource | None = None
    preconditions: tuple[Precondition, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)


class PrivtuneError(Exception):
    """Base class: the message says what was wrong, with which input, and what to do.

    Keyword arguments add the machine-readable details: ``reason`` (stable), ``fields``
    (FieldViolation per bad field, or ``field=`` for one), ``resource``, ``preconditions``
    and ``metadata`` (string pairs that help a program act, e.g. the limit that was exceeded).
    """

    default_reason = "ERROR"

    def __init__(self, message: str = "", *, reason: str = "", field: str = "",
                 fields: Iterable[FieldViolation] = (), resource: Resource | None = None,
                 preconditions: Iterable[Precondition] = (), metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        violations = tuple(fields) + ((FieldViolation(field, message),) if field else ())
        self.details = _Details(reason=reason or self.default_reason, fields=violations, resource=resource,
                                preconditions=tuple(preconditions), metadata=dict(metadata or {}))

    @property
    def reason(self) -> str:
        return self.details.reason

    def about(self, field: str) -> "PrivtuneError":
        """This error, blamed on request field ``field`` when it names no field yet (returns itself)."""
        if not self.details.fields:
            self.details.fields = (FieldViolation(field, str(self)),)
        return self


class InvalidArgument(PrivtuneError):
    """The request is malformed or violates a documented constraint."""

    default_reason = "INVALID_ARGUMENT"


class NotFound(PrivtuneError):
    """The named resource does not exist for this tenant."""

    default_reason = "NOT_FOUND"


class AlreadyExists(PrivtuneError):
    """A resource with the same unique name already exists for this tenant."""

    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(PrivtuneError):
    """The system is not in a state where the request can be applied."""

    default_reason = "FAILED_PRECONDITION"


class PermissionDenied(PrivtuneError):
    """The caller is authenticated but may not do this."""

    default_reason = "PERMISSION_DENIED"


class Unauthenticated(PrivtuneError):
    """The call carries no usable identity."""

    default_reason = "UNAUTHENTICATED"


class ConcurrencyConflict(PrivtuneError):
    """Another writer changed the aggregate first; retry the command."""

    default_reason = "CONCURRENT_MODIFICATION"


class BusUnavailable(PrivtuneError):
    """The event bus could not be reached or did not acknowledge in time."""

    default_reason = "BUS_UNAVAILABLE"


class Unavailable(PrivtuneError):
    """A part the call depends on cannot take it now (e.g. the access trail is backed up); retry shortly."""

    default_reason = "UNAVAILABLE"


class ServerStopping(PrivtuneError):
    """The server is shutting down: the call (a Watch stream) ends without its outcome; call again,
    another replica (or this one, restarted) answers."""

    default_reason = "SERVER_STOPPING"


class Busy(PrivtuneError):
    """Another worker holds the claim on this unit of work right now: leave it for later (it is
    redelivered), never mark it done."""

    default_reason = "BUSY"


class CommitFailed(PrivtuneError):
    """The group took the partition away (rebalance, broker restart) before the commit.

    Nothing is lost: the uncommitted records are redelivered to the partition's next
    owner, and idempotent consumers skip what they already applied.
    """

    default_reason = "COMMIT_FAILED"


class MalformedEvent(PrivtuneError):
    """A message on the bus cannot be applied: it goes to the dead-letter topic.

    Attributes:
        kind: short machine-readable reason (``undecodable``, ``unknown_type``,
            ``unsupported_schema_version``, ``missing_attribute``, ``rejected_by_handler``).
    """

    default_reason = "MALFORMED_EVENT"

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}", reason=kind.upper())
        self.kind = kind
        self.detail = detail
