"""Evaluation runs and their shards: pure decisions on frozen state, no I/O.

A run (stream: its eval id) is ``EvalRequested`` and then exactly one of ``EvalCompleted`` /
``EvalFailed``. Each shard is an aggregate of its own (stream ``<eval id>.<shard>``, which is
also its bus key, so shards spread over the command topic's partitions): ``EvalShardScheduled``
(the command a worker claims), then the one outcome a worker reported under the shard's current
claim (``EvalShardCompleted`` or ``EvalShardFailed``). The run completes once every shard has
its outcome; the append that completes it is a compare-and-set on the run's stream, so it
happens once however many finalisers race.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Callable

from privtune.v1 import eval_service_pb2 as api
from privtune.v1 import events_pb2

RUNNING, SUCCEEDED, FAILED = (api.EVAL_RUN_STATE_RUNNING, api.EVAL_RUN_STATE_SUCCEEDED,
                              api.EVAL_RUN_STATE_FAILED)
RUN_STREAM, SHARD_STREAM, SUITE_STREAM = "eval_run", "eval_shard", "eval_suite"
SHARD_OUTCOMES = ("eval_shard_completed", "eval_shard_failed")
DEFAULT_SHARD_SIZE = 64
MAX_SHARD_SIZE = 10_000
MAX_SHARDS = 5_000


def shard_stream(eval_id: str, shard: int) -> str:
    return f"{eval_id}.{shard:05d}"


def shard_range(eval_id: str) -> tuple[str, str]:
    """Bounds (inclusive, exclusive) of the run's shard stream ids: ``"."`` sorts just before ``"/"``."""
    return f"{eval_id}.", f"{eval_id}/"


def suite_stream(tenant_id: str, suite_id: str) -> str:
    """A suite's stream id: suite ids are content addresses, so two tenants may hold the same one."""
    return f"{suite_id}.{hashlib.sha256(tenant_id.encode()).hexdigest()[:12]}"


def claim_name(eval_id: str, shard: int) -> str:
    """The lease a worker holds while it computes the shard (eval ids are unique across tenants)."""
    return f"eval:{shard_stream(eval_id, shard)}"


def plan_shards(item_count: int, shard_size: int) -> list[tuple[int, int]]:
    """``(first item, item count)`` of each shard, in order; the last one may be short."""
    return [(first, min(shard_size, item_count - first)) for first in range(0, item_count, shard_size)]


def outputs_key(eval_id: str, shard: int) -> str:
    """The stem of a shard's outputs in the tenant's storage: each computation writes
    ``<stem>.<claim id>.jsonl`` (so a second computation of a shard could never hide behind the first)."""
    return f"eval/runs/{eval_id}/shards/{shard:05d}"


def run_prefix(eval_id: str) -> str:
    return f"eval/runs/{eval_id}"


@dataclass(frozen=True)
class EvalRunState:
    eval_id: str = ""
    tenant_id: str = ""
    request: events_pb2.EvalRequested = field(default_factory=events_pb2.EvalRequested)
    state: int = 0
    completed: events_pb2.EvalCompleted | None = None
    failed: events_pb2.EvalFailed | None = None
    created_at_ms: int = 0
    updated_at_ms: int = 0
    version: int = 0

    @property
    def exists(self) -> bool:
        return self.version > 0

    @property
    def finished(self) -> bool:
        return self.state in (SUCCEEDED, FAILED)


def evolve_run(state: EvalRunState, env: events_pb2.EventEnvelope) -> EvalRunState:
    kind = env.WhichOneof("payload")
    at = env.time.ToMilliseconds()
    if kind == "eval_requested":
        return EvalRunState(eval_id=env.subject, tenant_id=env.tenant_id, request=env.eval_requested, state=RUNNING,
                            created_at_ms=at, updated_at_ms=at, version=env.aggregate_version)
    if kind == "eval_completed":
        return replace(state, state=SUCCEEDED, completed=env.eval_completed, updated_at_ms=at,
                       version=env.aggregate_version)
    if kind == "eval_failed":
        return replace(state, state=FAILED, failed=env.eval_failed, updated_at_ms=at, version=env.aggregate_version)
    return replace(state, version=env.aggregate_version)


