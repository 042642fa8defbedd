"""Embedded bus: a durable append-only log in one SQLite file.

Kafka's model on one machine: topics split into partitions (a key always lands on the
same partition, so one key stays in order), consumer groups with committed offsets,
and partition ownership by lease so several threads and processes can share a group.
WAL mode plus ``synchronous=FULL`` makes an acknowledged publish survive a crash.

URI: ``sqlite:///relative/events.db`` or ``sqlite:////absolute/events.db``, with
optional query parameters ``partitions`` (default 4) and ``session_timeout_ms``
(default 30000: how long a silent member keeps its partitions).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
import zlib
from pathlib import Path
from typing import Sequence
from urllib.parse import parse_qs, urlsplit

from services.common.bus.protocol import EventBus, Message, Record, next_offsets
from services.common.bus.registry import register_backend
from services.common.chunk_sizes import chunk_sizes
from services.common.errors import BusUnavailable, CommitFailed, FailedPrecondition

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (name TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS heads (topic TEXT, part INTEGER, next_off INTEGER NOT NULL, PRIMARY KEY (topic, part));
CREATE TABLE IF NOT EXISTS log (
    topic TEXT, part INTEGER, off INTEGER, key BLOB, value BLOB, headers TEXT, ts_ms INTEGER,
    PRIMARY KEY (topic, part, off)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_offsets (
    grp TEXT, topic TEXT, part INTEGER, next_off INTEGER NOT NULL, PRIMARY KEY (grp, topic, part));
CREATE TABLE IF NOT EXISTS members (grp TEXT, member TEXT, heartbeat_ms INTEGER, PRIMARY KEY (grp, member));
CREATE TABLE IF NOT EXISTS owners (
    grp TEXT, topic TEXT, part INTEGER, member TEXT, lease_until_ms INTEGER, PRIMARY KEY (grp, topic, part));
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


def partition_for(key: bytes, partitions: int) -> int:
    """Stable key -> partition mapping (same key, same partition, every process)."""
    return zlib.crc32(key) % partitions


_LOG_COLUMNS = 7


def _log_insert(rows: int) -> str:
    """A multi-row insert of ``rows`` log records (sqlite3 caches each statement by its text)."""
    return ("INSERT INTO log (topic, part, off, key, value, headers, ts_ms) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * rows))


def _path_from_uri(uri: str) -> Path:
    if not uri.startswith("sqlite:///"):
        raise ValueError(f"embedded bus URI must look like sqlite:///path/events.db, got {uri!r}")
    raw = urlsplit(uri).path[1:]
    if not raw:
        raise ValueError(f"embedded bus URI {uri!r} names no file")
    return Path(raw)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=60000")
    return conn


class _Tx:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on error): one writer at a time."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


class SQLiteBus:
    """The embedded :class:`EventBus`."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.path = _path_from_uri(uri)
        params = parse_qs(urlsplit(uri).query)
        self.default_partitions = int(params.get("partitions", ["4"])[0])
        self.session_timeout_ms = int(params.get("session_timeout_ms", ["30000"])[0])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._partitions: dict[str, int] = {}
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = _connect(self.path)
        return conn

    def partitions(self, topic: str) -> int:
        """Partition count of ``topic``, creating it with the default count if new."""
        if topic not in self._partitions:
            self.ensure_topics([topic])
        return self._partitions[topic]

    def ensure_topics(self, topics: Sequence[str]) -> None:
        conn = self._conn()
        missing = [t for t in topics if t not in self._partitions]
        if not missing:
            return
        with _Tx(conn):
            for topic in missing:
                conn.execute(
                    "INSERT OR IGNORE INTO topics (name, partitions) VALUES (?, ?)", (topic, self.default_partitions)
                )
                (n,) = conn.execute("SELECT partitions FROM topics WHERE name = ?", (topic,)).fetchone()
                for part in range(n):
                    conn.execute("INSERT OR IGNORE INTO heads (topic, part, next_off) VALUES (?, ?, 0)", (topic, part))
                self._partitions[topic] = n

    def publish(self, messages: Sequence[Message], timeout: float = 30.0) -> None:
        if not messages:
            return
        self.ensure_topics(sorted({m.topic for m in messages}))
        conn = self._conn()
        ts = _now_ms()
        # One transaction: a publish that raises wrote nothing, so its retry cannot write a
        # second copy and Message.id is not needed here.
        by_partition: dict[tuple[str, int], list[Message]] = {}  # in the order given, per partition
        for msg in messages:
            by_partition.setdefault((msg.topic, partition_for(msg.key, self._partitions[msg.topic])), []).append(msg)
        try:
            with _Tx(conn):
                # one head update per partition and multi-row inserts: sqlite3 gives the GIL back at every
                # statement, and the bus's write lock is held meanwhile (it was two statements per message)
                rows: list[object] = []
                for (topic, part), msgs in by_partition.items():
                    (end,) = conn.execute(
                        "UPDATE heads SET next_off = next_off + ? WHERE topic = ? AND part = ? RETURNING next_off",
                        (len(msgs), topic, part),
                    ).fetchone()
                    for off, msg in enumerate(msgs, start=end - len(msgs)):
                        rows += (topic, part, off, msg.key, msg.value, _encode_headers(msg.headers), ts)
                start = 0
                for size in chunk_sizes(len(rows) // _LOG_COLUMNS, _LOG_COLUMNS):
                    conn.execute(_log_insert(size), rows[start * _LOG_COLUMNS:(start + size) * _LOG_COLUMNS])
                    start += size
        except sqlite3.OperationalError as exc:
            raise BusUnavailable(f"embedded bus {self.path} refused the write: {exc}") from exc

    def subscribe(self, group: str, topics: Sequence[str], *, from_beginning: bool = True) -> "SQLiteSubscription":
        self.ensure_topics(topics)
        return SQLiteSubscription(self, group, list(topics), from_beginning)

    def end_offsets(self, topic: str) -> dict[int, int]:
        self.ensure_topics([topic])
        rows = self._conn().execute("SELECT part, next_off FROM heads WHERE topic = ?", (topic,)).fetchall()
        return {part: off for part, off in rows}

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class SQLiteSubscription:
    """A consumer-group member. Use from one thread."""

    def __init__(self, bus: SQLiteBus, group: str, topics: list[str], from_beginning: bool) -> None:
        self.bus = bus
        self.group = group
        self.topics = topics
        self.from_beginning = from_beginning
        self.member = uuid.uuid4().hex
        self._conn = _connect(bus.path)
        self._positions: dict[tuple[str, int], int] = {}
        self._last_rebalance = 0.0
        self._closed = False

    # -- group membership -------------------------------------------------
    def _rebalance(self) -> None:
        now = _now_ms()
        timeout = self.bus.session_timeout_ms
        conn = self._conn
        all_parts = [(t, p) for t in sorted(self.topics) for p in range(self.bus.partitions(t))]
        with _Tx(conn):
            conn.execute(
                "INSERT INTO members (grp, member, heartbeat_ms) VALUES (?, ?, ?) "
                "ON CONFLICT (grp, member) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms",
                (self.group, self.member, now),
            )
            conn.execute("DELETE FROM members WHERE grp = ? AND heartbeat_ms < ?", (self.group, now - timeout))
            live = [m for (m,) in conn.execute("SELECT member FROM members WHERE grp = ? ORDER BY member", (self.group,))]
            wanted = {tp for i, tp in enumerate(all_parts) if live[i % len(live)] == self.member}
            owners = {
                (t, p): (m, until)
                for t, p, m, until in conn.execute(
                    "SELECT topic, part, member, lease_until_ms FROM owners WHERE grp = ?", (self.group,)
                )
            }
            for tp in list(self._positions):
                if tp not in wanted:  # hand it over; uncommitted records are redelivered to the next owner
                    conn.execute(
                        "DELETE FROM owners WHERE grp = ? AND topic = ? AND part = ? AND member = ?",
                        (self.group, *tp, self.member),
                    )
                    del self._positions[tp]
            for tp in sorted(wanted):
                owner = owners.get(tp)
                mine = owner is not None and owner[0] == self.member
                if not mine and owner and owner[1] >= now and owner[0] in live:
                    self._positions.pop(tp, None)  # still held by a live member: wait until it lets go
                    continue
                conn.execute(
                    "INSERT INTO owners (grp, topic, part, member, lease_until_ms) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (grp, topic, part) DO UPDATE SET member = excluded.member, "
                    "lease_until_ms = excluded.lease_until_ms",
                    (self.group, *tp, self.member, now + timeout),
                )
                if not mine or tp not in self._positions:  # (re)acquired: resume from the group's commit
                    self._positions[tp] = self._start_offset(tp)
        self._last_rebalance = time.monotonic()

    def _start_offset(self, tp: tuple[str, int]) -> int:
        row = self._conn.execute(
            "SELECT next_off FROM group_offsets WHERE grp = ? AND topic = ? AND part = ?", (self.group, *tp)
        ).fetchone()
        if row:
            return int(row[0])
        if self.from_beginning:
            return 0
        (head,) = self._conn.execute("SELECT next_off FROM heads WHERE topic = ? AND part = ?", tp).fetchone()
        return int(head)

    # -- Subscription -------------------------------------------------------
    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        if self._closed:
            raise FailedPrecondition("poll() on a closed subscription: subscribe again")
        deadline = time.monotonic() + timeout
        heartbeat = min(1.0, self.bus.session_timeout_ms / 3000)
        pause = 0.002
        while True:
            if time.monotonic() - self._last_rebalance >= heartbeat or not self._positions:
                self._rebalance()
            records = self._fetch(max_records)
            if records or time.monotonic() >= deadline:
                return records
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 0.05)

    def _fetch(self, max_records: int) -> list[Record]:
        out: list[Record] = []
        heads = self._heads()  # one read tells which partitions have anything new: idle polls cost one statement
        for (topic, part), pos in sorted(self._positions.items()):
            if len(out) >= max_records:
                break
            if heads.get((topic, part), pos + 1) <= pos:
                continue
            rows = self._conn.execute(
                "SELECT off, key, value, headers, ts_ms FROM log WHERE topic = ? AND part = ? AND off >= ? "
                "ORDER BY off LIMIT ?",
                (topic, part, pos, max_records - len(out)),
            ).fetchall()
            for off, key, value, headers, ts in rows:
                out.append(Record(topic, part, off, bytes(key), bytes(value), _decode_headers(headers), ts))
            if rows:
                self._positions[(topic, part)] = rows[-1][0] + 1
        return out

    def commit(self, records: Sequence[Record]) -> None:
        if not records:
            return
        upto = next_offsets(records)
        conn = self._conn
        with _Tx(conn):
            for (topic, part), next_off in upto.items():
                owner = conn.execute(
                    "SELECT member FROM owners WHERE grp = ? AND topic = ? AND part = ?", (self.group, topic, part)
                ).fetchone()
                if not owner or owner[0] != self.member:
                    raise CommitFailed(
                        f"cannot commit {topic}[{part}] for group {self.group!r}: the partition was reassigned "
                        "(this member was silent longer than session_timeout_ms); its records will be redelivered"
                    )
                conn.execute(
                    "INSERT INTO group_offsets (grp, topic, part, next_off) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (grp, topic, part) DO UPDATE SET next_off = max(next_off, excluded.next_off)",
                    (self.group, topic, part, next_off),
                )
            # a commit is a sign of life too: extend this member's leases like a heartbeat
            now = _now_ms()
            conn.execute("UPDATE owners SET lease_until_ms = ? WHERE grp = ? AND member = ?",
                         (now + self.bus.session_timeout_ms, self.group, self.member))
            conn.execute("UPDATE members SET heartbeat_ms = ? WHERE grp = ? AND member = ?",
                         (now, self.group, self.member))

    def keepalive(self) -> None:
        """Extend this member's heartbeat and partition leases, as a poll or commit would."""
        now = _now_ms()
        with _Tx(self._conn) as conn:
            conn.execute("UPDATE owners SET lease_until_ms = ? WHERE grp = ? AND member = ?",
                         (now + self.bus.session_timeout_ms, self.group, self.member))
            conn.execute("UPDATE members SET heartbeat_ms = ? WHERE grp = ? AND member = ?",
                         (now, self.group, self.member))

    def backlog(self) -> int:
        if self._closed or not self._positions:
            return 0
        heads = self._heads()
        return sum(max(0, heads.get(tp, pos) - pos) for tp, pos in self._positions.items())

    def _heads(self) -> dict[tuple[str, int], int]:
        """The next offset of every partition of this member's topics (a partition's records are written
        with its head in one transaction, so a head never runs ahead of what can be read)."""
        marks = ",".join("?" * len(self.topics))
        return {(t, p): off for t, p, off in self._conn.execute(
            f"SELECT topic, part, next_off FROM heads WHERE topic IN ({marks})", self.topics)}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with _Tx(self._conn) as conn:
            conn.execute("DELETE FROM owners WHERE grp = ? AND member = ?", (self.group, self.member))
            conn.execute("DELETE FROM members WHERE grp = ? AND member = ?", (self.group, self.member))
        self._conn.close()


def _encode_headers(headers: dict[str, bytes]) -> str:
    return json.dumps({k: v.hex() for k, v in headers.items()}, sort_keys=True) if headers else ""


def _decode_headers(raw: str | None) -> dict[str, bytes]:
    return {k: bytes.fromhex(v) for k, v in json.loads(raw).items()} if raw else {}


def _open(uri: str) -> EventBus:
    return SQLiteBus(uri)


register_backend("sqlite", _open)
