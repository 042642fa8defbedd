"""What authentication costs a call: TLS + a verified bearer token + the role check + the access
record, against the same call unauthenticated, side by side in one run.

    .venv/bin/python benchmarks/auth.py [--calls 2000] [--clients 1,8] [--rounds 3]

One platform serves the dataset API as it always does (TLS, a token per call, the role table, an
access record per call). The unauthenticated peer is built here, not by a product setting: the same
service bindings over the same store, on a second, plaintext gRPC server whose only interceptor
before the usual input limits and error mapping binds one fixed caller (``_FixedCaller``). It skips
TLS, token verification, the role table and access recording, and nothing in the platform trusts
what a call says about itself. Both answer GetDataset (one indexed read of the dataset's events,
the same dataset) to ``clients`` closed-loop clients; rounds alternate between the two so that load
from elsewhere on the machine falls on both. Prints per-call latency p50/p99 for each, their ratio,
and the cost of verifying one token alone (ES256 through joserfc), which is paid on every call that
is not served from the cache of verified tokens.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import grpc

from privtune.platform import Platform, build_service
from privtune.v1 import dataset_service_pb2 as pb
from privtune.v1 import dataset_service_pb2_grpc as pb_grpc
from services.common.auth.pki import ensure_local_pki
from services.common.auth.tokens import DevIssuer
from services.common.config import PlatformConfig
from services.common.grpc_server import RunningServer, start_grpc_server
from services.common.identity import Caller, bind_caller, unbind_caller

TENANT, ACTOR = "acme", "bench"
SECURED, UNAUTHENTICATED = "tls", "unauthenticated"


class _FixedCaller(grpc.ServerInterceptor):
    """Benchmark only: every unary call runs as ``caller``, with no credentials asked or checked."""

    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    def intercept_service(self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler  # streams find no caller bound, and are refused
        inner = handler.unary_unary

        def call(request: Any, context: grpc.ServicerContext) -> Any:
            token = bind_caller(self.caller)
            try:
                return inner(request, context)
            finally:
                unbind_caller(token)

        return grpc.unary_unary_rpc_method_handler(call, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)


def _platform(root: Path) -> Platform:
    config = PlatformConfig.from_env(root, grpc_address="127.0.0.1:0", bus_uri=f"sqlite:///{root}/events.db",
                                     store_uri=f"sqlite:///{root}/privtune.db", storage_root=str(root / "tenants"))
    return Platform(config, services=("ingest",)).start()


def _unauthenticated_peer(platform: Platform, stop: threading.Event) -> RunningServer:
    """The platform's dataset API over its store, plaintext, every call bound to one viewer of TENANT."""
    assert platform.engine is not None
    parts = build_service("ingest", platform.engine, platform.bus, platform.config, stop)
    caller = Caller(tenant_id=TENANT, actor=ACTOR, roles=frozenset({"viewer"}), via="benchmark")
    return start_grpc_server("127.0.0.1:0", parts.bindings, auth=_FixedCaller(caller), tls=None)


def _secured_client(platform: Platform) -> tuple[pb_grpc.DatasetServiceStub, list[tuple[str, str]]]:
    config = platform.config
    channel = grpc.secure_channel(platform.grpc_target, grpc.ssl_channel_credentials(
        ensure_local_pki(config.pki_dir).ca_bytes()))
    token = DevIssuer(config.auth_dir).mint(TENANT, ACTOR, ["ml-engineer"], ttl_s=3600)
    return pb_grpc.DatasetServiceStub(channel), [("authorization", f"Bearer {token}")]


def _plain_client(peer: RunningServer) -> tuple[pb_grpc.DatasetServiceStub, list[tuple[str, str]]]:
    return pb_grpc.DatasetServiceStub(grpc.insecure_channel(f"127.0.0.1:{peer.port}")), []


def _dataset(platform: Platform) -> str:
    folder = platform.config.storage_path / TENANT / "docs"
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text("alpha")
    stub, md = _secured_client(platform)
    return stub.CreateDataset(pb.CreateDatasetRequest(name="docs", storage_uri=f"file://{folder}",
                                                      classification=2), metadata=md, timeout=30).dataset.dataset_id


Client = Callable[[], tuple[pb_grpc.DatasetServiceStub, list[tuple[str, str]]]]


def _round(client: Client, dataset_id: str, calls: int, clients: int) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        stub, md = client()  # one channel per client, as separate programs would have
        stub.GetDataset(pb.GetDatasetRequest(dataset_id=dataset_id), metadata=md, timeout=30)  # connect, handshake
        mine = []
        for _ in range(n):
            started = time.perf_counter()
            stub.GetDataset(pb.GetDatasetRequest(dataset_id=dataset_id), metadata=md, timeout=30)
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(calls // clients,)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per peer, per client count, per round")
    parser.add_argument("--clients", default="1,8", help="closed-loop client counts to measure")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        platform = _platform(Path(tmp))
        stop = threading.Event()
        peer = _unauthenticated_peer(platform, stop)
        try:
            dataset_id = _dataset(platform)
            peers: dict[str, Client] = {UNAUTHENTICATED: lambda: _plain_client(peer),
                                        SECURED: lambda: _secured_client(platform)}
            issuer = DevIssuer(platform.config.auth_dir)
            verifier, token = issuer.verifier(), issuer.mint(TENANT, ACTOR, ["viewer"])
            started = time.perf_counter()
            for _ in range(2000):
                verifier.verify(token)
            verify_us = (time.perf_counter() - started) / 2000 * 1e6
            print(f"verifying one ES256 token (joserfc): {verify_us:.0f} µs")
            print("| clients | mode | calls | p50 ms | p99 ms |")
            print("|---:|---|---:|---:|---:|")
            for clients in (int(c) for c in args.clients.split(",")):
                results: dict[str, list[float]] = {name: [] for name in peers}
                for _ in range(args.rounds):
                    for name, client in peers.items():
                        results[name] += _round(client, dataset_id, args.calls, clients)
                for name, values in results.items():
                    print(f"| {clients} | {name} | {len(values)} | {_pct(values, 0.5):.2f} | {_pct(values, 0.99):.2f} |")
                plain, secured = results[UNAUTHENTICATED], results[SECURED]
                print(f"| {clients} | tls / unauthenticated | | {_pct(secured, 0.5) / _pct(plain, 0.5):.2f}x | "
                      f"{_pct(secured, 0.99) / _pct(plain, 0.99):.2f}x |")
                print(f"  (mean {statistics.mean(secured) * 1000:.2f} ms vs {statistics.mean(plain) * 1000:.2f} ms)")
        finally:
            stop.set()
            peer.stop()
            platform.stop()


if __name__ == "__main__":
    main()
