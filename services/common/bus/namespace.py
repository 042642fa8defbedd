"""Several environments on one bus: ``?namespace=staging`` prefixes every topic and group.

Works for every backend (``open_bus`` wraps it), so staging and production, or two
test runs, can share one Kafka cluster without seeing each other's events. Callers
keep using the logical names (``privtune.dataset.events``).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

from services.common.bus.protocol import EventBus, Message, Record, Subscription

NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class NamespacedBus:
    """An :class:`EventBus` whose topics and groups live under ``<namespace>.``."""

    def __init__(self, inner: EventBus, namespace: str, uri: str) -> None:
        if not NAMESPACE_RE.match(namespace):
            raise ValueError(f"bus namespace {namespace!r} must be 1-64 letters, digits, '_' or '-'")
        self.inner = inner
        self.prefix = f"{namespace}."
        self.uri = uri

    def _wire(self, name: str) -> str:
        return self.prefix + name

    def ensure_topics(self, topics: Sequence[str]) -> None:
        self.inner.ensure_topics([self._wire(t) for t in topics])

    def publish(self, messages: Sequence[Message], timeout: float = 30.0) -> None:
        self.inner.publish([dataclasses.replace(m, topic=self._wire(m.topic)) for m in messages], timeout)

    def subscribe(self, group: str, topics: Sequence[str], *, from_beginning: bool = True) -> Subscription:
        inner = self.inner.subscribe(self._wire(group), [self._wire(t) for t in topics],
                                     from_beginning=from_beginning)
        return _NamespacedSubscription(inner, self.prefix)

    def end_offsets(self, topic: str) -> dict[int, int]:
        return self.inner.end_offsets(self._wire(topic))

    def keepalive(self) -> None:
        self.inner.keepalive()

    def backlog(self) -> int:
        return self.inner.backlog()

    def close(self) -> None:
        self.inner.close()


class _NamespacedSubscription:
    def __init__(self, inner: Subscription, prefix: str) -> None:
        self.inner = inner
        self.prefix = prefix

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        return [dataclasses.replace(r, topic=r.topic[len(self.prefix):])
                for r in self.inner.poll(max_records=max_records, timeout=timeout)]

    def commit(self, records: Sequence[Record]) -> None:
        self.inner.commit([dataclasses.replace(r, topic=self.prefix + r.topic) for r in records])

    def keepalive(self) -> None:
        self.inner.keepalive()

    def close(self) -> None:
        self.inner.close()
