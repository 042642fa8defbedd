"""Files read on every call (policy files, model manifests) parsed once, until they change.

A file is parsed again only when its identity or its stat changes (inode, size, modification
and change time in nanoseconds), so an operator's edit takes effect on the next call and a
call costs one ``stat`` instead of a read and a parse. The parsed value is shared: callers
must not modify it.

A stamp is trusted only once the file is ``RACY_S`` old (git's "racily clean" rule): on file
systems with coarse timestamps (a kernel tick, NFS) a same-size edit within one tick keeps the
stamp, so a file changed that recently is parsed on every call until it is older.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")
MAX_ENTRIES = 512
RACY_S = 2.0

_lock = threading.Lock()
_entries: "OrderedDict[tuple[str, str], tuple[tuple[int, int, int, int], object]]" = OrderedDict()


def parsed(path: Path, parse: Callable[[Path], T], kind: str = "") -> T:
    """``parse(path)``, cached while the file stays the same. ``kind`` separates two parsers of one file.

    Raises whatever ``stat`` or ``parse`` raises (a failed parse is not cached).
    """
    st = os.stat(path)
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < RACY_S * 1e9:
        return parse(path)  # too fresh to trust its stamp
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    key = (str(path), kind)
    with _lock:
        hit = _entries.get(key)
        if hit is not None and hit[0] == stamp:
            _entries.move_to_end(key)
            return hit[1]  # type: ignore[return-value]
    value = parse(path)
    with _lock:
        _entries[key] = (stamp, value)
        _entries.move_to_end(key)
        while len(_entries) > MAX_ENTRIES:
            _entries.popitem(last=False)
    return value
