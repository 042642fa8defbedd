"""Claiming an attempt from the orchestrator before any setup (``TrainingAttemptService.ClaimAttempt``).

The only synchronous call a worker makes: a compare-and-set the orchestrator owns, so a
``TrainingScheduled`` delivered twice (a relay re-send, two workers polling a rebalanced
partition) is run by exactly one worker. Everything else a worker says goes on the bus.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from typing import Callable, Protocol

import grpc

from privtune.v1 import events_pb2
from privtune.v1 import training_attempt_service_pb2 as pb
from privtune.v1 import training_attempt_service_pb2_grpc as pb_grpc
from services.common.errors import BusUnavailable
from services.common.grpc_client import REFUSED, LazyChannel, call_until_answered
from services.common.identity import ACTOR_HEADER, TENANT_HEADER

log = logging.getLogger(__name__)


class ClaimUnavailable(BusUnavailable):
    """The orchestrator could not be asked; the command is retried later (nothing ran)."""


@dataclass(frozen=True)
class Claim:
    granted: bool
    reason: str = ""
    claim_id: str = ""                         # the token this worker's reports of the attempt carry
    request: events_pb2.TrainingRequested = field(default_factory=events_pb2.TrainingRequested)
    resume_from_checkpoint_id: str = ""
    correlation_id: str = ""


class AttemptClaims(Protocol):
    def claim(self, tenant_id: str, job_id: str, attempt: int, worker_id: str, executor: str = "local") -> Claim: ...


class GrpcAttemptClaims:
    """Claims over gRPC, mutual TLS with ``credentials`` (the worker's client certificate). ``target`` is
    the component port's ``host:port`` or a function giving it (resolved per call)."""

    def __init__(self, target: str | Callable[[], str], *, timeout: float = 30.0, give_up_after: float = 120.0,
                 stop: threading.Event | None = None, credentials: grpc.ChannelCredentials) -> None:
        self.channel = LazyChannel(target, credentials)
        self.timeout = timeout
        self.give_up_after = give_up_after
        self.stop = stop or threading.Event()

    def claim(self, tenant_id: str, job_id: str, attempt: int, worker_id: str, executor: str = "local") -> Claim:
        """Ask once under a fresh claim id, retrying (with the same id) only while the orchestrator
        cannot answer: a retried claim that was granted is granted again, never a second one.

        Raises:
            ClaimUnavailable: no answer within ``give_up_after`` seconds.
        """
        claim_id = uuid.uuid4().hex
        request = pb.ClaimAttemptRequest(job_id=job_id, attempt=attempt, worker_id=worker_id, claim_id=claim_id,
                                         executor=pb.TrainingExecutor.Value(f"TRAINING_EXECUTOR_{executor.upper()}"))
        metadata = ((TENANT_HEADER, tenant_id), (ACTOR_HEADER, worker_id))
        try:
            answer = call_until_answered(
                lambda: pb_grpc.TrainingAttemptServiceStub(self.channel.get()).ClaimAttempt(
                    request, metadata=metadata, timeout=self.timeout),
                f"claiming attempt {attempt} of training job {job_id}", give_up_after=self.give_up_after,
                stop=self.stop)
        except BusUnavailable as exc:
            raise ClaimUnavailable(f"{exc} from the orchestrator at {self.channel.address}") from None
        except grpc.RpcError as exc:
            if exc.code() in REFUSED:  # e.g. no such job for this tenant: a command not to run, never to retry
                return Claim(granted=False, reason=f"the orchestrator refused the claim: {exc.code().name}")
            raise ClaimUnavailable(f"the orchestrator could not answer the claim of attempt {attempt} of "
                                   f"training job {job_id}: {exc.code()}") from None
        return Claim(granted=answer.granted, reason=answer.reason, claim_id=claim_id, request=answer.request,
                     resume_from_checkpoint_id=answer.resume_from_checkpoint_id,
                     correlation_id=answer.correlation_id)

    def close(self) -> None:
        self.channel.close()
