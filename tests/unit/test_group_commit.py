"""Group commit: callers that arrive while a batch is written go together in the next one; each gets its own
item's outcome or its batch's exception, and the lead always passes on (nobody waits for a batch that never comes)."""

from __future__ import annotations

import threading
import time
from typing import Callable, Sequence

import pytest

from services.common.group_commit import GroupCommit, GroupCommitFailed

pytestmark = pytest.mark.unit


class Gate:
    """A write that records its batches and blocks the first one until ``release``: after taking its batch
    (``take_first``), or before (as a write that waits for the store's lock before it takes). Like a write
    on SQLite, each write holds the store's one write lock (``store``) while it takes and writes its batch."""

    def __init__(self, fail_on: object = None, take_first: bool = True) -> None:
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.open = threading.Event()
        self.fail_on = fail_on
        self.take_first = take_first
        self.writes = 0
        self.store = threading.Lock()

    def __call__(self, take: Callable[[], list[int]]) -> list[str]:
        self.writes += 1
        first = self.writes == 1
        with self.store:
            items = take() if self.take_first or not first else []
            if first:
                self.entered.set()
                assert self.open.wait(30), "the test never released the first batch"
                items = items or take()
            self.batches.append(list(items))
        if self.fail_on in items:
            raise RuntimeError(f"batch with {self.fail_on} failed")
        return [f"done-{i}" for i in items]


def _until(condition: object, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.001)


def _submit_all(group: GroupCommit, items: Sequence[int]) -> tuple[dict[int, object], list[threading.Thread]]:
    results: dict[int, object] = {}

    def one(i: int) -> None:
        try:
            results[i] = group.submit(i)
        except BaseException as error:  # noqa: BLE001 - recorded for the assertions
            results[i] = error

    threads = [threading.Thread(target=one, args=(i,)) for i in items]
    for thread in threads:
        thread.start()
    return results, threads


def _behind_a_held_write(group: GroupCommit, gate: Gate, followers: range) -> dict[int, object]:
    """Item 0 leads and its write is held at ``gate``; ``followers`` queue meanwhile; then the gate opens.
    Every caller's outcome (or error) once all have returned."""
    first, lead = _submit_all(group, [0])
    assert gate.entered.wait(30)
    rest, threads = _submit_all(group, followers)
    queued = len(followers) + (0 if gate.take_first else 1)  # the leader's own item waits too if it takes late
    _until(lambda: group.waiting() == queued, f"{queued} items queue")
    gate.open.set()
    for thread in lead + threads:
        thread.join(30)
    assert not any(t.is_alive() for t in lead + threads), "a caller still waits"
    return {**first, **rest}


@pytest.mark.parametrize("early", [False, True], ids=["lead-when-done", "lead-early"])
def test_callers_arriving_during_a_write_go_together_in_the_next_batch(early: bool) -> None:
    gate = Gate()
    group: GroupCommit[int, str] = GroupCommit(gate, max_batch=32, lead_early=early)
    results = _behind_a_held_write(group, gate, range(1, 8))
    assert gate.batches[0] == [0]
    assert sorted(gate.batches[1]) == list(range(1, 8)) and len(gate.batches) == 2
    assert results == {i: f"done-{i}" for i in range(8)}  # each caller its own outcome
    assert (group.batches, group.items, group.largest) == (2, 8, 7)


@pytest.mark.parametrize("early", [False, True], ids=["lead-when-done", "lead-early"])
def test_callers_arriving_while_the_leader_waits_to_take_go_in_its_batch(early: bool) -> None:
    gate = Gate(take_first=False)  # as a write that waits for the store's write lock before it takes
    group: GroupCommit[int, str] = GroupCommit(gate, max_batch=32, lead_early=early)
    results = _behind_a_held_write(group, gate, range(1, 6))
    assert gate.batches[0][0] == 0 and sorted(gate.batches[0]) == list(range(6)) and len(gate.batches) == 1
    assert results == {i: f"done-{i}" for i in range(6)}
    assert (group.batches, group.items, group.largest) == (1, 6, 6)


@pytest.mark.parametrize("early", [False, True], ids=["lead-when-done", "lead-early"])
def test_a_batch_is_never_longer_than_max_batch(early: bool) -> None:
    gate = Gate()
    group: GroupCommit[int, str] = GroupCommit(gate, max_batch=3, lead_early=early)
    results = _behind_a_held_write(group, gate, range(1, 9))
    assert [len(b) for b in gate.batches] == [1, 3, 3, 2]
    assert results == {i: f"done-{i}" for i in range(9)}


