"""How many rows each multi-row statement of a batch carries, and how long each ``IN`` list is, so a table
needs only a handful of statement texts (each cached, and on PostgreSQL prepared, once) whatever the batch size.

Shared by the store's ``insert_rows``, the embedded bus's log inserts and the ``IN`` lists of the outbox
relay's deletes and of the batched training-job create's position read.
"""

from __future__ import annotations

from typing import Any

SQLITE_MAX_VARIABLES = 999  # the floor of SQLite builds' variable limit (3.32+ allow 32,766)
LONGEST = 64                # rows per statement at most


def chunk_sizes(count: int, width: int) -> list[int]:
    """Chunk sizes for ``count`` rows of ``width`` columns: the largest power of two within the variable
    limit (at most 64) while that many are left, then the binary digits of the rest (100 -> 64, 32, 4)."""
    biggest = 1
    while biggest * 2 <= min(LONGEST, SQLITE_MAX_VARIABLES // width):
        biggest *= 2
    sizes = [biggest] * (count // biggest)
    rest, size = count % biggest, biggest // 2
    while rest:
        if size <= rest:
            sizes.append(size)
            rest -= size
        size //= 2
    return sizes


def in_lists(values: list[Any], longest: int = 512) -> list[dict[str, Any]]:
    """``values`` as the parameters (s0, s1, ...) of ``IN`` lists: chunks of at most ``longest``, each padded
    to a power of two by repeating its last value (``IN (a, b, c, c)`` matches what ``IN (a, b, c)`` does),
    so a table sees a handful of statements, each prepared once by the driver, not one per batch size."""
    chunks = []
    for start in range(0, len(values), longest):
        chunk = values[start:start + longest]
        size = 1
        while size < len(chunk):
            size *= 2
        padded = chunk + [chunk[-1]] * (size - len(chunk))
        chunks.append({f"s{i}": v for i, v in enumerate(padded)})
    return chunks
