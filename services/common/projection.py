"""A read model: the tables it owns and how one event changes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from sqlalchemy import Connection, Table

from privtune.v1 import events_pb2


@dataclass(frozen=True)
class Projection:
    """``name`` is also its consumer group and its key in ``processed_events``."""

    name: str
    topics: Sequence[str]
    tables: Sequence[Table]
    apply: Callable[[Connection, events_pb2.EventEnvelope], None]
