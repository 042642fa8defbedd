"""A resumable SIEM export loop: read audit records after a cursor, send them, save the cursor of what was acknowledged.

The exporter knows nothing of storage or transport. It is given

* ``fetch(after_position, limit) -> [(position, record), ...]``: records past a position,
  in position order (the audit log's own position, e.g. a global sequence);
* a ``Sink`` whose ``send(records)`` says how many records, counted from the first, the
  receiver acknowledged;
* ``load_cursor()`` / ``save_cursor(position)``: where the export stands.

``step`` exports one batch and saves the position of the last *acknowledged* record, so
a crash (of the exporter, the receiver or the link) at any point loses nothing: the next
exporter resumes after the cursor and resends what was sent but never acknowledged.
Delivery is at least once; every record carries its stable ``record_id`` to dedupe on.

Sinks: ``RelpSink`` (acknowledged delivery, the one to use for a SIEM over the network),
``TlsSyslogSink`` (RFC 5425: best-effort, "acknowledged" means written to the socket),
and ``CallableSink`` for any other transport (e.g. a Kafka topic).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from services.audit.chain import AuditRecord
from services.audit.siem.relp import RelpClient, RelpError
from services.audit.siem.syslog import SyslogSendError, TlsSyslogSender
from services.common.supervision import LoopStatus, run_loop

log = logging.getLogger(__name__)

Fetch = Callable[[int, int], Sequence[tuple[int, AuditRecord]]]
Encode = Callable[[AuditRecord], bytes]


class DeliveryError(ConnectionError):
    """A sink failed part-way: the first ``acknowledged`` records of the batch were delivered, the rest were not."""

    def __init__(self, message: str, *, acknowledged: int) -> None:
        super().__init__(message)
        self.acknowledged = acknowledged


@runtime_checkable
class Sink(Protocol):
    """Where records go. ``send`` returns how many records, from the first, were acknowledged.

    It may instead raise ``DeliveryError`` (with the acknowledged count) when delivery broke
    part-way; any other exception means none of the batch counts as delivered.
    """

    def send(self, records: Sequence[AuditRecord]) -> int: ...


class Exporter:
    """Exports one audit log to one sink, resuming from a saved cursor.

    Args:
        name: names the loop in logs and health (e.g. ``siem-relp-splunk``).
        fetch: ``(after_position, limit) -> [(position, record)]`` in increasing position order.
        sink: the receiver.
        load_cursor: the position of the last acknowledged record (0 before the first).
        save_cursor: store that position; called after every batch that delivered something.
        batch_size: records per ``fetch`` and per ``send``.
        idle_seconds: how long ``run`` waits when there was nothing to export.
    """

    def __init__(self, name: str, fetch: Fetch, sink: Sink, load_cursor: Callable[[], int],
                 save_cursor: Callable[[int], None], *, batch_size: int = 200, idle_seconds: float = 0.5) -> None:
        if not 1 <= batch_size <= 100_000:
            raise ValueError(f"export batch_size must be 1..100000, got {batch_size}")
        self.name = name
        self.fetch = fetch
        self.sink = sink
        self.load_cursor = load_cursor
        self.save_cursor = save_cursor
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds

    def step(self) -> int:
        """Export one batch after the saved cursor; returns how many records were acknowledged (0: none waiting).

        Raises:
            DeliveryError: the sink failed part-way (the cursor was saved up to what it
                acknowledged) or acknowledged none of a non-empty batch.
            ValueError: ``fetch`` returned positions out of order, at or before the cursor,
                or the sink claimed more records than it was given.
            Exception: whatever ``fetch``, the sink or ``save_cursor`` raised; the cursor
                is then where it was (records sent may be sent again: at least once).
        """
        cursor = self.load_cursor()
        batch = list(self.fetch(cursor, self.batch_size))
        if not batch:
            return 0
        _check_positions(batch, cursor, self.batch_size)
        failure: DeliveryError | None = None
        try:
            acknowledged = self.sink.send([record for _, record in batch])
        except DeliveryError as exc:
            acknowledged, failure = exc.acknowledged, exc
        if isinstance(acknowledged, bool) or not isinstance(acknowledged, int) or \
                not 0 <= acknowledged <= len(batch):
            raise ValueError(f"export {self.name}: the sink acknowledged {acknowledged!r} of a batch of {len(batch)}")
        if acknowledged:
            self.save_cursor(batch[acknowledged - 1][0])
        if failure is not None:
            raise failure
        if acknowledged == 0:
            raise DeliveryError(f"export {self.name}: the sink acknowledged none of {len(batch)} records after "
                                f"position {cursor}", acknowledged=0)
        return acknowledged

    def run(self, stop: threading.Event, *, status: LoopStatus | None = None, max_backoff: float = 10.0) -> None:
        """Export until ``stop`` is set, surviving any failure with backoff (``supervision.run_loop``).

        After a failure the sink's ``close()`` (if it has one) drops its connection, so
        the next attempt starts a fresh session.
        """
        run_loop(self.name, lambda: self.step() > 0, stop, idle_seconds=self.idle_seconds,
                 on_error=self._reset_sink, status=status, max_backoff=max_backoff)

    def _reset_sink(self) -> None:
        close = getattr(self.sink, "close", None)
        if callable(close):
            close()


class RelpSink:
    """Acknowledged delivery over RELP: ``encode`` turns a record into a syslog message.

    e.g. ``RelpSink(client, functools.partial(format_rfc5424, hostname="audit-1", body="ocsf"))``.
    """

    def __init__(self, client: RelpClient, encode: Encode) -> None:
        self.client = client
        self.encode = encode

    def send(self, records: Sequence[AuditRecord]) -> int:
        messages = [self.encode(record) for record in records]
        try:
            return self.client.send(messages)
        except RelpError as exc:
            raise DeliveryError(str(exc), acknowledged=exc.acknowledged) from exc

    def close(self) -> None:
        self.client.close()


class TlsSyslogSink:
    """Best-effort delivery over RFC 5425 syslog/TLS: counts what was written, not what arrived."""

    def __init__(self, sender: TlsSyslogSender, encode: Encode) -> None:
        self.sender = sender
        self.encode = encode

    def send(self, records: Sequence[AuditRecord]) -> int:
        messages = [self.encode(record) for record in records]
        try:
            return self.sender.send(messages)
        except SyslogSendError as exc:
            raise DeliveryError(str(exc), acknowledged=exc.sent) from exc

    def close(self) -> None:
        self.sender.close()


class CallableSink:
    """Any other transport: ``send(records)`` returns the acknowledged count, or None for "all of them".

    It raises ``DeliveryError`` itself to report a partial delivery.
    """

    def __init__(self, send: Callable[[Sequence[AuditRecord]], int | None],
                 close: Callable[[], None] | None = None) -> None:
        self._send = send
        self._close = close

    def send(self, records: Sequence[AuditRecord]) -> int:
        acknowledged = self._send(records)
        return len(records) if acknowledged is None else acknowledged

    def close(self) -> None:
        if self._close is not None:
            self._close()


def _check_positions(batch: list[tuple[int, AuditRecord]], cursor: int, limit: int) -> None:
    if len(batch) > limit:
        raise ValueError(f"fetch returned {len(batch)} records when asked for at most {limit}")
    previous = cursor
    for position, _ in batch:
        if isinstance(position, bool) or not isinstance(position, int) or position <= previous:
            raise ValueError(f"fetch returned position {position!r} after {previous}: positions must increase "
                             f"past the cursor ({cursor}), or records would be skipped or repeated forever")
        previous = position
