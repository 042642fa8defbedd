"""Stop commands for the attempts this worker runs, from ``privtune.training.control``.

Each worker process listens with a group of its own (every worker sees every command) from
the end of the topic, and sets the stop event of the attempt a ``TrainingAttemptStop`` names
(job, attempt and, when given, this worker). The orchestrator re-sends a stop while the
attempt is still reported alive, so a copy missed while reconnecting is followed by another.
"""

from __future__ import annotations

import logging
import threading
import uuid

from services.common import envelope as codec
from services.common.bus import EventBus, Subscription
from services.common.errors import MalformedEvent
from services.common.supervision import run_loop
from services.common.topics import TRAINING_CONTROL

log = logging.getLogger(__name__)


class ControlListener:
    def __init__(self, bus: EventBus, worker_id: str) -> None:
        self.bus = bus
        self.worker_id = worker_id
        self.group = f"training.control.{worker_id}.{uuid.uuid4().hex[:8]}"
        self._watched: dict[tuple[str, int], tuple[threading.Event, list[str]]] = {}
        self._lock = threading.Lock()
        self._subscription: Subscription | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "ControlListener":
        self._subscription = self.bus.subscribe(self.group, [TRAINING_CONTROL], from_beginning=False)
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"control-{self.worker_id}")
        self._thread.start()
        return self

    def watch(self, job_id: str, attempt: int, stop_attempt: threading.Event) -> list[str]:
        """Set ``stop_attempt`` when a stop for (job, attempt) arrives; returns the list its reasons go to."""
        reasons: list[str] = []
        with self._lock:
            self._watched[(job_id, attempt)] = (stop_attempt, reasons)
        return reasons

    def unwatch(self, job_id: str, attempt: int) -> None:
        with self._lock:
            self._watched.pop((job_id, attempt), None)

    def _run(self) -> None:
        run_loop(f"training control listener {self.worker_id}", self._poll_once, self._stop, idle_seconds=0.0,
                 on_error=self._resubscribe)

    def _poll_once(self) -> bool:
        if self._subscription is None:
            self._subscription = self.bus.subscribe(self.group, [TRAINING_CONTROL], from_beginning=False)
        records = self._subscription.poll(max_records=100, timeout=0.5)
        for record in records:
            try:
                env = codec.decode(record.value)
            except MalformedEvent:
                continue  # not ours to dead-letter: the topic has no consumer group of record
            if env.WhichOneof("payload") != "training_attempt_stop":
                continue
            command = env.training_attempt_stop
            if command.worker_id and command.worker_id != self.worker_id:
                continue
            with self._lock:
                watched = self._watched.get((command.job_id, command.attempt))
            if watched is not None and not watched[0].is_set():
                log.info("training job %s: stop for attempt %d (%s)", command.job_id, command.attempt,
                         command.reason)
                watched[1].append(command.reason)
                watched[0].set()
        return bool(records)

    def _resubscribe(self) -> None:
        if self._subscription is not None:
            try:
                self._subscription.close()
            except Exception:  # noqa: BLE001 - it may already be gone
                pass
        self._subscription = None

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._resubscribe()