@pytest.mark.parametrize("early", [False, True], ids=["lead-when-done", "lead-early"])
def test_a_failed_write_reaches_every_caller_of_its_batch_and_the_next_batch_still_runs(early: bool) -> None:
    gate = Gate(fail_on=3)
    group: GroupCommit[int, str] = GroupCommit(gate, max_batch=4, lead_early=early)
    results = _behind_a_held_write(group, gate, range(1, 8))
    failed = next(b for b in gate.batches if 3 in b)
    for i in range(1, 8):
        if i == failed[0]:  # the leader of the failed batch: the exception itself
            assert isinstance(results[i], RuntimeError) and "batch with 3 failed" in str(results[i])
        elif i in failed:  # its followers: their own exception, caused by it (not one object in many threads)
            assert isinstance(results[i], GroupCommitFailed) and "batch with 3 failed" in str(results[i].__cause__)
        else:
            assert results[i] == f"done-{i}"
    assert group.submit(99) == "done-99"  # the lead was handed on and given back: a new caller writes at once


@pytest.mark.parametrize("early", [False, True], ids=["lead-when-done", "lead-early"])
def test_a_write_that_returns_too_few_outcomes_fails_its_callers_instead_of_mixing_them_up(early: bool) -> None:
    gate = Gate()
    group: GroupCommit[int, str] = GroupCommit(lambda take: gate(take)[:1], max_batch=8, lead_early=early)
    results = _behind_a_held_write(group, gate, range(1, 4))
    leader = gate.batches[1][0]
    for i in range(1, 4):
        error = results[i] if i == leader else results[i].__cause__  # type: ignore[union-attr]
        assert isinstance(error, RuntimeError) and "1 outcomes for 3 items" in str(error), results


@pytest.mark.parametrize("early", [False, True], ids=["lead-when-done", "lead-early"])
def test_many_threads_each_get_their_own_outcome(early: bool) -> None:
    store = threading.Lock()  # one write at a time takes and writes, as on SQLite

    def write(take: Callable[[], list[tuple[int, int]]]) -> list[tuple[int, int]]:
        time.sleep(0.0003)  # callers pile up while a write waits to take, and while it writes
        with store:
            items = take()
            time.sleep(0.0003)
        return [(t, n * 2) for t, n in items]

    group: GroupCommit[tuple[int, int], tuple[int, int]] = GroupCommit(write, max_batch=5, lead_early=early)
    wrong: list[tuple[int, int, object]] = []

    def worker(t: int) -> None:
        for n in range(200):
            got = group.submit((t, n))
            if got != (t, n * 2):
                wrong.append((t, n, got))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not wrong
    assert group.items == 12 * 200 and group.waiting() == 0
    assert group.largest <= 5


@pytest.mark.parametrize("early", [False, True], ids=["lead-when-done", "lead-early"])
def test_a_write_that_fails_before_taking_fails_its_leader_only_and_the_others_are_tried(early: bool) -> None:
    entered, release = threading.Event(), threading.Event()
    batches: list[list[int]] = []

    def write(take: Callable[[], list[int]]) -> list[str]:
        if not batches:
            batches.append([])
            entered.set()
            assert release.wait(30)
            raise ConnectionError("the store is down")  # before it took anything
        items = take()
        batches.append(items)
        return [f"done-{i}" for i in items]

    group: GroupCommit[int, str] = GroupCommit(write, lead_early=early)
    first, lead = _submit_all(group, [0])
    assert entered.wait(30)
    rest, threads = _submit_all(group, range(1, 4))
    _until(lambda: group.waiting() == 4, "three callers queue beside the leader's item")
    release.set()
    for thread in lead + threads:
        thread.join(30)
    assert isinstance(first[0], ConnectionError)
    assert rest == {i: f"done-{i}" for i in range(1, 4)}  # never tried in the failed write: written in the next
    assert sorted(batches[1]) == [1, 2, 3] and group.waiting() == 0


@pytest.mark.parametrize("early", [False, True], ids=["lead-when-done", "lead-early"])
def test_a_write_that_never_takes_its_batch_fails_instead_of_leaving_callers_waiting(early: bool) -> None:
    group: GroupCommit[int, str] = GroupCommit(lambda take: [], max_batch=4, lead_early=early)
    with pytest.raises(RuntimeError, match="never took"):
        group.submit(1)


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        GroupCommit(lambda take: take(), max_batch=0)


class _Interrupted(BaseException):
    """Stands for a KeyboardInterrupt (a signal) arriving in a waiting caller."""


