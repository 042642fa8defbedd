"""Routing configuration of the gateway (pure: no I/O): pools, the active one, the strategy, versioned with CAS.

A routing config names pools (each a set of serving processes with the model name to ask them
for and the registry's model version that answers), the ``active`` pool, and how traffic is
split: ``single`` (all to active: blue-green), ``canary`` (a share ``canary_weight`` to the
``candidate``, sticky per user or session), or ``shadow`` (all answers from active; each request
mirrored to the candidate, whose answer is recorded and never returned). Every change makes a
new version; a writer names the version it read (compare-and-set), so two operators, or an
operator and an automatic rollback, can never overwrite each other's change unseen.

Canary assignment hashes the sticky key only (not the version): a user in the canary stays in
it while the weight grows, and the share of users in it matches the weight.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field, replace
from typing import Literal

Strategy = Literal["single", "canary", "shadow"]
STRATEGIES = ("single", "canary", "shadow")


class RoutingError(ValueError):
    """An invalid routing config; the message names the field."""


class StaleRouting(Exception):
    """A write named a version that is no longer current (compare-and-set refused)."""

    def __init__(self, expected: int, current: int) -> None:
        super().__init__(f"the routing config is at version {current}, not {expected}: read it again and reapply "
                         f"your change")
        self.expected = expected
        self.current = current


@dataclass(frozen=True)
class Pool:
    name: str                      # "blue", "green", ...
    urls: tuple[str, ...]          # serving processes, e.g. ("http://127.0.0.1:8001",)
    model: str                     # what to ask them for: the served base name or an adapter name
    model_version_id: str          # the registry's model version answering from this pool


@dataclass(frozen=True)
class Routing:
    version: int
    pools: dict[str, Pool]
    active: str
    strategy: Strategy = "single"
    candidate: str = ""
    canary_weight: float = 0.0
    previous: str = ""             # the pool that was active before the last flip (where a rollback goes)
    changed_by: str = ""
    reason: str = ""
    salt: str = ""                 # canary buckets hash salt + key: each deployment's canary draws other users
    meta: dict[str, str] = field(default_factory=dict)

    def check(self) -> Routing:
        if self.active not in self.pools:
            raise RoutingError(f"active pool {self.active!r} is not one of the pools ({', '.join(sorted(self.pools))})")
        if self.strategy not in STRATEGIES:
            raise RoutingError(f"strategy must be one of {', '.join(STRATEGIES)}")
        if self.strategy != "single":
            if self.candidate not in self.pools or self.candidate == self.active:
                raise RoutingError(f"strategy {self.strategy} needs a candidate pool other than the active one")
        if not 0.0 <= self.canary_weight <= 1.0:
            raise RoutingError("canary_weight must be between 0 and 1")
        for pool in self.pools.values():
            if not pool.urls or not pool.model:
                raise RoutingError(f"pool {pool.name!r} needs at least one URL and a model name")
        return self


def bucket(sticky_key: str, salt: str = "") -> float:
    """A number in [0, 1) fixed for ``sticky_key`` (and ``salt``)."""
    digest = hashlib.sha256(f"{salt}\x00{sticky_key}".encode("utf-8") if salt else sticky_key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def route(routing: Routing, sticky_key: str) -> tuple[Pool, Pool | None]:
    """(the pool that answers, the pool a copy is mirrored to or None)."""
    active = routing.pools[routing.active]
    if routing.strategy == "canary" and bucket(sticky_key, routing.salt) < routing.canary_weight:
        return routing.pools[routing.candidate], None
    if routing.strategy == "shadow":
        return active, routing.pools[routing.candidate]
    return active, None


def flipped(routing: Routing, to: str, *, by: str = "", reason: str = "") -> Routing:
    """``routing`` with all traffic on pool ``to`` (blue-green flip or rollback); strategy back to single."""
    if to not in routing.pools:
        raise RoutingError(f"no pool named {to!r}")
    return replace(routing, version=routing.version + 1, active=to, strategy="single", candidate="",
                   canary_weight=0.0, previous=routing.active if to != routing.active else routing.previous,
                   changed_by=by, reason=reason).check()


class RoutingTable:
    """The current routing config; writes are compare-and-set on its version. Thread-safe."""

    def __init__(self, initial: Routing) -> None:
        self._current = initial.check()
        self._lock = threading.Lock()

    def current(self) -> Routing:
        return self._current

    def replace(self, expected_version: int, new: Routing) -> Routing:
        """Install ``new`` (its version must be ``expected_version + 1``). Raises StaleRouting, RoutingError."""
        new.check()
        with self._lock:
            if self._current.version != expected_version:
                raise StaleRouting(expected_version, self._current.version)
            if new.version != expected_version + 1:
                raise RoutingError(f"a new routing config must have version {expected_version + 1}")
            self._current = new
            return new
