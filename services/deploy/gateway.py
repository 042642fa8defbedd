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
PASSED_HEADERS = {"content-type", "cache-control"}
SHADOW_CONCURRENCY = 32
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
    principal: str = ""            # the verified caller (platform gateway), or ""


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
    inflight_at_flip: int = 0      # the old pool's requests still running when the new config took effect


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
        """Outcomes finished at or after ``start``; safe from any thread (copied in one step, then read)."""
        return [(ok, s) for at, ok, s in self.outcomes.copy() if at >= start]


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
        self._shadow_slots = asyncio.Semaphore(SHADOW_CONCURRENCY)
        self._shadow_client: httpx.AsyncClient | None = None
        self.shadow_stats: dict[str, PoolStats] = {}   # kept apart: shadow copies never count in a pool's gates
        self.shadow_dropped = 0
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

    @property
    def shadow_client(self) -> httpx.AsyncClient:
        """Shadow copies have their own connections: a slow candidate cannot take live traffic's."""
        if self._shadow_client is None:
            self._shadow_client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout, connect=5.0),
                                                    limits=httpx.Limits(max_connections=SHADOW_CONCURRENCY))
        return self._shadow_client

    async def _close(self) -> None:
        for client in (self._client, self._shadow_client):
            if client is not None:
                await client.aclose()

    async def health(self, _request: HttpRequest) -> Response:
        return JSONResponse({"status": "ok", "routing_version": self.table.current().version})

    # -- requests ---------------------------------------------------------------------------------------

    async def chat_completions(self, request: HttpRequest) -> Response:
        raw = await request.body()
        try:  # what privtune serves, checked here whatever engine answers (vLLM accepts any role, for one)
            chat = api.parse_chat_request(raw)
        except api.ApiError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        sticky = chat.user or request.headers.get("x-session-id") or (request.client.host if request.client else "")
        return await self.answer(chat, sticky)

    async def answer(self, chat: api.ChatCompletionRequest, sticky: str, principal: str = "") -> Response:
        """Route a checked request by ``sticky`` (canary bucket), answer it, and record who (``principal``) asked."""
        started, at = time.monotonic(), time.time()
        request_id = uuid.uuid4().hex  # the gateway's own: a client cannot choose or collide with another's
        routing = self.table.current()
        pool, shadow = route(routing, sticky)
        headers = {"x-privtune-model-version": pool.model_version_id, "x-privtune-pool": pool.name,
                   "x-privtune-request-id": request_id, "x-privtune-routing-version": str(routing.version)}
        try:  # only the fields privtune serves travel on (no engine-specific knobs from clients)
            upstream = _upstream_body(chat, pool.model)
        except ValueError:
            return _error(400, "the request holds numbers that are not finite", "invalid_value", headers)
        if shadow is not None:
            self._mirror(shadow, _upstream_body(chat, shadow.model, stream=False), request_id)
        stream = chat.stream
        finished = False
        self.inflight[pool.name] = self.inflight.get(pool.name, 0) + 1

        def finish(status: int) -> None:
            nonlocal finished
            if finished:
                return
            finished = True
            self.inflight[pool.name] -= 1
            seconds = time.monotonic() - started
            # failures of the pool: 5xx, a stream it cut (599), and 404/429 (the gateway names the model, so a 404
            # means the pool lost it); a client's own 4xx and a client gone (499) are not the model's fault
            self.stats.setdefault(pool.name, PoolStats()).add(status < 500 and status not in (404, 429), seconds)
            try:
                self.on_access(AccessRecord(request_id, at, pool.name, pool.model_version_id, routing.version, status,
                                            seconds, stream, principal))
            except Exception:  # noqa: BLE001 - a failing recorder must not turn an answer into an error
                log.exception("recording a request's access record failed")

        try:
            url = self._url(pool) + "/v1/chat/completions"
            try:
                response = await self.client.send(self.client.build_request(
                    "POST", url, content=upstream, headers={"content-type": "application/json"}), stream=True)
            except httpx.HTTPError as exc:
                finish(502)
                log.warning("pool %s did not answer: %s", pool.name, type(exc).__name__)
                return _error(502, f"the serving pool did not answer ({type(exc).__name__}); retry",
                              "upstream_unavailable", headers)
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
                if response.status_code != 200:  # never the engine's words: they can hold paths, model lists, input
                    return _upstream_error(response.status_code, content, headers)
                return Response(content, status_code=200, headers={**passed, **headers})
            return _RelayedResponse(self._relay(response, finish), response, finish, status_code=200,
                                    headers={**passed, **headers})
        except BaseException:  # cancelled, or anything unforeseen: the request is over, whatever happened
            finish(499)
            raise

    async def _relay(self, response: httpx.Response, finish: Callable[[int], None]) -> AsyncIterator[bytes]:
        """The engine's stream, chunk by chunk; an error event inside it is counted and told in the gateway's words."""
        status = 599
        try:
            async for chunk in response.aiter_raw():
                if b'data: {"error"' in chunk:
                    status = 598
                    yield api.sse({"error": {"message": "the model server failed while answering; retry",
                                             "type": "server_error", "param": None, "code": "upstream_error"}})
                    yield api.sse("[DONE]")
                    return
                yield chunk
            status = 200
        except httpx.HTTPError:
            log.warning("a stream from the serving pool broke off")
        except (GeneratorExit, asyncio.CancelledError):
            status = 499  # the client went away: not the pool's failure
            raise
        finally:
            await response.aclose()
            finish(status)

    def _url(self, pool: Pool) -> str:
        return pool.urls[next(self._next_url) % len(pool.urls)]

    def _mirror(self, pool: Pool, body: bytes, request_id: str) -> None:
        """Send a copy to the shadow pool in the background, if fewer than ``SHADOW_CONCURRENCY`` copies are
        running (otherwise the copy is dropped: shadowing never slows live traffic down)."""
        if self._shadow_slots.locked():
            self.shadow_dropped += 1
            return

        async def shadow() -> None:
            async with self._shadow_slots:
                started = time.monotonic()
                answer, status = "", 0
                try:
                    response = await self.shadow_client.post(self._url(pool) + "/v1/chat/completions", content=body,
                                                             headers={"content-type": "application/json"})
                    status = response.status_code
                    if status == 200:
                        answer = response.json()["choices"][0]["message"]["content"]
                except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
                    status = status or 502
                self.shadow_stats.setdefault(pool.name, PoolStats()).add(status == 200, time.monotonic() - started)
                try:
                    self.on_shadow(ShadowRecord(request_id, pool.name, pool.model_version_id, status,
                                                time.monotonic() - started, answer))
                except Exception:  # noqa: BLE001 - a recorder's failure must not surface as an unretrieved task error
                    log.exception("recording a shadow answer failed")

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
            done, error = False, ""
            for attempt in range(5):  # a health check of the previous pool can fail once; try again a few times
                try:
                    await self.rollback(installed.version, by="gateway", reason=f"automatic rollback: {reason}",
                                        drain_seconds=0)
                    done = True
                    break
                except StaleRouting as exc:  # someone else moved traffic since: theirs stands
                    error = str(exc)
                    break
                except PoolUnhealthy as exc:
                    error = str(exc)
                    await asyncio.sleep(min(8.0, 0.5 * 2 ** attempt))
            if not done:
                reason = f"{reason}; the rollback itself failed: {error}"
                log.error("automatic rollback from %s failed: %s", pool, error)
            try:
                self.on_rollback(AutomaticRollback(pool, installed.previous, installed.version,
                                                   tuple(b.gate for b in breaches), reason, done))
            except Exception:  # noqa: BLE001 - the rollback happened; a failing recorder must not hide that
                log.exception("recording an automatic rollback failed")

        task = asyncio.get_running_loop().create_task(watch_after_flip(
            lambda start: self.stats.setdefault(pool, PoolStats()).since(start), gates, roll_back,
            watch_seconds=watch_seconds, still_current=lambda: self.table.current().version == installed.version))
        self._watchers.add(task)
        task.add_done_callback(self._watcher_done)

    def _watcher_done(self, task: asyncio.Task[Any]) -> None:
        self._watchers.discard(task)
        if not task.cancelled() and task.exception() is not None:  # never quietly: a dead watcher guards nothing
            log.error("the traffic-gate watcher failed", exc_info=task.exception())

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
        running = self.inflight.get(old, 0) if old else 0
        while old and self.inflight.get(old, 0) > 0 and time.monotonic() - started < drain_seconds:
            await asyncio.sleep(0.01)
        drained = not old or self.inflight.get(old, 0) == 0
        return FlipResult(installed, drained, time.monotonic() - started, running)