def _interrupting_slots(monkeypatch: pytest.MonkeyPatch, victim: int, after_wake: bool) -> None:
    """Slots whose ``victim`` item's wait is interrupted: at once, or once it is woken (outcome or lead)."""
    from services.common import group_commit

    class Turn(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            if after_wake:
                super().wait(timeout)
            raise _Interrupted()

    class Slot(group_commit._Slot):  # type: ignore[type-arg]
        def __init__(self, item: int) -> None:
            super().__init__(item)
            if item == victim:
                self.turn = Turn()

    monkeypatch.setattr(group_commit, "_Slot", Slot)


@pytest.mark.parametrize("case", ["queued", "handed the lead", "taken"])
def test_an_interrupted_caller_leaves_the_line_and_the_others_go_on(monkeypatch: pytest.MonkeyPatch,
                                                                     case: str) -> None:
    """A caller interrupted while it waits (queued, just handed the lead, or already taken by a write) never
    leaves the others waiting: its item is written only if a write had taken it, and the lead passes on."""
    early = case != "taken"  # "taken": the first write takes late, so the victim goes in the leader's batch
    gate = Gate(take_first=early)
    group: GroupCommit[int, str] = GroupCommit(gate, max_batch=1 if early else 32)
    own = 0 if early else 1  # the leader's own item, still queued while its write waits to take
    _interrupting_slots(monkeypatch, victim=1, after_wake=case != "queued")
    _, lead = _submit_all(group, [0])
    assert gate.entered.wait(30)
    victim, victims = _submit_all(group, [1])
    if case == "queued":
        victims[0].join(30)  # interrupted at once: it left the line before anything was written
        assert group.waiting() == 0
    else:
        _until(lambda: group.waiting() == 1 + own, "the victim queues")
    others, threads = _submit_all(group, [2])
    _until(lambda: group.waiting() == (1 if case == "queued" else 2) + own, "another caller queues")
    gate.open.set()
    for thread in lead + victims + threads:
        thread.join(30)
    assert not any(t.is_alive() for t in lead + victims + threads), "a caller still waits"
    assert isinstance(victim[1], _Interrupted)
    assert others == {2: "done-2"} and group.waiting() == 0 and not group.leading
    written = [i for batch in gate.batches for i in batch]
    assert (1 in written) == (case == "taken")
    assert group.submit(3) == "done-3"  # nobody is left holding the lead


@pytest.mark.parametrize("early", [False, True], ids=["lead-when-done", "lead-early"])
def test_with_lead_early_the_next_leader_starts_while_the_batch_in_front_is_written(early: bool) -> None:
    """``lead_early``: a caller that comes while a batch is written leads the next one at once, so its write waits
    for the store's lock beside the batch in front (and takes everyone who queued meanwhile when it gets it);
    otherwise it waits for that batch to be done before its write starts."""
    gate = Gate()
    group: GroupCommit[int, str] = GroupCommit(gate, max_batch=32, lead_early=early)
    first, lead = _submit_all(group, [0])
    assert gate.entered.wait(30)
    second, seconds = _submit_all(group, [1])
    _until(lambda: group.waiting() == 1, "the second caller queues")
    if early:
        _until(lambda: gate.writes == 2, "the second caller's write starts")
        assert group.leading  # it has not taken its batch: the store's lock is held by the first
    rest, threads = _submit_all(group, range(2, 6))
    _until(lambda: group.waiting() == 5, "more callers queue")
    assert gate.writes == (2 if early else 1)
    gate.open.set()
    for thread in lead + seconds + threads:
        thread.join(30)
    assert not any(t.is_alive() for t in lead + seconds + threads), "a caller still waits"
    assert gate.batches[0] == [0] and gate.batches[1][0] == 1 and sorted(gate.batches[1]) == [1, 2, 3, 4, 5]
    assert len(gate.batches) == 2 and {**first, **second, **rest} == {i: f"done-{i}" for i in range(6)}
    assert group.waiting() == 0 and not group.leading and group.submit(6) == "done-6"


def test_with_lead_early_an_interrupted_caller_behind_the_next_leader_leaves_the_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``lead_early``: a caller queued behind a leader that waits for the store's lock, interrupted, is not written
    and leaves nobody waiting; the leader's batch takes the others."""
    gate = Gate()
    group: GroupCommit[int, str] = GroupCommit(gate, max_batch=32, lead_early=True)
    _interrupting_slots(monkeypatch, victim=2, after_wake=False)
    _, lead = _submit_all(group, [0])
    assert gate.entered.wait(30)
    second, seconds = _submit_all(group, [1])
    _until(lambda: gate.writes == 2, "the next leader's write waits for the store's lock")
    victim, victims = _submit_all(group, [2])
    victims[0].join(30)
    others, threads = _submit_all(group, [3])
    _until(lambda: group.waiting() == 2, "the leader and another caller queue")
    gate.open.set()
    for thread in lead + seconds + threads:
        thread.join(30)
    assert not any(t.is_alive() for t in lead + seconds + threads), "a caller still waits"
    assert isinstance(victim[2], _Interrupted) and second == {1: "done-1"} and others == {3: "done-3"}
    assert gate.batches == [[0], [1, 3]] and group.waiting() == 0 and not group.leading
