"""A read model: the tables it owns and how it is kept and rebuilt.

Two kinds:

- a **consumer projection** (``topics`` + ``apply``): a consumer group applies each event
  of its topics to the tables, recording the event id in the same transaction;
- an **inline projection** (``rebuild``, no topics): the owning aggregate writes the rows in
  the same transaction as its events, so the view cannot lag or disagree with it; replay
  calls ``rebuild(source, target)`` to recompute the rows from the event store.

``privtune replay`` rebuilds both from the event store (``stored_events``), never the bus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from sqlalchemy import Connection, Table

from privtune.v1 import events_pb2

Apply = Callable[[Connection, events_pb2.EventEnvelope], None]
ApplyBatch = Callable[[Connection, list[events_pb2.EventEnvelope]], None]
Rebuild = Callable[[Connection, Connection], int]


@dataclass(frozen=True)
class Projection:
    """``name`` is also its consumer group and its key in ``processed_events``."""

    name: str
    topics: Sequence[str]
    tables: Sequence[Table]
    apply: Apply | None
    rebuild: Rebuild | None = None
    apply_batch: ApplyBatch | None = None  # many events in one transaction (see EventConsumer)
    self_deduping: bool = False  # apply_batch ignores events it already applied: no dedupe-table rows needed
    # the payloads (``EventEnvelope.payload`` names) ``apply`` does anything with; the consumer passes the
    # others by without a store transaction or a dedupe row (None: every payload of its topics)
    payloads: frozenset[str] | None = None

    def wants(self, env: events_pb2.EventEnvelope) -> bool:
        return self.payloads is None or (env.WhichOneof("payload") or "") in self.payloads

    @property
    def consumed(self) -> bool:
        """Kept by a consumer of the bus (else written inline by its aggregate)."""
        return bool(self.topics) and self.apply is not None

    def batched(self) -> ApplyBatch:
        """How to apply many events in one transaction: ``apply_batch``, else ``apply`` on each in turn.

        Everything a projection writes is in the consumer's transaction (read-model rows, or the
        events a follow-up such as ledger settlement appends), so a batch that fails rolls back
        whole and the consumer applies its events one by one (EventConsumer): a conflict on one
        event then retries that event only. Most events of a follow-up's topics are not its
        business, and cost it no transaction of their own."""
        if self.apply_batch is not None:
            return self.apply_batch
        apply = self.apply
        assert apply is not None, f"projection {self.name} is not consumed"

        def each(conn: Connection, envs: list[events_pb2.EventEnvelope]) -> None:
            for env in envs:
                apply(conn, env)
        return each
