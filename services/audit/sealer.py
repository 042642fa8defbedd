"""Sign tree heads and seal segments into WORM storage, by count and by time.

For each tenant, when ``seal_records`` records are unsealed or the oldest unsealed one is
``seal_ms`` old, the sealer:

1. signs the tree head at the segment's last seq and stores it with its Merkle frontier
   (one transaction: the head is decided once and never re-signed);
2. builds the segment's bytes from the stored records and that head (deterministic) and seals
   them into the WORM store (sealing identical bytes again is a no-op);
3. records the segment and moves the chain's sealed size.

A crash between any two steps repeats the later steps with the same bytes, so a segment is
never sealed twice with different content and never skipped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from services.audit import log_store, segments
from services.audit.merkle import Frontier
from services.audit.signed_heads import key_id, sign_head
from services.audit.worm.protocol import Retention, SegmentStore
from services.common.clock import now_ms
from services.common.supervision import run_loop

log = logging.getLogger(__name__)
DAY_MS = 86_400_000


@dataclass(frozen=True)
class RetentionPolicy:
    """Retention days per tenant (``default`` for the rest) and the tenants under legal hold."""

    default_days: int = 2557
    days: dict[str, int] = field(default_factory=dict)
    legal_hold: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, retention: str, legal_hold: str = "") -> "RetentionPolicy":
        """From ``'default=2557,acme=3650'`` and ``'acme,globex'``.

        Raises:
            ValueError: an entry is not ``name=<days>`` with a non-negative whole number of days.
        """
        days: dict[str, int] = {}
        for item in filter(None, (part.strip() for part in retention.split(","))):
            name, sep, value = item.partition("=")
            if not sep or not value.strip().isdigit():
                raise ValueError(f"audit retention entry {item!r} is not <tenant or default>=<days>")
            days[name.strip()] = int(value)
        default = days.pop("default", 2557)
        holds = frozenset(filter(None, (t.strip() for t in legal_hold.split(","))))
        return cls(default_days=default, days=days, legal_hold=holds)

    def for_tenant(self, tenant: str, now: int) -> Retention:
        days = self.days.get(tenant, self.default_days)
        return Retention(retain_until_ms=now + days * DAY_MS if days else 0, legal_hold=tenant in self.legal_hold)


class Sealer:
    def __init__(self, engine: Engine, store: SegmentStore, key: Ed25519PrivateKey, policy: RetentionPolicy,
                 *, seal_records: int = 1000, seal_ms: int = 60_000, clock: Callable[[], int] = now_ms) -> None:
        self.engine = engine
        self.store = store
        self.key = key
        self.key_id = key_id(key.public_key())
        self.policy = policy
        self.seal_records = seal_records
        self.seal_ms = seal_ms
        self.clock = clock

    def step(self) -> bool:
        """Seal every segment that is due; whether any was."""
        with self.engine.connect() as conn:
            states = log_store.chain_states(conn)
        sealed = False
        for state in states:
            while self._due(state):
                self.seal_next(state.tenant_id)
                sealed = True
                with self.engine.connect() as conn:
                    state = log_store.chain_state(conn, state.tenant_id)
        return sealed

    def flush(self) -> None:
        """Seal everything unsealed now, due or not (shutdown, tests, ``privtune audit seal``)."""
        with self.engine.connect() as conn:
            states = log_store.chain_states(conn)
        for state in states:
            while state.size > state.sealed_size:
                self.seal_next(state.tenant_id)
                with self.engine.connect() as conn:
                    state = log_store.chain_state(conn, state.tenant_id)

    def _due(self, state: log_store.ChainState) -> bool:
        unsealed = state.size - state.sealed_size
        if unsealed <= 0:
            return False
        return unsealed >= self.seal_records or self.clock() - state.first_unsealed_ms >= self.seal_ms

    def seal_next(self, tenant: str) -> str:
        """Sign (or reuse) the next head and seal its segment; returns the segment name."""
        now = self.clock()
        with self.engine.begin() as conn:
            state = log_store.chain_state(conn, tenant)
            latest = log_store.latest_head(conn, tenant)
            if latest is not None and latest[0].head.size > state.sealed_size:
                head = latest[0]  # signed before a crash, not yet sealed: seal that one
            else:
                frontier = latest[1] if latest is not None else Frontier()
                last = min(state.size, state.sealed_size + self.seal_records)
                for leaf in log_store.leaf_hashes(log_store.stored_between(conn, tenant, state.sealed_size + 1, last)):
                    frontier = frontier.append(leaf)
                head = sign_head(self.key, log_store.head_for(tenant, frontier, max(now, self._last_time(latest)),
                                                              self.key_id))
                log_store.save_head(conn, head, frontier)
        first = state.sealed_size + 1
        name = segments.segment_name(first, head.head.size)
        with self.engine.connect() as conn:
            data = log_store.segment_bytes(conn, tenant, first, head)
        self.store.seal(tenant, name, data, self.policy.for_tenant(tenant, now))
        with self.engine.begin() as conn:
            remaining = log_store.chain_state(conn, tenant).size > head.head.size
            log_store.mark_sealed(conn, tenant, name, first, head.head.size, data, now, now if remaining else 0)
        log.info("audit: sealed %s/%s (%d records, head signed by %s)", tenant, name,
                 head.head.size - first + 1, head.head.key_id)
        return name

    @staticmethod
    def _last_time(latest: object) -> int:
        return latest[0].head.time_ms if latest is not None else 0  # type: ignore[index]

    def run(self, stop: threading.Event) -> None:
        run_loop("audit-sealer", self.step, stop, idle_seconds=min(1.0, self.seal_ms / 4000))
