"""Group commit: commands that arrive while one transaction is being written go together in the next.

A store takes one writing transaction at a time (SQLite's write lock; on PostgreSQL a commit's WAL
flush), and under load the transaction's fixed costs dominate: its BEGIN and COMMIT, the lock's
hand-off, each statement's trip through the driver (on SQLite a GIL hand-back while the lock is
held). Measured under the API benchmark on SQLite, a create held the write lock 1.0 ms alone and
8.3 ms at saturation, so creates queued for the lock (p50 handler time 0.8 s).

``GroupCommit.submit`` is leader/follower batching without a thread of its own: a caller that finds
no batch being written writes one at once (the leader); callers that arrive meanwhile queue, and
when the leader is done the first of them leads the next batch. The write function takes its batch
(``take()``: everything queued at that moment, up to ``max_batch``) when it is ready to write it:
after it has the store's write lock, so the callers that arrived while it waited for the lock go in
its batch instead of waiting for it and then for the lock again. Alone, a command costs what it
did; under load, N commands share one transaction's fixed costs. Each caller gets its own item's
outcome, or the exception the write raised.

With ``lead_early`` the next batch does not wait for the one in front of it to be written: its leader
starts as soon as that batch is taken, so on SQLite it waits for the write lock while the batch in
front holds it and gets it the moment that one commits (before the background loops, unless one of
them has waited longer than ``store.engine._WriterLock.YIELD_S``), and callers that arrive meanwhile
still join it. It is meant for a write whose store lets only one writer in at a time (the write
takes its batch once it has the lock); elsewhere batches would be written side by side. With the writer lock's hand-off (and one statement less per
batch), a create's handler time at p50 under the API benchmark on SQLite went from 69.5 to 48.1 ms; the
early leader alone did not help (docs/benchmarks.md, eighth pass).

The write function decides what an item's failure means; this module only batches and hands out.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Generic, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(eq=False)
class _Slot(Generic[T]):
    item: T
    turn: threading.Event = field(default_factory=threading.Event)  # set: outcome ready, or this caller leads
    lead: bool = False  # handed the lead (under the lock): it writes the next batch
    done: bool = False
    outcome: object = None
    error: BaseException | None = None


class GroupCommit(Generic[T, R]):
    """Batches ``submit`` calls of concurrent threads for ``write``.

    ``write(take)`` calls ``take()`` once, when it is ready to write, for the batch's items (the leader's
    own first); it returns one outcome per item, in order. If it raises, the leader gets the exception
    and the other callers of the batch a ``GroupCommitFailed`` caused by it (if it raises before taking,
    only the leader's own item is taken). Counters (``batches``, ``items``, ``largest``) say how much
    batching happened. ``lead_early``: the lead passes on when a write takes its batch, not when it is
    done (see the module doc).
    """

    def __init__(self, write: Callable[[Callable[[], list[T]]], Sequence[R]], max_batch: int = 32,
                 lead_early: bool = False) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self._write = write
        self.max_batch = max_batch
        self.lead_early = lead_early
        self._lock = threading.Lock()
        self._queue: list[_Slot[T]] = []
        # a leader will write the next batch: one that has not taken it yet, or (unless lead_early) one whose
        # batch is being written and who will hand over when done
        self._leading = False
        self.batches = 0
        self.items = 0
        self.largest = 0

    def submit(self, item: T) -> R:
        """Write ``item`` in the next batch; its outcome (or the batch's exception)."""
        slot: _Slot[T] = _Slot(item)
        with self._lock:
            self._queue.append(slot)
            slot.lead = not self._leading
            self._leading = True
        try:
            if not slot.lead:
                slot.turn.wait()
            if not slot.done:
                self._lead(slot)
        except BaseException:  # interrupted (a signal in the main thread): leave the line, pass the lead on
            self._leave(slot)
            raise
        if slot.error is not None:
            raise slot.error
        return slot.outcome  # type: ignore[return-value]

    @property
    def leading(self) -> bool:
        """Whether a leader is about to take a batch (or, unless ``lead_early``, one is being written)."""
        with self._lock:
            return self._leading

    def waiting(self) -> int:
        """How many items are queued and not yet taken by a write."""
        with self._lock:
            return len(self._queue)

    def _leave(self, slot: _Slot[T]) -> None:
        """Take ``slot`` out of the line if no write took it; if it had been handed the lead, pass it on. Then
        make sure whoever leads now knows it (an interrupt may have come between a hand-over and its wake-up)."""
        with self._lock:
            if slot in self._queue:
                self._queue.remove(slot)
                if slot.lead:
                    self._pass_lead()
            head = self._queue[0] if self._queue and self._queue[0].lead else None
        if head is not None:
            head.turn.set()

    def _pass_lead(self) -> _Slot[T] | None:
        """Under the lock: the next in line, now the leader (None: nobody waits, nobody leads)."""
        following = self._queue[0] if self._queue else None
        if following is not None:
            following.lead = True
        self._leading = following is not None
        return following

    def _lead(self, own: _Slot[T]) -> None:
        """Write a batch (``own`` first in it), then hand the lead to the next in line."""
        batch: list[_Slot[T]] = []

        def take(limit: int | None = None) -> list[T]:
            following = None
            with self._lock:
                if batch:
                    raise RuntimeError("group commit: a write took its batch twice")
                size = self.max_batch if limit is None else limit
                batch.extend(self._queue[:size])
                del self._queue[:size]
                self.batches += 1
                self.items += len(batch)
                self.largest = max(self.largest, len(batch))
                if self.lead_early:
                    following = self._pass_lead()
            if following is not None:
                following.turn.set()  # it leads the next batch now, while this one is written
            return [slot.item for slot in batch]

        try:
            outcomes = self._write(take)
            if not batch:
                raise RuntimeError("group commit: the write never took its batch")
            if len(outcomes) != len(batch):
                raise RuntimeError(f"group commit: the write returned {len(outcomes)} outcomes for {len(batch)} "
                                   "items")
            for slot, outcome in zip(batch, outcomes):
                slot.outcome = outcome
        except BaseException as error:  # noqa: BLE001 - the batch's callers hear of it, then it is raised
            if not batch:
                take(1)  # only the leader's own item: the others were never tried, they form the next batch
            for slot in batch:
                slot.error = error if slot is own else GroupCommitFailed(
                    f"the write of this call's batch failed ({type(error).__name__})")
                if slot is not own:
                    slot.error.__cause__ = error
        finally:
            for slot in batch:
                slot.done = True
            following = None
            if not self.lead_early:  # (lead_early: passed on when the batch was taken)
                with self._lock:
                    following = self._pass_lead()
            for slot in batch:
                slot.turn.set()
            if following is not None:
                following.turn.set()  # not done: it leads the next batch


class GroupCommitFailed(RuntimeError):
    """The write of the batch a call was in raised (the cause); the call's item may not have been written."""
