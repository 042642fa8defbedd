"""Nothing runs unsupervised (invariant 6): long-running loops that survive any exception.

``run_loop`` repeats one step of a loop (publish a batch, apply a batch, tick) until
stopped; any exception is logged, counted on the loop's :class:`LoopStatus`, answered
with a capped exponential backoff and an optional recovery hook (e.g. rejoin the
consumer group), and the loop goes on. A :class:`Supervisor` runs each loop in its own
thread, restarts a loop whose thread ended while the process was not stopping, and
reports the process's health: unhealthy while any loop has been failing for longer
than ``unhealthy_after_s`` (the gRPC health status then says NOT_SERVING), healthy again
as soon as every loop succeeds.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from services.common.errors import BusUnavailable, Busy, CommitFailed

log = logging.getLogger(__name__)

TRANSIENT = (BusUnavailable, CommitFailed, Busy)  # expected (outages, claims): a warning, not a stack trace


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` says a dependency is away (retry and it will pass) rather than the work is bad."""
    from sqlalchemy import exc as sa

    from services.common.errors import ConcurrencyConflict

    if isinstance(exc, (*TRANSIENT, ConcurrencyConflict, sa.OperationalError, sa.InterfaceError,
                        sa.DisconnectionError, sa.TimeoutError, ConnectionError, TimeoutError)):
        return True
    return isinstance(exc, sa.DBAPIError) and bool(exc.connection_invalidated)


@dataclass
class LoopStatus:
    """What one loop last did. Updated by the loop's thread, read by the supervisor."""

    name: str
    state: str = "starting"                 # starting | running | failing | restarting | stopped
    failing_since: float = 0.0              # time.monotonic() of the first failure of the current streak
    consecutive_failures: int = 0
    total_failures: int = 0
    restarts: int = 0
    last_error: str = ""
    last_ok: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def ok(self) -> None:
        with self._lock:
            if self.state == "failing":
                log.info("loop %s recovered after %d failures", self.name, self.consecutive_failures)
            self.state, self.consecutive_failures, self.failing_since = "running", 0, 0.0
            self.last_ok = time.monotonic()

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if self.consecutive_failures == 0:
                self.failing_since = time.monotonic()
            self.state = "failing"
            self.consecutive_failures += 1
            self.total_failures += 1
            self.last_error = f"{type(exc).__name__}: {str(exc)[:300]}"

    def failing_for(self, now: float | None = None) -> float:
        """Seconds this loop has been failing without a success in between (0 when it is not)."""
        with self._lock:
            if self.state != "failing":
                return 0.0
            return (now if now is not None else time.monotonic()) - self.failing_since


_current: contextvars.ContextVar[LoopStatus | None] = contextvars.ContextVar("privtune_loop_status", default=None)


def current_status(name: str = "loop") -> LoopStatus:
    """The status the supervisor gave this thread's loop (a private one when run unsupervised)."""
    status = _current.get()
    if status is None:
        status = LoopStatus(name)
        _current.set(status)
    return status


def run_loop(name: str, step: Callable[[], bool | None], stop: threading.Event, *, idle_seconds: float = 0.05,
             on_error: Callable[[], None] | None = None, max_backoff: float = 10.0,
             status: LoopStatus | None = None) -> None:
    """Call ``step()`` until ``stop`` is set; it returns whether it did work (else wait ``idle_seconds``),
    or None when it did nothing that proves the loop healthy again (its status stays as it was).

    Any exception is logged and retried after a backoff (0.5 s doubling to ``max_backoff``);
    ``on_error`` runs first (its own failures are logged too). The loop never dies of an
    exception; it ends only when ``stop`` is set.
    """
    status = status or current_status(name)
    backoff = 0.5
    while not stop.is_set():
        try:
            did_work = step()
        except Busy as exc:  # another worker holds the claim: a wait, not a failure (health is unaffected)
            log.info("%s: %s; retrying in %.1fs", name, exc, backoff)
            if on_error is not None:
                try:
                    on_error()
                except Exception:  # noqa: BLE001 - retried with the next attempt
                    log.warning("%s: recovery after a wait failed", name, exc_info=True)
            stop.wait(backoff)
            backoff = min(backoff * 2, max_backoff)
            continue
        except Exception as exc:  # noqa: BLE001 - the point of a supervised loop
            status.failed(exc)
            if isinstance(exc, TRANSIENT):
                log.warning("%s: %s; retrying in %.1fs", name, exc, backoff)
            else:
                log.exception("%s failed (%d in a row); retrying in %.1fs", name, status.consecutive_failures,
                              backoff)
            if on_error is not None:
                try:
                    on_error()
                except Exception:  # noqa: BLE001 - recovery is retried with the next failure
                    log.warning("%s: recovery after a failure failed too", name, exc_info=True)
            stop.wait(backoff)
            backoff = min(backoff * 2, max_backoff)
            continue
        if did_work is not None:
            status.ok()
            backoff = 0.5
        if not did_work:
            stop.wait(idle_seconds)


