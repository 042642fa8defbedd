"""The eval worker: computes scheduled shards and reports them on the bus.

Members of group ``eval.workers`` on ``privtune.eval.commands`` are the pool. A shard's command
(``EvalShardScheduled``) carries everything the worker needs: the suite's location and hash,
the item range, the base model and the candidate artifact (with their hashes), the judge and
the generation settings. Before computing, the worker claims the shard
(``EvalWorkService.ClaimEvalShard``, a lease the eval service keeps, renewed while it runs): a
second delivery of the command that reaches another worker finds the shard claimed, and that
worker waits (keeping the command uncommitted and its group membership) until the shard has its
outcome, or until its claimant died and the lease lapsed, when it computes the shard itself. A
worker that loses its claim while computing (it stopped renewing long enough for the lease to
lapse and another worker took the shard) stops at the next chunk and reports nothing.

A worker commits a shard's command only once the shard has its outcome. Commands reach workers by
bus partition, so one worker can still have a queue while another has none: an idle worker asks
the eval service for the highest-numbered unclaimed shard of a run it has seen
(``claim_next``, the tail of the queues) and computes it; the shard's own command, when its
worker reaches it, finds it finished and is committed unseen.

A computed shard's outputs (one JSON line per item: generations, scores, judge verdicts, probe
results) go to the tenant's storage in one atomic write next to the command's ``outputs_uri``; a
claimant that finds them there (its predecessor died after writing, before its report was
recorded) reports them again instead of computing the shard a second time. Each computation writes
its own file (``<shard>.<claim id>.jsonl``), so storage itself shows how often a shard was
computed and under which claim. Only scores and hashes travel on the bus (``EvalShardCompleted`` on
``privtune.eval.reports``, with the claim id as ``causation_id``); the eval service records the
report if the claim is still the shard's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any, Callable, Protocol

from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common.bus import EventBus, Message, Record, Subscription
from services.common.consumer import MAX_HANDLER_FAILURES, dead_letter_message
from services.common.envelope import Causation, new_envelope
from services.common.errors import BusUnavailable, Busy, MalformedEvent, PrivtuneError
from services.common.keepalive import keep_membership, keepalive_interval
from services.common.storage import open_tenant_storage
from services.common.supervision import is_transient, run_loop
from services.common.topics import EVAL_COMMANDS, EVAL_REPORTS
from services.eval.claims import ShardClaims, renewing
from services.eval.suites import SuiteError, load_items

log = logging.getLogger(__name__)
GROUP = "eval.workers"
SOURCE = "privtune/eval-worker"
KNOWN_RUNS = 256        # runs an idle worker may take unclaimed shards from (the most recently seen)
NEXT_ASK_S = 2.0        # how soon an idle worker asks a run with nothing unclaimed again (doubling, up to the lease)


class ShardComputer(Protocol):
    """Computes a shard's per-item output records (services/eval/computer.py)."""

    def compute(self, tenant_id: str, command: events_pb2.EvalShardScheduled, items: list[dict[str, Any]],
                should_stop: Callable[[], bool] | None = None) -> list[dict[str, Any]]:
        """Raises ClaimLost when ``should_stop()`` turns true between chunks."""
        ...


class ClaimLost(Exception):
    """The worker's claim on the shard was taken over while it computed: stop, report nothing."""


