"""The gateway: OpenAI-compatible HTTP in front, pools of serving processes behind, routing by a versioned config.

Clients call ``POST /v1/chat/completions`` with the deployment's public model name; the gateway
picks the pool from the routing config in force when the request arrives (services/deploy/routing.py),
asks that pool for its model, and streams or returns the answer unchanged. Every answer carries
``x-privtune-model-version`` (the registry's model version that answered), ``x-privtune-pool``
and ``x-privtune-request-id`` headers, and every request leaves an access record with the same
facts, so "which model answered this?" is one lookup.

A flip (blue-green) or rollback installs a new routing config with compare-and-set, after
checking the target pool is healthy and serves its model; requests already running finish on the
pool they started on (nothing is cut), and the flip reports when the old pool has drained. In
shadow mode each request is mirrored to the candidate pool in the background; its answer and
latency are recorded, never returned. The gateway keeps per-pool outcomes (errors, latencies) for
the metric gates.

Nothing here logs prompts; shadow answers go only to the shadow recorder.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator, Awaitable, Callable

import httpx
from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from services.deploy import openai_protocol as api
from services.deploy.routing import Pool, Routing, RoutingTable, StaleRouting, flipped, route
from services.deploy.traffic_gates import Breach, TrafficGates, watch_after_flip

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 4 << 20
PASSED_HEADERS = {"content-type", "cache-control"}
ENGINE_ERRORS = {400: "the request was refused by the model server: check its parameters",
                 404: "the model is not served by this deployment",
                 413: "the request is too large",
                 422: "the request was refused by the model server: check its parameters",
                 429: "the model server is overloaded; retry later",
                 503: "the model server is overloaded or stopping; retry later"}


@dataclass(frozen=True)
class AccessRecord:
    request_id: str
    at: float                      # unix seconds when the request arrived
    pool: str
    model_version_id: str
    routing_version: int
    status: int                    # the HTTP status the client got (599: the stream broke after it began)
    seconds: float
    stream: bool


@dataclass(frozen=True)
class ShadowRecord:
    request_id: str
    pool: str
    model_version_id: str
    status: int
    seconds: float
    answer: str                    # the candidate's answer (kept for comparison; never returned to the client)


@dataclass(frozen=True)
class FlipResult:
    routing: Routing
    drained: bool                  # every request of the old pool finished within the drain time
    seconds_to_drain: float        # from the new config in force to the old pool's last request ending


@dataclass(frozen=True)
class AutomaticRollback:
    from_pool: str
    to_pool: str
    routing_version: int           # the flip's version the gate judged
    gates: tuple[str, ...]         # the gates that broke
    reason: str                    # which gate, observed vs limit, by how much
    done: bool                     # False: the rollback itself could not be made (the reason says why)


class PoolUnhealthy(Exception):
    """The target pool does not answer health checks or does not serve its model: no traffic moves."""


class PoolStats:
    """Recent outcomes of one pool: (finished at, ok, seconds), at most ``size``."""

    def __init__(self, size: int = 2048) -> None:
        self.outcomes: deque[tuple[float, bool, float]] = deque(maxlen=size)

    def add(self, ok: bool, seconds: float) -> None:
        self.outcomes.append((time.monotonic(), ok, seconds))

    def since(self, start: float) -> list[tuple[bool, float]]:
        return [(ok, s) for at, ok, s in self.outcomes if at >= start]


class Gateway:
    def __init__(self, table: RoutingTable, *, on_access: Callable[[AccessRecord], None] | None = None,
                 on_shadow: Callable[[ShadowRecord], None] | None = None,
                 on_rollback: Callable[[AutomaticRollback], None] | None = None, timeout: float = 600.0) -> None:
        self.table = table
        self.on_access = on_access or (lambda record: None)
        self.on_shadow = on_shadow or (lambda record: None)
        self.on_rollback = on_rollback or (lambda record: None)
        self._watchers: set[asyncio.Task[Any]] = set()
        self.timeout = timeout
        self.inflight: dict[str, int] = {}
        self.stats: dict[str, PoolStats] = {}
        self._next_url = itertools.count()
        self._client: httpx.AsyncClient | None = None
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self.on_start: list[Callable[[], Awaitable[None]]] = []
        self.app = Starlette(routes=[
            Route("/health", self.health, methods=["GET"]),
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
        ], lifespan=self._lifespan)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        for hook in self.on_start:
            await hook()
        yield
        await self._close()

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout, connect=5.0),
                                             limits=httpx.Limits(max_connections=1024, max_keepalive_connections=256))
        return self._client

    async def _close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def health(self, _request: HttpRequest) -> Response:
        return JSONResponse({"status": "ok", "routing_version": self.table.current().version})

    # -- requests ---------------------------------------------------------------------------------------

    async def chat_completions(self, request: HttpRequest) -> Response:
        started, at = time.monotonic(), time.time()
        request_id = request.headers.get("x-request-id", "")[:64] or uuid.uuid4().hex
        raw = await request.body()
        body = _json_object(raw)
        if body is None:
            return _error(400, "the request body must be a JSON object of at most 4 MiB", "invalid_json")
        try:  # what privtune serves, checked here whatever engine answers (vLLM accepts any role, for one)
            api.parse_chat_request(raw)
        except api.ApiError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        sticky = str(body.get("user") or request.headers.get("x-session-id") or
                     (request.client.host if request.client else ""))
        routing = self.table.current()
        pool, shadow = route(routing, sticky)
        upstream = {**body, "model": pool.model}
        headers = {"x-privtune-model-version": pool.model_version_id, "x-privtune-pool": pool.name,
                   "x-privtune-request-id": request_id, "x-privtune-routing-version": str(routing.version)}
        if shadow is not None:
            self._mirror(shadow, {**body, "model": shadow.model, "stream": False}, request_id)
        self.inflight[pool.name] = self.inflight.get(pool.name, 0) + 1
        stream = bool(body.get("stream"))

        def finish(status: int) -> None:
            self.inflight[pool.name] -= 1
            seconds = time.monotonic() - started
            self.stats.setdefault(pool.name, PoolStats()).add(status < 500, seconds)
            self.on_access(AccessRecord(request_id, at, pool.name, pool.model_version_id, routing.version, status,
                                        seconds, stream))

        url = self._url(pool) + "/v1/chat/completions"
        try:
            upstream_request = self.client.build_request("POST", url, json=upstream)
            response = await self.client.send(upstream_request, stream=True)
        except httpx.HTTPError as exc:
            finish(502)
            log.warning("pool %s did not answer: %s", pool.name, type(exc).__name__)
            return _error(502, f"the serving pool did not answer ({type(exc).__name__}); retry", "upstream_unavailable",
                          headers)
        passed = {k: v for k, v in response.headers.items() if k.lower() in PASSED_HEADERS}
        if not stream or response.status_code != 200:
            try:
                content = await response.aread()
            except httpx.HTTPError:
                finish(502)
                return _error(502, "the serving pool broke off its answer; retry", "upstream_broken", headers)
            finally:
                await response.aclose()
            finish(response.status_code)
            if response.status_code != 200:  # never the engine's own words: they can hold paths, model lists, input
                return _upstream_error(response.status_code, content, headers)
            return Response(content, status_code=response.status_code, headers={**passed, **headers})
        return StreamingResponse(self._relay(response, finish), status_code=200, headers={**passed, **headers})

    async def _relay(self, response: httpx.Response, finish: Callable[[int], None]) -> AsyncIterator[bytes]:
        status = 599
        try:
            async for chunk in response.aiter_raw():
                yield chunk
            status = 200
        except httpx.HTTPError:
            log.warning("a stream from the serving pool broke off")
        finally:
            await response.aclose()
            finish(status)

    def _url(self, pool: Pool) -> str:
        return pool.urls[next(self._next_url) % len(pool.urls)]

    def _mirror(self, pool: Pool, body: dict[str, Any], request_id: str) -> None:
        async def shadow() -> None:
            started = time.monotonic()
            answer, status = "", 0
            try:
                response = await self.client.post(self._url(pool) + "/v1/chat/completions", json=body)
                status = response.status_code
                if status == 200:
                    answer = response.json()["choices"][0]["message"]["content"]
            except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
                status = status or 502
            self.stats.setdefault(pool.name, PoolStats()).add(status == 200, time.monotonic() - started)
            self.on_shadow(ShadowRecord(request_id, pool.name, pool.model_version_id, status,
                                        time.monotonic() - started, answer))

        task = asyncio.get_running_loop().create_task(shadow())
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    # -- moving traffic ----------------------------------------------------------------------------------

    async def check_pool(self, pool: Pool) -> None:
        """Raises PoolUnhealthy unless every process of ``pool`` is healthy and lists the pool's model."""
        for url in pool.urls:
            try:
                health = await self.client.get(url + "/health", timeout=5.0)
                models = await self.client.get(url + "/v1/models", timeout=10.0)
                ids = [m.get("id") for m in models.json().get("data", [])] if models.status_code == 200 else []
            except (httpx.HTTPError, ValueError, AttributeError):
                raise PoolUnhealthy(f"pool {pool.name!r}: {url} does not answer; no traffic moved") from None
            if health.status_code != 200:
                raise PoolUnhealthy(f"pool {pool.name!r}: {url} is not healthy ({health.status_code}); "
                                    "no traffic moved")
            if pool.model not in ids:
                raise PoolUnhealthy(f"pool {pool.name!r}: {url} does not serve model {pool.model!r}; no traffic moved")

    async def flip(self, to: str, expected_version: int, *, drain_seconds: float = 30.0, by: str = "",
                   reason: str = "", gates: TrafficGates | None = None, watch_seconds: float = 300.0) -> FlipResult:
        """All new requests to pool ``to`` once it passes its health checks; wait for the old pool to drain.

        With ``gates``, the new pool's traffic is judged for ``watch_seconds`` from the flip, and the first
        broken gate rolls traffic back to the previous pool (``on_rollback`` hears which gate, by how much).

        Raises PoolUnhealthy (nothing changed), StaleRouting (someone else changed the routing first).
        """
        current = self.table.current()
        target = flipped(current, to, by=by, reason=reason)
        await self.check_pool(target.pools[to])
        installed = self.table.replace(expected_version, target)
        if gates is not None and current.active != to:
            self._watch(installed, gates.check(), watch_seconds)
        return await self._drain(current.active if current.active != to else "", installed, drain_seconds)

    def _watch(self, installed: Routing, gates: TrafficGates, watch_seconds: float) -> None:
        pool = installed.active

        async def roll_back(breaches: list[Breach]) -> None:
            reason = "; ".join(b.describe() for b in breaches)
            done = True
            try:
                await self.rollback(installed.version, by="gateway", reason=f"automatic rollback: {reason}")
            except (StaleRouting, PoolUnhealthy) as exc:
                done = False
                reason = f"{reason}; the rollback itself failed: {exc}"
                log.error("automatic rollback from %s failed: %s", pool, exc)
            self.on_rollback(AutomaticRollback(pool, installed.previous, installed.version,
                                               tuple(b.gate for b in breaches), reason, done))

        task = asyncio.get_running_loop().create_task(watch_after_flip(
            lambda start: self.stats.setdefault(pool, PoolStats()).since(start), gates, roll_back,
            watch_seconds=watch_seconds, still_current=lambda: self.table.current().version == installed.version))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def rollback(self, expected_version: int, *, drain_seconds: float = 30.0, by: str = "",
                       reason: str = "") -> FlipResult:
        """Back to the pool that was active before the last flip (its health is checked as for a flip)."""
        current = self.table.current()
        if not current.previous:
            raise PoolUnhealthy("there is no previous pool to roll back to")
        return await self.flip(current.previous, expected_version, drain_seconds=drain_seconds, by=by,
                               reason=reason or "rollback")

    async def set_routing(self, expected_version: int, routing: Routing) -> Routing:
        """Install a canary or shadow config (or any other) with compare-and-set, after the candidate's checks."""
        if routing.strategy != "single" and routing.candidate:
            await self.check_pool(routing.pools[routing.candidate])
        await self.check_pool(routing.pools[routing.active])
        return self.table.replace(expected_version, replace(routing, version=expected_version + 1))

    async def _drain(self, old: str, installed: Routing, drain_seconds: float) -> FlipResult:
        started = time.monotonic()
        while old and self.inflight.get(old, 0) > 0 and time.monotonic() - started < drain_seconds:
            await asyncio.sleep(0.01)
        drained = not old or self.inflight.get(old, 0) == 0
        return FlipResult(installed, drained, time.monotonic() - started)


