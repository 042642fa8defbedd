"""What authentication costs a call: TLS + a verified bearer token + the role check, against the
same call unauthenticated (plaintext, tenant from headers), side by side in one run.

    .venv/bin/python benchmarks/auth.py [--calls 2000] [--clients 1,8] [--rounds 3]

Two platforms serve the dataset API in this process, one per mode, over the same kind of store;
each answers GetDataset (one indexed read of the dataset's events) to ``clients`` closed-loop
clients. Rounds alternate between the modes so that load from elsewhere on the machine falls on
both. Prints per-call latency p50/p99 for each mode, their ratio, and the cost of verifying one
token alone (ES256 through joserfc), which is paid on every call.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import grpc

from privtune.platform import Platform
from privtune.v1 import dataset_service_pb2 as pb
from privtune.v1 import dataset_service_pb2_grpc as pb_grpc
from services.common.auth.pki import ensure_local_pki
from services.common.auth.tokens import DevIssuer
from services.common.config import PlatformConfig


def _platform(root: Path, mode: str) -> Platform:
    config = PlatformConfig.from_env(root, grpc_address="127.0.0.1:0", bus_uri=f"sqlite:///{root}/events.db",
                                     store_uri=f"sqlite:///{root}/privtune.db", storage_root=str(root / "tenants"),
                                     auth_mode=mode)
    return Platform(config, services=("ingest",)).start()


def _client(platform: Platform) -> tuple[pb_grpc.DatasetServiceStub, list[tuple[str, str]]]:
    config = platform.config
    if config.tls:
        channel = grpc.secure_channel(platform.grpc_target, grpc.ssl_channel_credentials(
            ensure_local_pki(config.pki_dir).ca_bytes()))
        token = DevIssuer(config.auth_dir).mint("acme", "bench", ["ml-engineer"], ttl_s=3600)
        return pb_grpc.DatasetServiceStub(channel), [("authorization", f"Bearer {token}")]
    channel = grpc.insecure_channel(platform.grpc_target)
    return pb_grpc.DatasetServiceStub(channel), [("x-privtune-tenant", "acme"), ("x-privtune-actor", "bench")]


def _dataset(platform: Platform) -> str:
    folder = platform.config.storage_path / "acme" / "docs"
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text("alpha")
    stub, md = _client(platform)
    return stub.CreateDataset(pb.CreateDatasetRequest(name="docs", storage_uri=f"file://{folder}",
                                                      classification=2), metadata=md, timeout=30).dataset.dataset_id


def _round(platform: Platform, dataset_id: str, calls: int, clients: int) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        stub, md = _client(platform)  # one channel per client, as separate programs would have
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
    parser.add_argument("--calls", type=int, default=2000, help="calls per mode, per client count, per round")
    parser.add_argument("--clients", default="1,8", help="closed-loop client counts to measure")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        platforms = {mode: _platform(Path(tmp) / mode, mode) for mode in ("insecure-headers", "tls")}
        try:
            datasets = {mode: _dataset(p) for mode, p in platforms.items()}
            issuer = DevIssuer(platforms["tls"].config.auth_dir)
            verifier, token = issuer.verifier(), issuer.mint("acme", "bench", ["viewer"])
            started = time.perf_counter()
            for _ in range(2000):
                verifier.verify(token)
            verify_us = (time.perf_counter() - started) / 2000 * 1e6
            print(f"verifying one ES256 token (joserfc): {verify_us:.0f} µs")
            print("| clients | mode | calls | p50 ms | p99 ms |")
            print("|---:|---|---:|---:|---:|")
            for clients in (int(c) for c in args.clients.split(",")):
                results: dict[str, list[float]] = {mode: [] for mode in platforms}
                for _ in range(args.rounds):
                    for mode, platform in platforms.items():
                        results[mode] += _round(platform, datasets[mode], args.calls, clients)
                for mode, values in results.items():
                    print(f"| {clients} | {mode} | {len(values)} | {_pct(values, 0.5):.2f} | {_pct(values, 0.99):.2f} |")
                plain, secured = results["insecure-headers"], results["tls"]
                print(f"| {clients} | tls / insecure | | {_pct(secured, 0.5) / _pct(plain, 0.5):.2f}x | "
                      f"{_pct(secured, 0.99) / _pct(plain, 0.99):.2f}x |")
                print(f"  (mean {statistics.mean(secured) * 1000:.2f} ms vs {statistics.mean(plain) * 1000:.2f} ms)")
        finally:
            for platform in platforms.values():
                platform.stop()


if __name__ == "__main__":
    main()