class ShardRefused(Exception):
    """A shard that can never be computed as asked (a model or suite that does not match its hash, an
    unknown judge). ``code`` is stable; the message is privtune's own words, never the data's."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _body(records: list[dict[str, Any]]) -> bytes:
    """The shard's outputs file. Raises ShardRefused for a NaN or infinite score (a diverged model)."""
    try:
        return "".join(json.dumps(r, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
                       + "\n" for r in records).encode("utf-8")
    except ValueError:
        raise ShardRefused("non_finite_scores", "the model produced non-finite scores (NaN or infinity): its "
                                                "weights may have diverged; check the training run") from None


class EvalWorker:
    """Computes each scheduled shard once, as a member of group ``eval.workers``."""

    def __init__(self, bus: EventBus, claims: ShardClaims, storage_root: str, computer: ShardComputer,
                 lease_seconds: int = 30, worker_id: str = "") -> None:
        self.bus = bus
        self.claims = claims
        self.storage_root = storage_root
        self.computer = computer
        self.lease_seconds = lease_seconds
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.keepalive_interval = keepalive_interval(bus.uri)
        self._claim_ids: dict[str, str] = {}                        # shard stream -> this worker's claim
        self._unsent: dict[str, events_pb2.EventEnvelope] = {}      # shard stream -> outcome until committed
        self._failures: dict[str, int] = {}
        # (tenant, eval id) -> (when to ask next, the wait after an answer of "nothing unclaimed")
        self._runs: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()
        self._stop = threading.Event()
        self.subscription: Subscription | None = bus.subscribe(GROUP, [EVAL_COMMANDS])

    def run(self, stop: threading.Event) -> None:
        """Take shards until ``stop`` is set; any failure (bus, the eval service away, a shard claimed by
        another worker) is retried with backoff after rejoining the group, which redelivers the
        uncommitted command (see supervision.run_loop)."""
        self._stop = stop
        run_loop("eval worker", self._take_shard, stop, idle_seconds=0.0, on_error=self._rejoin)

    def _take_shard(self) -> bool:
        if self.subscription is None:
            self.subscription = self.bus.subscribe(GROUP, [EVAL_COMMANDS])
        records = self.subscription.poll(max_records=1, timeout=0.5)
        if not records:
            with keep_membership(self.subscription, self.keepalive_interval, GROUP):
                return self.take_unclaimed_shard()
        for record in records:
            with keep_membership(self.subscription, self.keepalive_interval, GROUP):
                subject = self._handle_or_give_up(record)
            self.subscription.commit([record])
            if subject:
                self._claim_ids.pop(subject, None)
                self._unsent.pop(subject, None)
        return bool(records)

    def _handle_or_give_up(self, record: Record) -> str:
        key = f"{record.topic}/{record.partition}/{record.offset}"
        try:
            subject = self.handle(record)
        except Exception as exc:
            if isinstance(exc, Busy) or is_transient(exc):
                raise
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            if failures < MAX_HANDLER_FAILURES:
                raise
            log.error("eval worker: command at %s failed %d times (%s); dead-lettering it", key, failures,
                      type(exc).__name__)
            self.bus.publish([dead_letter_message(record, GROUP, MalformedEvent(
                "rejected_by_handler", f"{type(exc).__name__} on {failures} attempts"))])
            subject = ""
        self._failures.pop(key, None)
        return subject

    def _rejoin(self) -> None:
        if self.subscription is not None:
            try:
                self.subscription.close()
            except Exception:  # noqa: BLE001 - the member may already be gone
                log.debug("closing the eval worker's membership", exc_info=True)
        self.subscription = None

    def handle(self, record: Record) -> str:
        """Run the record's shard if it is a shard command; returns its stream id ("" for anything else)."""
        try:
            env = codec.decode(record.value)
        except MalformedEvent as exc:
            self.bus.publish([dead_letter_message(record, GROUP, exc)])
            return ""
        if env.WhichOneof("payload") != "eval_shard_scheduled":
            return ""
        self._runs[(env.tenant_id, env.eval_shard_scheduled.eval_id)] = (0.0, NEXT_ASK_S)
        self._runs.move_to_end((env.tenant_id, env.eval_shard_scheduled.eval_id))
        while len(self._runs) > KNOWN_RUNS:
            self._runs.popitem(last=False)
        self.run_shard(env)
        return env.subject

    def take_unclaimed_shard(self) -> bool:
        """With no command of its own, compute an unclaimed shard of a run this worker has seen."""
        for key, (next_ask, wait) in list(self._runs.items()):
            now = time.monotonic()
            if next_ask > now or self._stop.is_set():
                continue
            tenant, eval_id = key
            claim_id = uuid.uuid4().hex
            try:
                answer = self.claims.claim_next(tenant, eval_id, self.worker_id, claim_id, self.lease_seconds)
            except BusUnavailable:  # the eval service is away: ask nobody else now, back to the bus
                self._runs[key] = (now + self.lease_seconds, wait)
                return False
            if answer.finished:
                self._runs.pop(key, None)
                continue
            command = answer.command
            if not answer.granted or command is None:
                self._runs[key] = (now + wait, min(2 * wait, max(NEXT_ASK_S, float(self.lease_seconds))))
                continue
            if (command.tenant_id != tenant or command.WhichOneof("payload") != "eval_shard_scheduled"
                    or command.eval_shard_scheduled.eval_id != eval_id):
                log.error("evaluation %s: the eval service answered an unclaimed-shard request with another "
                          "command; ignoring it", eval_id)
                self._runs[key] = (now + self.lease_seconds, wait)
                continue
            self._runs[key] = (0.0, NEXT_ASK_S)
            subject = command.subject
            self._claim_ids[subject] = claim_id
            log.info("evaluation %s: no command of its own, so this worker takes unclaimed shard %d", eval_id,
                     command.eval_shard_scheduled.shard)
            self.run_shard(command)
            self._claim_ids.pop(subject, None)
            self._unsent.pop(subject, None)
            return True
        return False

    def run_shard(self, command: events_pb2.EventEnvelope) -> events_pb2.EventEnvelope | None:
        """Claim, compute and report one shard. Returns the reported outcome (None: nothing to do).

        Raises:
            Busy: another worker holds the shard's claim (the command must stay uncommitted).
            BusUnavailable: the claim or the report could not be made (idem; the outcome is kept).
        """
        shard = command.eval_shard_scheduled
        tenant, subject = command.tenant_id, command.subject
        claim_id = self._claim_ids.setdefault(subject, uuid.uuid4().hex)
        waiting = False
        while True:
            answer = self.claims.claim(tenant, shard.eval_id, shard.shard, self.worker_id, claim_id,
                                       self.lease_seconds)
            if answer.finished:
                if answer.reason:
                    log.warning("evaluation %s shard %d: not computing it: %s", shard.eval_id, shard.shard,
                                answer.reason)
                return None
            if answer.granted:
                outcome = self._unsent.get(subject)
                if outcome is not None and outcome.causation_id != claim_id:  # kept from an earlier claim
                    del self._unsent[subject]
                    outcome = None
                if outcome is None:
                    with renewing(self.claims, tenant, shard.eval_id, shard.shard, self.worker_id, claim_id,
                                  self.lease_seconds) as lost:

                        def still_mine() -> bool:  # asked again right before the outputs are written
                            if lost.is_set():
                                return False
                            try:
                                return self.claims.claim(tenant, shard.eval_id, shard.shard, self.worker_id,
                                                         claim_id, self.lease_seconds).granted
                            except BusUnavailable:  # cannot tell: writing is safe (a next claimant reuses it)
                                return True

                        payload = self._compute(tenant, shard, claim_id, lost.is_set, still_mine)
                    if payload is None or lost.is_set():
                        log.warning("evaluation %s shard %d: the claim was taken over while computing; waiting "
                                    "for the shard's outcome instead", shard.eval_id, shard.shard)
                        continue
                    outcome = self._unsent[subject] = new_envelope(
                        payload, subject=subject, tenant_id=tenant, source=SOURCE,
                        causation=Causation(actor=self.worker_id, correlation_id=command.correlation_id,
                                            causation_id=claim_id))
                self.bus.publish([Message(EVAL_REPORTS, subject.encode(), codec.encode(outcome), id=outcome.id)])
                return outcome
            # another worker holds the claim: wait for its outcome (or for its lease to lapse) right here; a
            # holder that died stops renewing, so the wait ends within a lease
            if self._stop.is_set():
                raise Busy(f"shard {shard.shard} of evaluation {shard.eval_id} is being computed by another "
                           f"worker ({answer.reason})")
            if not waiting:
                log.info("evaluation %s shard %d: claimed by another worker; waiting for its outcome",
                         shard.eval_id, shard.shard)
                waiting = True
            self._stop.wait(min(2.0, self.lease_seconds / 3))

    def _compute(self, tenant: str, shard: events_pb2.EvalShardScheduled, claim_id: str,
                 claim_lost: Callable[[], bool], still_mine: Callable[[], bool] = lambda: True,
                 ) -> events_pb2.EvalShardCompleted | events_pb2.EvalShardFailed | None:
        """The shard's outcome; None if the claim was lost while computing (nothing written, nothing to report)."""
        started = time.monotonic()
        try:
            storage = open_tenant_storage(self.storage_root, tenant)
            stem = storage.key_for(shard.outputs_uri)
            earlier = [o.key for o in storage.list(f"{stem}.") if o.key.endswith(".jsonl")]
            if earlier:  # computed under an earlier claim whose report was lost: never computed twice
                key = earlier[0]
                with storage.open(key) as fh:
                    body = fh.read()
                records = [json.loads(line) for line in body.decode("utf-8").splitlines() if line.strip()]
                if len(records) != shard.item_count:
                    raise ShardRefused("outputs_mismatch", f"stored outputs of shard {shard.shard} hold "
                                                           f"{len(records)} of {shard.item_count} items")
                log.info("evaluation %s shard %d: outputs already stored; reporting them", shard.eval_id,
                         shard.shard)
            else:
                items = load_items(storage, storage.key_for(shard.suite_uri).rstrip("/"),
                                   shard.suite_manifest_sha256, shard.first_item, shard.item_count)
                records = self.computer.compute(tenant, shard, items, should_stop=claim_lost)
                if len(records) != shard.item_count:
                    raise ShardRefused("internal", f"the shard computed {len(records)} of {shard.item_count} items")
                body = _body(records)
                if not still_mine():  # taken over during the last chunk: the new claimant computes and writes it
                    return None
                key = f"{stem}.{claim_id}.jsonl"
                storage.write(key, body)  # atomic: the file exists only once complete
                log.info("evaluation %s shard %d: %d items computed in %.1fs", shard.eval_id, shard.shard,
                         len(records), time.monotonic() - started)
        except ClaimLost:
            return None
        except ShardRefused as exc:
            return events_pb2.EvalShardFailed(eval_id=shard.eval_id, shard=shard.shard, error_code=exc.code,
                                              reason=str(exc), worker_id=self.worker_id)
        except SuiteError as exc:
            log.warning("evaluation %s shard %d: the suite cannot be read (%s)", shard.eval_id, shard.shard, exc)
            return events_pb2.EvalShardFailed(
                eval_id=shard.eval_id, shard=shard.shard, error_code="suite_mismatch", worker_id=self.worker_id,
                reason="the suite's files do not match its recorded sha256; create the suite again")
        except PrivtuneError as exc:
            if is_transient(exc):
                raise
            return events_pb2.EvalShardFailed(eval_id=shard.eval_id, shard=shard.shard, error_code=exc.reason.lower(),
                                              reason=str(exc)[:500], worker_id=self.worker_id)
        except Exception as exc:  # noqa: BLE001 - a deterministic failure fails the shard (and the run) at once
            if is_transient(exc):
                raise
            log.exception("evaluation %s shard %d: computing it failed", shard.eval_id, shard.shard)
            return events_pb2.EvalShardFailed(
                eval_id=shard.eval_id, shard=shard.shard, error_code="internal", worker_id=self.worker_id,
                reason=f"{type(exc).__name__} while computing the shard; the eval worker's log has the details")
        tokens = sum(int(side.get("tokens") or 0) for r in records for side in (r.get("candidate") or {},
                                                                                 r.get("reference") or {}))
        return events_pb2.EvalShardCompleted(
            eval_id=shard.eval_id, shard=shard.shard, outputs_uri=storage.uri_for(key),
            outputs_sha256=hashlib.sha256(body).hexdigest(), items=len(records),
            seconds=round(time.monotonic() - started, 3), worker_id=self.worker_id, generated_tokens=tokens)

    def close(self) -> None:
        self._rejoin()