def _json_object(raw: bytes) -> dict[str, Any] | None:
    if len(raw) > MAX_BODY_BYTES:
        return None
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _upstream_error(status: int, content: bytes, headers: dict[str, str]) -> Response:
    """The engine's error as the gateway's own: its status, and its ``param`` when that is a plain field name."""
    param = None
    try:
        found = json.loads(content).get("error", {}).get("param")
        if isinstance(found, str) and found.replace("_", "").replace(".", "").isalnum() and len(found) <= 64:
            param = found
    except (UnicodeDecodeError, ValueError, AttributeError):
        pass
    message = ENGINE_ERRORS.get(status, "the model server failed to answer; retry")
    body = {"error": {"message": message, "type": "invalid_request_error" if status < 500 else "server_error",
                      "param": param, "code": f"upstream_{status}"}}
    return JSONResponse(body, status_code=status, headers=headers)


def _error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": {"message": message, "type": "gateway_error", "param": None, "code": code}},
                        status_code=status, headers=headers)


class RunningGateway:
    """A gateway served by uvicorn on ``host:port`` (0: a free port) in a thread of this process.

    ``call(coroutine)`` runs one of the gateway's coroutines (a flip, a rollback) on the server's loop.
    """

    def __init__(self, gateway: Gateway, host: str = "127.0.0.1", port: int = 0) -> None:
        import socket

        self.gateway = gateway
        self.socket = socket.socket()
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # accepted connections inherit it: without, a kept-alive client waits ~40 ms per request (Nagle +
        # delayed ACK on a response written in two parts)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.socket.bind((host, port))
        self.host, self.port = self.socket.getsockname()[:2]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = __import__("threading").Event()
        self._server: Any = None
        self._thread: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> RunningGateway:
        import threading

        import uvicorn

        async def started() -> None:
            self._loop = asyncio.get_running_loop()
            self._ready.set()

        self.gateway.on_start.append(started)
        self._server = uvicorn.Server(uvicorn.Config(self.gateway.app, log_level="warning", lifespan="on",
                                                     timeout_graceful_shutdown=30, backlog=2048))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self.socket]}, daemon=True,
                                        name="gateway")
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the gateway did not start")
        return self

    def call(self, coroutine: Any, timeout: float = 120.0) -> Any:
        assert self._loop is not None, "start() the gateway first"
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=60)
        self.socket.close()