def fold_run(events: list[events_pb2.EventEnvelope]) -> EvalRunState:
    state = EvalRunState()
    for env in events:
        state = evolve_run(state, env)
    return state


@dataclass(frozen=True)
class ShardState:
    command: events_pb2.EvalShardScheduled | None = None
    outcome: str = ""                                        # "" or one of SHARD_OUTCOMES
    completed: events_pb2.EvalShardCompleted | None = None
    failed: events_pb2.EvalShardFailed | None = None
    version: int = 0

    @property
    def exists(self) -> bool:
        return self.command is not None

    @property
    def finished(self) -> bool:
        return bool(self.outcome)


def fold_shard(events: list[events_pb2.EventEnvelope]) -> ShardState:
    state = ShardState()
    for env in events:
        kind = env.WhichOneof("payload")
        if kind == "eval_shard_scheduled":
            state = replace(state, command=env.eval_shard_scheduled)
        elif kind == "eval_shard_completed" and not state.outcome:
            state = replace(state, outcome=kind, completed=env.eval_shard_completed)
        elif kind == "eval_shard_failed" and not state.outcome:
            state = replace(state, outcome=kind, failed=env.eval_shard_failed)
        state = replace(state, version=env.aggregate_version)
    return state


def report_fence(state: ShardState, env: events_pb2.EventEnvelope, claim_holder: str | None) -> str:
    """Why a worker's reported shard outcome must not be recorded ("" when it may be).

    It must be the outcome of an existing shard without one, sent under the claim the shard's
    lease names (the report's ``causation_id`` is its claim id), about the shard it names.
    """
    kind = env.WhichOneof("payload") or ""
    if kind not in SHARD_OUTCOMES:
        return f"{kind or 'an empty payload'} is not a shard outcome"
    if not state.exists:
        return "no such shard"
    payload = getattr(env, kind)
    assert state.command is not None
    if payload.eval_id != state.command.eval_id or payload.shard != state.command.shard:
        return "the report names another shard than its stream"
    if kind == "eval_shard_completed" and (
            payload.items != state.command.item_count or not payload.outputs_uri.endswith(".jsonl")
            or not payload.outputs_uri.startswith(state.command.outputs_uri + ".")):
        return "the report's outputs are not this shard's (location or item count)"
    if state.finished:
        return "the shard already has its outcome"
    if not claim_holder or env.causation_id != claim_holder:
        return "the report was not made under the shard's current claim"
    return ""


def decide_request(state: EvalRunState, request: events_pb2.EvalRequested, outputs_uri: Callable[[str, int], str],
                   ) -> tuple[list[events_pb2.EvalRequested], list[events_pb2.EvalShardScheduled]]:
    """The run's request and one command per shard (``outputs_uri(eval_id, shard)`` names each
    shard's output location). A run is requested once."""
    if state.exists:
        return [], []
    shards = []
    for shard, (first, count) in enumerate(plan_shards(request.item_count, request.shard_size)):
        shards.append(events_pb2.EvalShardScheduled(
            eval_id=request.eval_id, shard=shard, first_item=first, item_count=count, suite_uri=request.suite_uri,
            suite_manifest_sha256=request.suite_manifest_sha256, base_model_id=request.base_model_id,
            base_model_sha256=request.base_model_sha256, artifact_uri=request.artifact_uri,
            artifact_sha256=request.artifact_sha256, artifact_kind=request.artifact_kind, judge=request.judge,
            generation=request.generation, outputs_uri=outputs_uri(request.eval_id, shard),
            judge_model_sha256=request.judge_model_sha256))
    return [request], shards


def decide_finish(state: EvalRunState, shards: list[ShardState]) -> str:
    """What the run needs next: "wait" (shards without outcome), "fail" (a shard failed),
    "complete" (every shard computed), or "done" (the run has its outcome already)."""
    if state.finished or not state.exists:
        return "done"
    if any(s.outcome == "eval_shard_failed" for s in shards):
        return "fail"
    if len(shards) < state.request.shard_count or not all(s.outcome == "eval_shard_completed" for s in shards):
        return "wait"
    return "complete"
