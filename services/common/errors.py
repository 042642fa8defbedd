"""Errors a caller can act on. The gRPC layer maps each to a status code."""

from __future__ import annotations


class PrivtuneError(Exception):
    """Base class: the message says what was wrong, with which input, and what to do."""


class InvalidArgument(PrivtuneError):
    """The request is malformed or violates a documented constraint."""


class NotFound(PrivtuneError):
    """The named resource does not exist for this tenant."""


class AlreadyExists(PrivtuneError):
    """A resource with the same unique name already exists for this tenant."""


class FailedPrecondition(PrivtuneError):
    """The system is not in a state where the request can be applied."""


class PermissionDenied(PrivtuneError):
    """The caller is authenticated but may not do this."""


class Unauthenticated(PrivtuneError):
    """The call carries no usable identity."""


class ConcurrencyConflict(PrivtuneError):
    """Another writer changed the aggregate first; retry the command."""


class BusUnavailable(PrivtuneError):
    """The event bus could not be reached or did not acknowledge in time."""


class Busy(PrivtuneError):
    """Another worker holds the claim on this unit of work right now: leave it for later (it is
    redelivered), never mark it done."""


class CommitFailed(PrivtuneError):
    """The group took the partition away (rebalance, broker restart) before the commit.

    Nothing is lost: the uncommitted records are redelivered to the partition's next
    owner, and idempotent consumers skip what they already applied.
    """


class MalformedEvent(PrivtuneError):
    """A message on the bus cannot be applied: it goes to the dead-letter topic.

    Attributes:
        kind: short machine-readable reason (``undecodable``, ``unknown_type``,
            ``unsupported_schema_version``, ``missing_attribute``, ``rejected_by_handler``).
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
