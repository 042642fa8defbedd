"""Serving: rollback time, adapter hot-load time, the gateway's added latency, and output tokens/s by concurrency.

    .venv/bin/python benchmarks/serving.py [--model tiny|smollm2] [--backends transformers[,vllm]]
                                           [--concurrency 1,16,64] [--max-tokens 32] [--threads N]

Everything runs in one invocation on real HTTP, side by side:

1. Setup: the base model (``tiny``: the 2-layer test Llama, or ``smollm2``: SmolLM2-135M-Instruct from
   the model store), and a LoRA adapter trained on it for real by the training job (tiny only; for
   SmolLM2 the adapter comes from a 4-step LoRA run on the support-desk task).
2. Output tokens/s at each ``--concurrency`` (closed loop: each client sends its next request when its
   answer is complete), per backend: the sum of ``usage.completion_tokens`` over the wall time.
   ``vllm`` runs vLLM's OpenAI server from its cached venv (``scripts/vllm_env.sh``, built on first
   use); ``transformers`` is privtune's own server (services/deploy/inference_server.py).
3. Adapter hot-load: load and unload the adapter over HTTP 5 times per backend (sha256 check
   included for the load, as the pool manager does it); median and max.
4. Gateway overhead: 400 requests of one output token, alternating direct-to-engine and through the
   gateway (``python -m services.deploy.gateway`` in its own process, as deployed); p50 and p99 of each,
   and of the paired difference (gateway minus the direct request just before it).
5. Rollback under load: two transformers pools (blue: base, green: base + adapter), 50 closed-loop
   clients (half streaming) through the gateway; flip to green, then roll back; time from the rollback
   call to the new config in force, to the last request of green finishing (all traffic on blue),
   and the failed requests and cut streams during the whole run.

Prints markdown tables; nothing is asserted (docs/benchmarks.md has results and their reading).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT = "hello, my card was declined abroad, what should I do?"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))]


def setup(model: str, work: Path) -> tuple[Path, Path, str, str]:
    """(base folder, adapter folder, adapter sha256, served base name)."""
    if model == "tiny":
        from tests.deploy_fixtures import trained_adapter

        base, adapter, sha = trained_adapter(work)
        return base, adapter, sha, "tiny-base"
    from gpu_worker.base_models import SMOLLM2_ID
    from gpu_worker.job import run_job
    from gpu_worker.synthetic import write_dataset_version
    from services.common.storage import open_tenant_storage
    from tests.deploy_fixtures import copy_artifact
    from tests.generators.support_task import support_tickets
    from tests.training_fixtures import TENANT, tiny_spec

    models = Path(os.environ.get("PRIVTUNE_MODELS", Path.home() / ".cache" / "privtune" / "models"))
    storage = open_tenant_storage(str(work / "tenants"), TENANT)
    write_dataset_version(storage, "datasets/desk/versions/v1", support_tickets(32, 1), support_tickets(4, 2))
    spec = tiny_spec(storage.uri_for("datasets/desk/versions/v1"), "lora", job_id="bench-serving",
                     base_model=SMOLLM2_ID, max_steps=4, micro_batch_size=2, learning_rate=1e-3)
    done: list[dict] = []
    assert run_job(spec, models, str(work / "tenants"), work / "job",
                   lambda kind, payload: done.append(payload) if kind == "completed" else None) == 0
    adapter = copy_artifact(storage, done[0]["artifact_uri"], work / "adapter")
    return models / SMOLLM2_ID, adapter, done[0]["artifact_sha256"], "smollm2"


def start_backend(kind: str, base: Path, name: str, logs: Path, threads: int) -> Any:
    from services.deploy.backends import TransformersBackend, VllmBackend

    if kind == "vllm":
        backend = VllmBackend(base, name, logs / "vllm.log")
    else:
        backend = TransformersBackend(base, name, logs / f"{kind}.log", max_batch=64, threads=threads)
    started = time.monotonic()
    backend.start(timeout=900)
    print(f"{kind}: ready in {time.monotonic() - started:.1f}s", flush=True)
    return backend


def throughput(url: str, model: str, clients: int, max_tokens: int, requests_each: int) -> tuple[float, float]:
    """(output tokens/s, requests/s) of ``clients`` closed-loop clients."""
    def client(n: int) -> int:
        tokens = 0
        with httpx.Client(timeout=600) as http:
            for i in range(requests_each):
                response = http.post(url + "/v1/chat/completions", json={
                    "model": model, "messages": [{"role": "user", "content": f"{PROMPT} ({n}.{i})"}],
                    "max_tokens": max_tokens, "temperature": 0})
                response.raise_for_status()
                tokens += response.json()["usage"]["completion_tokens"]
        return tokens

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=clients) as pool:
        total = sum(pool.map(client, range(clients)))
    seconds = time.monotonic() - started
    return total / seconds, clients * requests_each / seconds


def hot_load(backend: Any, adapter: Path, sha256: str, rounds: int = 5) -> tuple[list[float], list[float]]:
    loads, unloads = [], []
    for n in range(rounds):
        started = time.monotonic()
        backend.load_adapter(f"bench-{n}", adapter, sha256)
        loads.append(time.monotonic() - started)
        started = time.monotonic()
        backend.unload_adapter(f"bench-{n}")
        unloads.append(time.monotonic() - started)
    return loads, unloads


def gateway_overhead(backend: Any, name: str, logs: Path, requests: int = 400) -> dict[str, float]:
    """The gateway in its own process (as deployed), called alternately with the engine directly."""
    import subprocess

    from services.deploy.backends import free_port

    port = free_port()
    gateway = subprocess.Popen([sys.executable, "-m", "services.deploy.gateway", "--url", backend.base_url, "--model",
                                name, "--model-version", "bench/v1", "--port", str(port)],
                               stdout=open(logs / "gateway.log", "ab"), stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (
                                   str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH"))))})
    url = f"http://127.0.0.1:{port}"
    direct, through, paired = [], [], []
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 1, "temperature": 0}
    try:
        with httpx.Client(timeout=60) as http:
            for _ in range(600):
                try:
                    if http.get(url + "/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            for _ in range(20):  # warm both paths
                http.post(backend.base_url + "/v1/chat/completions", json={**body, "model": name})
                http.post(url + "/v1/chat/completions", json={**body, "model": "any"})
            for _ in range(requests // 2):
                started = time.perf_counter()
                http.post(backend.base_url + "/v1/chat/completions", json={**body, "model": name}).raise_for_status()
                direct.append(time.perf_counter() - started)
                started = time.perf_counter()
                http.post(url + "/v1/chat/completions", json={**body, "model": "any"}).raise_for_status()
                through.append(time.perf_counter() - started)
                paired.append(through[-1] - direct[-1])
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
    return {"direct p50": percentile(direct, 0.5), "direct p99": percentile(direct, 0.99),
            "gateway p50": percentile(through, 0.5), "gateway p99": percentile(through, 0.99),
            "added p50": percentile(paired, 0.5), "added p99": percentile(paired, 0.99)}


def rollback_under_load(base: Path, adapter: Path, sha256: str, name: str, logs: Path, threads: int,
                        clients: int = 50) -> dict[str, Any]:
    from services.deploy.gateway import Gateway, RunningGateway
    from services.deploy.routing import Pool, Routing, RoutingTable

    blue = start_backend("transformers", base, name, logs / "blue", threads)
    green = start_backend("transformers", base, name, logs / "green", threads)
    green.load_adapter("desk", adapter, sha256)
    pools = {"blue": Pool("blue", (blue.base_url,), name, "bench/v0"),
             "green": Pool("green", (green.base_url,), "desk", "bench/v1")}
    running = RunningGateway(Gateway(RoutingTable(Routing(1, pools, "blue")))).start()
    stop = threading.Event()
    outcomes: list[tuple[int, bool]] = []
    errors: list[str] = []

    def client(n: int) -> None:
        with httpx.Client(timeout=120) as http:
            while not stop.is_set():
                body = {"model": "x", "messages": [{"role": "user", "content": f"{PROMPT} {n}"}], "max_tokens": 8,
                        "temperature": 0, "stream": n % 2 == 0}
                try:
                    if body["stream"]:
                        with http.stream("POST", running.url + "/v1/chat/completions", json=body) as response:
                            lines = [line for line in response.iter_lines() if line.startswith("data: ")]
                            outcomes.append((response.status_code, bool(lines) and lines[-1] == "data: [DONE]"))
                    else:
                        response = http.post(running.url + "/v1/chat/completions", json=body)
                        outcomes.append((response.status_code, response.status_code == 200))
                except httpx.HTTPError as exc:
                    errors.append(type(exc).__name__)

    threads_ = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    try:
        for thread in threads_:
            thread.start()
        time.sleep(5)
        running.call(running.gateway.flip("green", 1, drain_seconds=60))
        time.sleep(5)
        started = time.monotonic()
        result = running.call(running.gateway.rollback(2, drain_seconds=60))
        total = time.monotonic() - started
        time.sleep(3)
    finally:
        stop.set()
        for thread in threads_:
            thread.join(timeout=120)
        running.stop()
        blue.stop()
        green.stop()
    failed = sum(1 for status, complete in outcomes if status != 200 or not complete) + len(errors)
    return {"requests": len(outcomes) + len(errors), "failed": failed, "drained": result.drained,
            "config in force s": total - result.seconds_to_drain, "all traffic on blue s": total}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="tiny")
    parser.add_argument("--backends", default="transformers")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level (at least 2 a client)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; model {args.model}; backends "
          f"{args.backends}; concurrency {args.concurrency}; max_tokens {args.max_tokens}", flush=True)
    with tempfile.TemporaryDirectory(prefix="privtune-bench-serving-") as tmp:
        work = Path(tmp)
        base, adapter, sha, name = setup(args.model, work)
        levels = [int(c) for c in args.concurrency.split(",")]
        rows = []
        for kind in args.backends.split(","):
            backend = start_backend(kind, base, name, work / "logs", args.threads)
            try:
                loads, unloads = hot_load(backend, adapter, sha)
                print(f"{kind}: adapter load median {statistics.median(loads) * 1000:.0f} ms (max "
                      f"{max(loads) * 1000:.0f}), unload median {statistics.median(unloads) * 1000:.0f} ms", flush=True)
                for clients in levels:
                    tps, rps = throughput(backend.base_url, name, clients, args.max_tokens,
                                          max(2, args.requests // clients))
                    rows.append((kind, clients, tps, rps))
                    print(f"{kind}: {clients} clients: {tps:.1f} output tokens/s, {rps:.2f} requests/s", flush=True)
                if kind == "transformers":
                    overhead = gateway_overhead(backend, name, work / "logs")
                    print("gateway vs direct (ms): " + ", ".join(f"{k} {v * 1000:.2f}" for k, v in overhead.items()),
                          flush=True)
            finally:
                backend.stop()
        print("\n| backend | clients | output tokens/s | requests/s |\n| --- | ---: | ---: | ---: |")
        for kind, clients, tps, rps in rows:
            print(f"| {kind} | {clients} | {tps:.1f} | {rps:.2f} |")
        if "vllm" in args.backends and "transformers" in args.backends:
            for clients in levels:
                t = next(r[2] for r in rows if r[0] == "transformers" and r[1] == clients)
                v = next(r[2] for r in rows if r[0] == "vllm" and r[1] == clients)
                print(f"vllm / transformers at {clients} clients: {v / t:.2f}x")
        outcome = rollback_under_load(base, adapter, sha, name, work / "logs", args.threads)
        print("rollback under 50 clients: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                                         for k, v in outcome.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
