"""The Kafka bus's producer: never two copies of one message id in flight.

librdkafka keeps a produced message queued and retries it until the broker
acknowledges it or ``delivery.timeout.ms`` passes; only then does it report the
outcome. A caller of ``publish()`` may give up sooner (its own ``timeout``) and
retry the same events. Producing them again at that point would put a second copy
in the queue, and once the broker is back both copies are written.

So every message that carries an ``id`` is tracked from ``produce()`` until a
caller has learned its outcome:

* a retry of a message the producer still holds waits for that copy instead of
  producing another one (``BusUnavailable`` if it is still undecided when the
  caller's timeout ends);
* a copy delivered after its caller gave up counts as acknowledged for the retry;
* only a copy librdkafka reported failed (after ``delivery.timeout.ms``, or
  because the producer hit a fatal error and was replaced) is produced again.

What this cannot prevent (consumers still dedupe by event id): a restarted
process knows nothing of the copies its predecessor left in flight; a message
that timed out *in flight* (sent, but the answer never came) may have been
written by the broker; a fatal idempotence error fails messages that may have
been written. ``producer.purge()`` is not used: it would drop other callers'
messages too, and purging in-flight messages leaves exactly that unknown state.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Sequence

from confluent_kafka import KafkaError, KafkaException, Producer

from services.common.bus.protocol import Message
from services.common.errors import BusUnavailable

log = logging.getLogger(__name__)

# A copy delivered after its caller gave up is remembered this long for the retry to find.
FORGET_UNCLAIMED_AFTER_S = 600.0


@dataclass
class _Delivery:
    """One produced copy, until some caller has learned its outcome."""

    generation: int                 # which producer instance holds it
    delivered: bool | None = None   # None while the producer holds it; then librdkafka's verdict
    error: str = ""
    reported_at: float = 0.0


class TrackedProducer:
    """An idempotent confluent-kafka producer that tracks messages by ``Message.id``.

    Thread-safe: several threads may ``send`` at once (delivery reports are served by
    whichever thread polls).
    """

    def __init__(self, config: dict[str, Any], where: str) -> None:
        self._config = {**config, "error_cb": self._on_error}
        self._where = where
        self._lock = threading.Lock()
        self._producer: Producer | None = None
        self._generation = 0
        self._fatal: KafkaError | None = None
        self._held: dict[tuple[str, str], _Delivery] = {}

    def send(self, messages: Sequence[Message], timeout: float) -> None:
        """Produce ``messages`` (skipping ids already delivered or still held) and wait for all.

        Raises:
            BusUnavailable: some message was not acknowledged within ``timeout``, or failed.
        """
        deadline = time.monotonic() + timeout
        producer, generation = self._current()
        idents = [(m.topic, m.id) if m.id is not None else None for m in messages]
        with self._lock:
            self._forget_unclaimed()
            earlier = [self._held[i] for i in idents if i is not None and i in self._held]
        # Nothing of this batch is produced while an earlier copy of any of it is undecided:
        # a copy that later fails would otherwise be re-sent behind newer events of its key.
        self._wait(producer, earlier, deadline)
        undecided = sum(d.delivered is None for d in earlier)
        if undecided:
            raise BusUnavailable(
                f"Kafka at {self._where} has not acknowledged {undecided} of {len(messages)} events yet: the "
                f"producer still holds them from an earlier attempt and keeps trying for up to delivery.timeout.ms="
                f"{self._config.get('delivery.timeout.ms')} ms; they are not sent again meanwhile")
        waiting = [self._produce(producer, generation, m, ident) for m, ident in zip(messages, idents)]
        self._wait(producer, waiting, deadline)
        failed = [d for d in waiting if d.delivered is False]
        undecided = sum(d.delivered is None for d in waiting)
        if failed or undecided:
            detail = (f"{len(failed)} failed ({failed[0].error})" if failed else
                      f"{undecided} of {len(messages)} not acknowledged within {timeout:.1f}s; the producer keeps "
                      f"them queued and a retry waits for them instead of sending them twice")
            raise BusUnavailable(f"Kafka at {self._where} did not acknowledge every event: {detail}")
        with self._lock:  # the caller knows now: a later publish of these ids is a new message
            for ident, d in zip(idents, waiting):
                if ident is not None and self._held.get(ident) is d:
                    del self._held[ident]

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued (up to ``timeout``) and drop the producer and what it tracked."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(timeout)
        with self._lock:
            self._held.clear()

    # -- internals ------------------------------------------------------------------
    def _current(self) -> tuple[Producer, int]:
        """The live producer; one that hit a fatal error is replaced and its undecided copies fail."""
        with self._lock:
            if self._fatal is not None and self._producer is not None:
                log.error("Kafka producer for %s hit a fatal error (%s); starting a new one. Events it held "
                          "are sent again and may be written twice", self._where, self._fatal)
                for ident, d in list(self._held.items()):
                    if d.generation == self._generation and d.delivered is None:
                        self._settle(d, False, f"producer replaced after a fatal error: {self._fatal}")
                        del self._held[ident]
                self._producer = None
            if self._producer is None:
                self._fatal = None
                self._generation += 1
                self._producer = Producer(self._config)
            return self._producer, self._generation

    def _produce(self, producer: Producer, generation: int, m: Message, ident: tuple[str, str] | None) -> _Delivery:
        with self._lock:
            held = self._held.get(ident) if ident is not None else None
            if held is not None:  # delivered after an earlier caller gave up, or another thread's copy
                return held
            d = _Delivery(generation)
            if ident is not None:
                self._held[ident] = d
        try:
            while True:
                try:
                    producer.produce(m.topic, key=m.key, value=m.value, headers=list(m.headers.items()),
                                     on_delivery=partial(self._on_delivery, ident, d))
                    return d
                except BufferError:  # local queue full: let deliveries drain
                    producer.poll(0.1)
        except KafkaException as exc:
            with self._lock:
                self._settle(d, False, str(exc))
                if ident is not None and self._held.get(ident) is d:
                    del self._held[ident]
                if exc.args[0].fatal():
                    self._fatal = exc.args[0]
            if exc.args[0].fatal():
                raise BusUnavailable(f"Kafka producer for {self._where} failed: {exc}") from exc
            raise

    def _on_delivery(self, ident: tuple[str, str] | None, d: _Delivery, err: KafkaError | None, _msg: Any) -> None:
        with self._lock:
            self._settle(d, err is None, str(err) if err is not None else "")
            if err is not None and ident is not None and self._held.get(ident) is d:
                del self._held[ident]  # failed for good: the next publish produces it again

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            with self._lock:
                self._fatal = err
        else:  # transient (broker down, ...): librdkafka retries; publish reports the outcome
            log.debug("Kafka producer for %s: %s", self._where, err)

    @staticmethod
    def _settle(d: _Delivery, delivered: bool, error: str) -> None:
        if d.delivered is None:
            d.delivered, d.error, d.reported_at = delivered, error, time.monotonic()

    def _forget_unclaimed(self) -> None:
        cutoff = time.monotonic() - FORGET_UNCLAIMED_AFTER_S
        for ident in [i for i, d in self._held.items() if d.delivered and d.reported_at < cutoff]:
            del self._held[ident]

    @staticmethod
    def _wait(producer: Producer, deliveries: Sequence[_Delivery], deadline: float) -> None:
        """Serve delivery reports until each of ``deliveries`` is decided or ``deadline`` passes.

        ``flush`` rather than ``poll``: it sends what is queued at once instead of after
        ``linger.ms``, and returns as soon as the queue is empty (short steps, so other
        threads' messages stuck in the queue delay this caller by at most 0.1 s).
        """
        undecided = [d for d in deliveries if d.delivered is None]
        while undecided:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            producer.flush(min(0.1, remaining))
            undecided = [d for d in undecided if d.delivered is None]
