"""A curation worker's claim on a job (``CurationWorkService.ClaimCurationJob``): a lease the curation
service keeps in its store, taken before the job is curated and renewed while it runs."""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import grpc

from privtune.v1 import curation_work_service_pb2 as pb
from privtune.v1 import curation_work_service_pb2_grpc as pb_grpc
from services.common.errors import BusUnavailable
from services.common.grpc_client import REFUSED, LazyChannel, call_until_answered
from services.common.identity import ACTOR_HEADER, TENANT_HEADER

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CurationClaim:
    granted: bool
    finished: bool = False                     # nothing (more) to do for this request: mark it done
    reason: str = ""


class CurationClaims(Protocol):
    def claim(self, tenant_id: str, job_id: str, worker_id: str, claim_id: str,
              lease_seconds: int) -> CurationClaim: ...


class GrpcCurationClaims:
    """Claims over gRPC, mutual TLS with ``credentials`` (the worker's client certificate); ``target`` is
    the component port's ``host:port`` or a function giving it (resolved per call)."""

    def __init__(self, target: str | Callable[[], str], *, timeout: float = 10.0, give_up_after: float = 60.0,
                 credentials: grpc.ChannelCredentials) -> None:
        self.channel = LazyChannel(target, credentials)
        self.timeout = timeout
        self.give_up_after = give_up_after

    def claim(self, tenant_id: str, job_id: str, worker_id: str, claim_id: str,
              lease_seconds: int) -> CurationClaim:
        """Take or renew the claim; retried while the curation service cannot answer.

        Raises:
            BusUnavailable: no answer within ``give_up_after`` seconds (the job is left for later).
        """
        request = pb.ClaimCurationJobRequest(job_id=job_id, worker_id=worker_id, claim_id=claim_id,
                                             lease_seconds=lease_seconds)
        metadata = ((TENANT_HEADER, tenant_id), (ACTOR_HEADER, worker_id))
        try:
            answer = call_until_answered(
                lambda: pb_grpc.CurationWorkServiceStub(self.channel.get()).ClaimCurationJob(
                    request, metadata=metadata, timeout=self.timeout),
                f"claiming curation job {job_id}", give_up_after=self.give_up_after, max_backoff=5.0)
        except grpc.RpcError as exc:
            if exc.code() in REFUSED:  # e.g. no such job for this tenant: nothing to curate, never to retry
                return CurationClaim(granted=False, finished=True,
                                     reason=f"the curation service refused the claim: {exc.code().name}")
            raise BusUnavailable(f"the curation service could not answer the claim of job {job_id}: "
                                 f"{exc.code()}") from None
        return CurationClaim(granted=answer.granted, finished=answer.finished, reason=answer.reason)

    def close(self) -> None:
        self.channel.close()


@contextmanager
def renewing(claims: CurationClaims, tenant_id: str, job_id: str, worker_id: str, claim_id: str,
             lease_seconds: int) -> Iterator[None]:
    """Renew the claim every third of its lease while the block runs (a lost renewal is logged:
    the outcome is then not recorded, and the job's next claimant curates it)."""
    done = threading.Event()

    def renew() -> None:
        while not done.wait(lease_seconds / 3):
            try:
                answer = claims.claim(tenant_id, job_id, worker_id, claim_id, lease_seconds)
                if not answer.granted and not answer.finished:
                    log.error("curation job %s: the claim was lost (%s)", job_id, answer.reason)
                    return
            except Exception:  # noqa: BLE001 - the service is briefly away: the next period retries
                log.warning("curation job %s: could not renew the claim", job_id, exc_info=True)

    thread = threading.Thread(target=renew, daemon=True, name=f"claim-{job_id}")
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=30)