class Supervisor:
    """Runs loops in threads, restarts dead ones, and tells ``on_health`` when health changes."""

    def __init__(self, stop: threading.Event, *, unhealthy_after_s: float = 5.0, check_every_s: float = 0.5,
                 on_health: Callable[[bool, list[LoopStatus]], None] | None = None) -> None:
        self.stop = stop
        self.unhealthy_after_s = unhealthy_after_s
        self.check_every_s = check_every_s
        self.on_health = on_health
        self.loops: dict[str, tuple[Callable[[threading.Event], None], LoopStatus]] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.healthy = True
        self._watch: threading.Thread | None = None

    def spawn(self, name: str, target: Callable[[threading.Event], None]) -> LoopStatus:
        status = LoopStatus(name)
        self.loops[name] = (target, status)
        self._start(name)
        return status

    def _start(self, name: str) -> None:
        target, status = self.loops[name]

        def body() -> None:
            _current.set(status)
            try:
                target(self.stop)
            except Exception as exc:  # noqa: BLE001 - the watcher restarts it
                status.failed(exc)
                log.exception("loop %s died; the supervisor restarts it", name)
            finally:
                if self.stop.is_set():
                    status.state = "stopped"

        thread = threading.Thread(target=body, name=name, daemon=True)
        self.threads[name] = thread
        thread.start()

    def start_watching(self) -> None:
        self._watch = threading.Thread(target=self._watch_loops, name="supervisor", daemon=True)
        self._watch.start()

    def _watch_loops(self) -> None:
        backoff: dict[str, float] = {}
        next_start: dict[str, float] = {}
        while not self.stop.wait(self.check_every_s):
            now = time.monotonic()
            for name, thread in list(self.threads.items()):
                if thread.is_alive() or self.stop.is_set():
                    continue
                _, status = self.loops[name]
                if name not in next_start:  # just found dead: restart after a capped backoff
                    delay = backoff.get(name, 0.5)
                    next_start[name] = now + delay
                    backoff[name] = min(delay * 2, 30.0)
                    status.state = "restarting"
                    status.failing_since = status.failing_since or now
                    log.error("loop %s stopped unexpectedly; restarting it in %.1fs", name, delay)
                elif now >= next_start[name]:
                    del next_start[name]
                    status.restarts += 1
                    self._start(name)
            self.check_health(now)

    def check_health(self, now: float | None = None) -> bool:
        """Recompute health; calls ``on_health`` when it changed. Returns it."""
        now = now if now is not None else time.monotonic()
        statuses = [status for _, status in self.loops.values()]
        failing = [s for s in statuses if s.failing_for(now) > self.unhealthy_after_s
                   or (s.state == "restarting")]
        healthy = not failing
        if healthy != self.healthy:
            self.healthy = healthy
            if healthy:
                log.info("every loop runs again: healthy")
            else:
                log.error("unhealthy: %s", "; ".join(f"{s.name} failing for {s.failing_for(now):.0f}s "
                                                     f"({s.last_error})" for s in failing))
            if self.on_health is not None:
                self.on_health(healthy, failing)
        return healthy

    def statuses(self) -> list[LoopStatus]:
        return [status for _, status in self.loops.values()]

    def join(self, timeout: float = 10.0) -> None:
        for thread in self.threads.values():
            thread.join(timeout=timeout)
        if self._watch is not None:
            self._watch.join(timeout=timeout)
