"""How many rows each multi-row statement of a batch carries, so a table needs only a handful of statement
texts (each cached, and on PostgreSQL prepared, once) whatever the batch size.

Shared by the store's ``insert_rows`` and the embedded bus's log inserts.
"""

from __future__ import annotations

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
