"""random_ids: ids and nonces from a buffer of os.urandom, each byte handed out once, never shared with a fork."""

from __future__ import annotations

import os
import threading
import uuid

import pytest

from services.common import random_ids


def test_ids_are_version_4_uuids_and_never_repeat_across_threads() -> None:
    found: list[list[uuid.UUID]] = [[] for _ in range(8)]

    def draw(mine: list[uuid.UUID]) -> None:
        for _ in range(3000):  # many refills of the 4 KiB buffer
            mine.append(random_ids.uuid4())

    threads = [threading.Thread(target=draw, args=(mine,)) for mine in found]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for mine in found for i in mine]
    assert len(set(ids)) == len(ids) == 24_000
    assert {i.version for i in ids} == {4} and {i.variant for i in ids} == {uuid.RFC_4122}
    assert uuid.UUID(str(ids[0])) == ids[0]


def test_sizes_and_large_draws() -> None:
    assert [len(random_ids.random_bytes(n)) for n in (0, 1, 12, 255, 256, 257, 10_000)] == \
        [0, 1, 12, 255, 256, 257, 10_000]
    nonces = {random_ids.random_bytes(12) for _ in range(5000)}
    assert len(nonces) == 5000
    with pytest.raises(ValueError):  # would step the buffer back and hand the same bytes out again
        random_ids.random_bytes(-12)


def test_a_forked_child_never_hands_out_the_bytes_its_parent_hands_out_next() -> None:
    """Parent and child share the buffer's memory after fork: the child must start afresh, or the same
    nonce would be used twice (on both sides of the fork)."""
    random_ids.random_bytes(12)  # the buffer is filled in the parent
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's side
        try:
            os.write(write, b"".join(random_ids.random_bytes(12) for _ in range(20)))
        finally:
            os._exit(0)
    os.close(write)
    got = b""
    while len(got) < 240:
        chunk = os.read(read, 240)
        if not chunk:
            break
        got += chunk
    os.close(read)
    os.waitpid(child, 0)
    parents = [random_ids.random_bytes(12) for _ in range(20)]
    childs = [got[i:i + 12] for i in range(0, 240, 12)]
    assert len(childs) == 20 and not set(parents) & set(childs)
