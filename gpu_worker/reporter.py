"""A worker's reports to the orchestrator: facts of one attempt, in order, on ``privtune.training.reports``.

Workers hold no credentials for the orchestrator's store: they publish what happened and
the orchestrator records what its aggregate accepts (see
services/orchestrator/report_recorder.py). Reports queue in memory and a background
thread publishes them one by one, in order, retrying while the bus is down, so a bus
outage never stalls training. A report that never reached the bus before the worker died
is covered by the orchestrator's liveness check: the attempt is requeued and resumed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common.bus import EventBus, Message
from services.common.envelope import Causation, new_envelope
from services.common.topics import TRAINING_REPORTS

log = logging.getLogger(__name__)
SOURCE = "privtune/gpu-worker"


class Reporter:
    def __init__(self, bus: EventBus, tenant_id: str, job_id: str, causation: Causation,
                 max_backoff: float = 10.0) -> None:
        self.bus, self.tenant_id, self.job_id, self.causation = bus, tenant_id, job_id, causation
        self.max_backoff = max_backoff
        self._queue: queue.Queue[events_pb2.EventEnvelope | None] = queue.Queue()
        self._sent = threading.Condition()
        self._published = 0
        self._queued = 0
        self._closed = threading.Event()
        self._give_up_at = 0.0
        self._thread = threading.Thread(target=self._publish_in_order, daemon=True, name=f"reports-{job_id}")
        self._thread.start()

    def report(self, payload: Any) -> events_pb2.EventEnvelope:
        """Queue one fact of the attempt (returns its envelope; the id is the orchestrator's dedupe key)."""
        env = new_envelope(payload, subject=self.job_id, tenant_id=self.tenant_id, source=SOURCE,
                           causation=self.causation)
        with self._sent:
            self._queued += 1
        self._queue.put(env)
        return env

    def _publish_in_order(self) -> None:
        while True:
            env = self._queue.get()
            if env is None:
                return
            backoff = 0.5
            message = Message(TRAINING_REPORTS, self.job_id.encode(), codec.encode(env), id=env.id)
            while True:
                try:
                    self.bus.publish([message])
                    break
                except Exception as exc:  # noqa: BLE001 - the bus is down: keep the report and retry
                    if self._closed.is_set() and self._give_up_at and time.monotonic() > self._give_up_at:
                        log.error("training job %s: dropping %s after the worker stopped waiting: %s",
                                  self.job_id, env.WhichOneof("payload"), exc)
                        break
                    log.warning("training job %s: could not report %s (%s); retrying in %.1fs", self.job_id,
                                env.WhichOneof("payload"), exc, backoff)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, self.max_backoff)
            with self._sent:
                self._published += 1
                self._sent.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued report is published (or dropped); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._sent:
            while self._published < self._queued:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._sent.wait(remaining if remaining is not None else 1.0)
        return True

    def close(self, timeout: float = 600.0) -> bool:
        """Publish what is queued (waiting up to ``timeout`` for the bus), then stop. True if all went out."""
        self._give_up_at = time.monotonic() + timeout
        self._closed.set()
        done = self.flush(timeout + 1.0)
        self._queue.put(None)
        self._thread.join(timeout=5)
        return done
