"""What every WORM store of sealed audit segments provides (tests/contract/test_worm_contract.py checks it).

The audit service seals each tenant's hash-chained log into segment objects, one per
record range (``000000000001-000000001000.jsonl``). A store keeps them write-once at
``<root>/<tenant>/<name>``: a name, once sealed, always reads back the bytes it was
sealed with, and a segment is only ever removed by ``purge_expired`` once its
retention period has ended and no legal hold is on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from services.common.errors import AlreadyExists, InvalidArgument
from services.common.identity import is_tenant_id
from services.common.limits import quote

SEGMENT_NAME_RE = re.compile(r"[0-9a-z][0-9a-z.-]{0,127}")  # the whole name: use fullmatch


@dataclass(frozen=True)
class Retention:
    """How long a sealed segment must be kept."""

    retain_until_ms: int       # Unix ms before which the segment cannot be deleted; 0 = no retention period
    legal_hold: bool = False   # kept regardless of the date until the hold is lifted


@dataclass(frozen=True)
class SegmentRead:
    """A sealed segment as the store holds it."""

    data: bytes            # the bytes of the original sealed version
    extra_versions: int    # later versions, overwrites or delete markers under the same name (0 when clean)
    retain_until_ms: int   # the retention the store reports (0: none)
    legal_hold: bool


class SegmentExists(AlreadyExists):
    """A different content is already sealed under this name; the sealed segment is never overwritten."""

    default_reason = "SEGMENT_EXISTS"


class SegmentStore(Protocol):
    """Write-once storage of sealed audit segments, per tenant."""

    uri: str  # the store's root with a trailing slash, options stripped

    def seal(self, tenant_id: str, name: str, data: bytes, retention: Retention) -> None:
        """Store ``data`` under ``name`` once and for all.

        Sealing the identical bytes again is a no-op (a crash between sealing and the
        caller's bookkeeping re-seals the same segment); the first retention stays.

        Raises:
            SegmentExists: different bytes are already sealed under ``name``.
            InvalidArgument: ``tenant_id`` or ``name`` is malformed.
        """
        ...

    def names(self, tenant_id: str) -> list[str]:
        """The sealed segment names of a tenant, sorted (empty if it has none)."""
        ...

    def read(self, tenant_id: str, name: str) -> SegmentRead:
        """The sealed segment and what the store reports about it. Raises ``NotFound`` if there is none."""
        ...

    def tenants(self) -> list[str]:
        """The tenants that have sealed segments in this store, sorted."""
        ...

    def set_legal_hold(self, tenant_id: str, name: str, on: bool) -> None:
        """Put a legal hold on a sealed segment, or lift it. Raises ``NotFound`` if there is none."""
        ...

    def purge_expired(self, tenant_id: str, now_ms: int) -> list[str]:
        """Delete the segments whose retention ended by ``now_ms`` and that have no legal hold.

        Returns:
            The names deleted, sorted. A segment the store still protects is kept.
        """
        ...


def check_tenant_id(tenant_id: str) -> str:
    """Return ``tenant_id`` if it is one, else raise ``InvalidArgument`` saying why."""
    if not is_tenant_id(tenant_id):
        raise InvalidArgument(f"tenant id {quote(tenant_id)} is not valid; use 1-63 lowercase letters, digits and "
                              "'-', not starting with '-'", reason="INVALID_TENANT_ID")
    return tenant_id


def check_segment_name(name: str) -> str:
    """Return ``name`` if it can name a segment, else raise ``InvalidArgument`` saying why.

    Names are one path segment: lowercase letters, digits, '.' and '-', starting with a
    letter or digit (so never ``.``, ``..`` or a hidden file), at most 128 characters.
    """
    if SEGMENT_NAME_RE.fullmatch(name) is None:
        raise InvalidArgument(f"segment name {quote(name)} is not valid; use 1-128 lowercase letters, digits, "
                              "'.' and '-' starting with a letter or digit, like '000000000001-000000001000.jsonl'",
                              reason="INVALID_SEGMENT_NAME")
    return name
