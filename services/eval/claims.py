"""An eval worker's claim on a shard (``EvalWorkService.ClaimEvalShard``): a lease the eval service
keeps in its store, taken before the shard is computed and renewed while it runs."""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import grpc

from privtune.v1 import eval_work_service_pb2 as pb
from privtune.v1 import events_pb2
from privtune.v1 import eval_work_service_pb2_grpc as pb_grpc
from services.common.errors import BusUnavailable
from services.common.grpc_client import REFUSED, LazyChannel, call_until_answered
from services.common.identity import ACTOR_HEADER, TENANT_HEADER

log = logging.getLogger(__name__)
# next_unclaimed requests name a shard no run has: an eval service too old to know the field answers
# NOT_FOUND (the worker then stops asking) instead of granting a claim on a real shard nobody computes
NO_SUCH_SHARD = 2**32 - 1


@dataclass(frozen=True)
class ShardClaim:
    granted: bool
    finished: bool = False                     # nothing (more) to do for this command: mark it done
    reason: str = ""
    command: events_pb2.EventEnvelope | None = None  # claim_next: the granted shard's EvalShardScheduled


class ShardClaims(Protocol):
    def claim(self, tenant_id: str, eval_id: str, shard: int, worker_id: str, claim_id: str,
              lease_seconds: int) -> ShardClaim: ...

    def claim_next(self, tenant_id: str, eval_id: str, worker_id: str, claim_id: str,
                   lease_seconds: int) -> ShardClaim: ...


class GrpcShardClaims:
    """Claims over gRPC, mutual TLS with ``credentials`` (the worker's client certificate); ``target`` is
    the component port's ``host:port`` or a function giving it (resolved per call)."""

    def __init__(self, target: str | Callable[[], str], *, timeout: float = 10.0, give_up_after: float = 60.0,
                 credentials: grpc.ChannelCredentials) -> None:
        self.channel = LazyChannel(target, credentials)
        self.timeout = timeout
        self.give_up_after = give_up_after

    def claim(self, tenant_id: str, eval_id: str, shard: int, worker_id: str, claim_id: str,
              lease_seconds: int) -> ShardClaim:
        """Take or renew the claim; retried while the eval service cannot answer.

        Raises:
            BusUnavailable: no answer within ``give_up_after`` seconds (the shard is left for later).
        """
        return self._ask(tenant_id, pb.ClaimEvalShardRequest(
            eval_id=eval_id, shard=shard, worker_id=worker_id, claim_id=claim_id, lease_seconds=lease_seconds),
            f"shard {shard} of evaluation {eval_id}")

    def claim_next(self, tenant_id: str, eval_id: str, worker_id: str, claim_id: str,
                   lease_seconds: int) -> ShardClaim:
        """Claim any unclaimed shard of the run (for an idle worker); ``command`` is set when granted.

        Raises:
            BusUnavailable: as ``claim``.
        """
        return self._ask(tenant_id, pb.ClaimEvalShardRequest(
            eval_id=eval_id, shard=NO_SUCH_SHARD, worker_id=worker_id, claim_id=claim_id, lease_seconds=lease_seconds,
            next_unclaimed=True), f"an unclaimed shard of evaluation {eval_id}", give_up_after=5.0)

    def _ask(self, tenant_id: str, request: pb.ClaimEvalShardRequest, what: str,
             give_up_after: float | None = None) -> ShardClaim:
        metadata = ((TENANT_HEADER, tenant_id), (ACTOR_HEADER, request.worker_id))
        try:
            answer = call_until_answered(
                lambda: pb_grpc.EvalWorkServiceStub(self.channel.get()).ClaimEvalShard(
                    request, metadata=metadata, timeout=self.timeout),
                f"claiming {what}", give_up_after=self.give_up_after if give_up_after is None else give_up_after,
                max_backoff=5.0)
        except grpc.RpcError as exc:
            if exc.code() in REFUSED:  # e.g. no such shard for this tenant: nothing to compute, never to retry
                return ShardClaim(granted=False, finished=True,
                                  reason=f"the eval service refused the claim: {exc.code().name}")
            raise BusUnavailable(f"the eval service could not answer the claim of {what}: {exc.code()}") from None
        return ShardClaim(granted=answer.granted, finished=answer.finished, reason=answer.reason,
                          command=answer.command if answer.HasField("command") else None)

    def close(self) -> None:
        self.channel.close()


@contextmanager
def renewing(claims: ShardClaims, tenant_id: str, eval_id: str, shard: int, worker_id: str, claim_id: str,
             lease_seconds: int) -> Iterator[threading.Event]:
    """Renew the claim every third of its lease while the block runs. The event it yields is set when
    the claim was lost (the shard is then not recorded from this worker; its next claimant computes it)."""
    done, lost = threading.Event(), threading.Event()

    def renew() -> None:
        while not done.wait(lease_seconds / 3):
            try:
                answer = claims.claim(tenant_id, eval_id, shard, worker_id, claim_id, lease_seconds)
                if not answer.granted:
                    log.error("evaluation %s shard %d: the claim was lost (%s)", eval_id, shard,
                              answer.reason or "finished elsewhere")
                    lost.set()
                    return
            except Exception:  # noqa: BLE001 - the service is briefly away: the next period retries
                log.warning("evaluation %s shard %d: could not renew the claim", eval_id, shard, exc_info=True)

    thread = threading.Thread(target=renew, daemon=True, name=f"claim-{eval_id}-{shard}")
    thread.start()
    try:
        yield lost
    finally:
        done.set()
        thread.join(timeout=30)
