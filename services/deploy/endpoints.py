"""The platform's gateway: one OpenAI-compatible HTTP front (TLS, bearer tokens) for every tenant's endpoints.

A client sends ``Authorization: Bearer <token>`` (the same tokens as the gRPC API) and names an
endpoint as the ``model``; the token's tenant picks among that tenant's endpoints only (another
tenant's endpoint is "not found", exactly like a missing one). Each endpoint is a ``Gateway``
(services/deploy/gateway.py) with its own routing config and pools. The canary bucket is the
verified caller alone: no header or body field moves a caller into or out of a canary.

Every answer is recorded in ``served_requests`` (request id, endpoint, model version, deployment,
pool, routing version, status, caller), in batches off the request path: ``GetServedRequest``
answers "which model answered this?".
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError
from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.common.auth.grpc_auth import Authenticator
from services.common.errors import PermissionDenied, Unauthenticated
from services.common.identity import Caller
from services.common.store.schema import served_requests
from services.deploy import openai_protocol as api
from services.deploy.gateway import AccessRecord, Gateway

log = logging.getLogger(__name__)
INFERENCE_ROLES = frozenset({"viewer", "ml-engineer", "approver", "admin"})


@dataclass(frozen=True)
class ServedRow:
    tenant_id: str
    endpoint_name: str
    deployment_id: str
    record: AccessRecord


class ServedLog:
    """Writes access records to ``served_requests`` in batches, from its own thread (``run(stop)``)."""

    def __init__(self, engine: Engine, max_pending: int = 200_000) -> None:
        self.engine = engine
        self._pending: deque[ServedRow] = deque()
        self._wake = threading.Event()
        self.max_pending = max_pending
        self.dropped = 0

    def add(self, row: ServedRow) -> None:
        if len(self._pending) >= self.max_pending:  # the store is down for long: say so, never block answers
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.error("served-request records are piling up (%d dropped): is the store reachable?", self.dropped)
            return
        self._pending.append(row)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            stop.wait(0.2)
            self.flush()
        self.flush()

    def flush(self) -> None:
        batch: list[ServedRow] = []
        while self._pending and len(batch) < 5000:
            batch.append(self._pending.popleft())
        if not batch:
            return
        rows = [dict(tenant_id=r.tenant_id, request_id=r.record.request_id, endpoint_name=r.endpoint_name,
                     model_version_id=r.record.model_version_id, deployment_id=r.deployment_id, pool=r.record.pool,
                     routing_version=r.record.routing_version, status=r.record.status, seconds=r.record.seconds,
                     stream=int(r.record.stream), principal=r.record.principal[:128],
                     at_ms=int(r.record.at * 1000)) for r in batch]
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(served_requests), rows)
        except IntegrityError:  # a request id twice (cannot happen: uuid4); write the rest one by one
            for row in rows:
                try:
                    with self.engine.begin() as conn:
                        conn.execute(insert(served_requests), [row])
                except IntegrityError:
                    pass  # that request id is recorded already (a retried batch): keep the first record
        except Exception:
            self._pending.extendleft(reversed(batch))  # kept for the next try: nothing lost while the store is back
            raise


def find_served(engine: Engine, tenant_id: str, request_id: str) -> dict | None:
    with engine.connect() as conn:
        row = conn.execute(select(served_requests).where(served_requests.c.tenant_id == tenant_id,
                                                         served_requests.c.request_id == request_id)).mappings().first()
    return dict(row) if row is not None else None


class EndpointGateway:
    """All endpoints of all tenants behind one HTTP front. ``endpoints[(tenant, name)]`` is a Gateway."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator
        self.endpoints: dict[tuple[str, str], Gateway] = {}
        self.on_start: list[Callable[[], Awaitable[None]]] = []
        self.app = Starlette(routes=[
            Route("/health", self.health, methods=["GET"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
        ], lifespan=self._lifespan)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        for hook in self.on_start:
            await hook()
        yield
        for gateway in list(self.endpoints.values()):
            await gateway._close()

    def _caller(self, request: HttpRequest) -> Caller | Response:
        try:
            caller = self.authenticator.authenticate({"authorization": request.headers.get("authorization", "")}, {})
        except (Unauthenticated, PermissionDenied) as exc:
            return _refuse(401, str(exc), "invalid_api_key")
        if not caller.roles & INFERENCE_ROLES:  # break-glass alone does not call models (it is for the API's repairs)
            return _refuse(403, f"calling a model needs one of the roles {', '.join(sorted(INFERENCE_ROLES))}",
                           "permission_denied")
        return caller

    async def health(self, _request: HttpRequest) -> Response:
        return JSONResponse({"status": "ok"})

    async def models(self, request: HttpRequest) -> Response:
        caller = self._caller(request)
        if isinstance(caller, Response):
            return caller
        names = sorted(name for tenant, name in list(self.endpoints) if tenant == caller.tenant_id)
        now = int(time.time())
        return JSONResponse({"object": "list", "data": [{"id": n, "object": "model", "created": now,
                                                         "owned_by": caller.tenant_id} for n in names]})

    async def chat_completions(self, request: HttpRequest) -> Response:
        caller = self._caller(request)
        if isinstance(caller, Response):
            return caller
        raw = await request.body()
        try:
            chat = api.parse_chat_request(raw)
        except api.ApiError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        gateway = self.endpoints.get((caller.tenant_id, chat.model))
        if gateway is None:  # another tenant's endpoint is as unknown as a missing one
            return JSONResponse({"error": {"message": f"the model {chat.model[:128]!r} does not exist; list yours "
                                                      "with GET /v1/models", "type": "invalid_request_error",
                                           "param": "model", "code": "model_not_found"}}, status_code=404)
        return await gateway.answer(chat, caller.actor, principal=caller.actor)


def _refuse(status: int, message: str, code: str) -> Response:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                   "code": code}}, status_code=status,
                        headers={"www-authenticate": "Bearer"} if status == 401 else None)