class _RelayedResponse(StreamingResponse):
    """A relayed stream that is over however it ends: a client gone before its first byte never starts the
    relay generator, so the upstream response is closed and the request finished (499) here too (``finish``
    counts once: after a relay that ran, this changes nothing)."""

    def __init__(self, content: AsyncIterator[bytes], upstream: httpx.Response, finish: Callable[[int], None],
                 **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._upstream = upstream
        self._finish = finish

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._finish(499)
            await self._upstream.aclose()


def _upstream_body(chat: api.ChatCompletionRequest, model: str, stream: bool | None = None) -> bytes:
    """The request as the engine gets it: privtune's fields only. Raises ValueError for a non-finite number."""
    body: dict[str, Any] = {"model": model, "messages": chat.chat(), "temperature": chat.temperature,
                            "max_tokens": chat.token_limit, "stream": chat.stream if stream is None else stream}
    if chat.seed is not None:
        body["seed"] = chat.seed
    if body["stream"] and chat.stream_options is not None:
        body["stream_options"] = {"include_usage": chat.stream_options.include_usage}
    return json.dumps(body, allow_nan=False, ensure_ascii=False).encode()


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

    def __init__(self, gateway: Any, host: str = "127.0.0.1", port: int = 0, *, ssl_certfile: str = "",
                 ssl_keyfile: str = "") -> None:
        """``gateway``: a Gateway, or anything with its ``app`` and ``on_start`` (the platform's EndpointGateway);
        with ``ssl_certfile`` and ``ssl_keyfile`` it serves HTTPS."""
        import socket

        self.gateway = gateway
        self.ssl = (ssl_certfile, ssl_keyfile) if ssl_certfile else None
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
        return f"{'https' if self.ssl else 'http'}://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> RunningGateway:
        import threading

        import uvicorn

        async def started() -> None:
            self._loop = asyncio.get_running_loop()
            self._ready.set()

        self.gateway.on_start.append(started)
        self.socket.listen(2048)  # connections queue from now on, even before the server's loop accepts them
        tls = {"ssl_certfile": self.ssl[0], "ssl_keyfile": self.ssl[1]} if self.ssl else {}
        self._server = uvicorn.Server(uvicorn.Config(self.gateway.app, log_level="warning", lifespan="on",
                                                     timeout_graceful_shutdown=30, backlog=2048, **tls))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self.socket]}, daemon=True,
                                        name="gateway")
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the gateway did not start")
        return self

    def call(self, coroutine: Any, timeout: float = 120.0) -> Any:
        """The coroutine's result; on timeout it is cancelled (a flip never lands after its caller gave up)."""
        import concurrent.futures

        assert self._loop is not None, "start() the gateway first"
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=60)
        self.socket.close()


def main(argv: list[str] | None = None) -> int:
    """A gateway in its own process over one pool (benchmarks; the deployment service will own routing):

        python -m services.deploy.gateway --url http://127.0.0.1:8001 --model NAME --model-version V --port 8080
    """
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description="privtune gateway over one pool")
    parser.add_argument("--url", action="append", required=True, help="a serving process of the pool (repeatable)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--model-version", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    pool = Pool("blue", tuple(args.url), args.model, args.model_version)
    gateway = Gateway(RoutingTable(Routing(1, {"blue": pool}, "blue")))
    uvicorn.run(gateway.app, host=args.host, port=args.port, log_level="warning", backlog=2048)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
