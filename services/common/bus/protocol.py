"""What every bus backend provides (the contract suite in tests/contract/ checks it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence


@dataclass(frozen=True)
class Message:
    """Something to publish. ``key`` picks the partition, so one key stays in order.

    ``id`` is the message's identity across retries of ``publish()`` (the outbox passes
    the event id). It is not written to the log; it lets a backend that may still hold
    an earlier copy from a failed ``publish()`` wait for that copy instead of writing
    the message a second time. Leave it None for messages that are never retried.
    """

    topic: str
    key: bytes
    value: bytes
    headers: dict[str, bytes] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class Record:
    """A message as read back from the log, with its position."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: dict[str, bytes]
    timestamp_ms: int


def next_offsets(records: Sequence[Record]) -> dict[tuple[str, int], int]:
    """What committing ``records`` means per (topic, partition): the offset after the last one."""
    upto: dict[tuple[str, int], int] = {}
    for r in records:
        upto[(r.topic, r.partition)] = max(upto.get((r.topic, r.partition), -1), r.offset + 1)
    return upto


class Subscription(Protocol):
    """One member of a consumer group."""

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        """Return the next records of the partitions this member owns (maybe none)."""
        ...

    def commit(self, records: Sequence[Record]) -> None:
        """Mark these records (and all before them per partition) processed for the group."""
        ...

    def keepalive(self) -> None:
        """Tell the group this member is alive while it works on a long record (no poll)."""
        ...

    def backlog(self) -> int:
        """Records on this member's partitions that it has not fetched yet (as far as it knows: cheap,
        no round trip where the backend caches the partitions' ends)."""
        ...

    def close(self) -> None:
        """Leave the group; uncommitted records go to the next owner."""
        ...


class EventBus(Protocol):
    """Durable, partitioned, append-only log with consumer groups."""

    uri: str

    def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create missing topics with the bus's configured partitions and replication."""
        ...

    def publish(self, messages: Sequence[Message], timeout: float = 30.0) -> None:
        """Append messages; returns only once all are durably acknowledged.

        A caller that retries after ``BusUnavailable`` passes the same messages (same
        ``id``) again: the bus never writes a second copy of one it still holds from the
        earlier attempt, and one written after that attempt gave up counts as written.
        (A restarted process, or a message lost in flight with its answer, may still be
        written twice: consumers dedupe by event id.) Publishing a message again after
        a *successful* call appends it again.

        Raises:
            BusUnavailable: not all messages were acknowledged within ``timeout``.
                Some may have been written: callers retry (with the same ids).
        """
        ...

    def subscribe(self, group: str, topics: Sequence[str], *, from_beginning: bool = True) -> Subscription:
        """Join ``group``; a new group starts at the earliest (or latest) offset."""
        ...

    def end_offsets(self, topic: str) -> dict[int, int]:
        """Next offset to be written, per partition (the high watermark)."""
        ...

    def close(self) -> None:
        ...
