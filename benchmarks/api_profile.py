"""Where a training-job API call's time goes: a deterministic profile of each call alone, and a
sampled profile of the server under the benchmark's load.

    .venv/bin/python benchmarks/api_profile.py [--store sqlite|postgresql] [--calls 200] [--top 25]
        [--load-seconds 10] [--clients 200]

For the chosen store a platform runs in this process exactly as ``benchmarks/scheduler.py`` starts
it (orchestrator only, TLS, bearer tokens, 200 prefilled jobs). Then:

1. **Alone**: ``--calls`` sequential calls of each of GetTrainingJob, ListTrainingJobs and
   CreateTrainingJob from one client. Each call is profiled with ``cProfile`` in the server thread
   that serves it, from the authentication interceptor to the handler's return (authentication,
   role check, limits, error mapping, the handler, the access record). Printed: mean ms per call
   and the functions with the most cumulative time per call.
2. **Under load** (``--load-seconds`` > 0): ``--clients`` closed-loop clients (the benchmark's mix,
   in a child process) while a sampler thread reads every server thread's stack every 2 ms. Printed:
   per function, the share of busy gRPC-thread samples whose stack contains it (inclusive), so
   waits for the GIL, a lock or the store show up as time in whatever is waiting.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import cProfile
import io
import pstats
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scheduler import (API_OPERATIONS, DURABLE_POSTGRES, api_credentials, drive_clients,  # noqa: E402
                                  prefill_jobs, start_store_platform)


@contextlib.contextmanager
def profiled_calls(cpu: bool = False) -> Iterator[cProfile.Profile]:
    """One profiler that every authenticated unary call enables in its own thread (calls must not overlap);
    timed by the wall clock, or with ``cpu`` by the thread's CPU clock (waits for the store then cost nothing)."""
    from services.common.auth.grpc_auth import AuthInterceptor

    profile = cProfile.Profile(time.thread_time) if cpu else cProfile.Profile()
    original = AuthInterceptor._unary

    def _unary(self: Any, method: str, inner: Any) -> Any:
        call = original(self, method, inner)

        def timed(request: Any, context: Any) -> Any:
            profile.enable()
            try:
                return call(request, context)
            finally:
                profile.disable()
        return timed

    AuthInterceptor._unary = _unary  # type: ignore[method-assign]
    try:
        yield profile
    finally:
        AuthInterceptor._unary = original  # type: ignore[method-assign]


LOOP_THREADS = ("consumer-", "outbox-relay", "access-recorder", "orchestrator-worker", "grpc")


@contextlib.contextmanager
def profiled_loops() -> Iterator[dict[str, cProfile.Profile]]:
    """A CPU-time profiler (``time.thread_time``) in each background loop thread started inside: consumers,
    the relay, the access recorder, the controller's workers, and the gRPC server's worker threads (handlers,
    interceptors, grpcio's own Python). Read them with ``loop_stats`` (no disable)."""
    profiles: dict[str, cProfile.Profile] = {}

    def hook(_frame: Any, _event: str, _arg: Any) -> None:
        name = threading.current_thread().name
        if name.startswith(LOOP_THREADS):
            profiles[name] = profile = cProfile.Profile(time.thread_time)
            profile.enable()  # replaces this hook in this thread
        else:
            sys.setprofile(None)

    threading.setprofile(hook)
    try:
        yield profiles
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]


def loop_stats(profiles: dict[str, cProfile.Profile]) -> dict[str, dict[tuple[str, int, str], tuple[float, float, int]]]:
    """Per thread: (file, line, function) -> (cumulative s, own s, calls) so far, read while they run."""
    found: dict[str, dict[tuple[str, int, str], tuple[float, float, int]]] = {}
    for name, profile in list(profiles.items()):
        rows = {}
        for entry in profile.getstats():  # type: ignore[attr-defined]
            code = entry.code
            key = (code.co_filename, code.co_firstlineno, code.co_name) if hasattr(code, "co_name") \
                else ("~", 0, str(code))
            total, own, calls = rows.get(key, (0.0, 0.0, 0))
            rows[key] = (total + entry.totaltime, own + entry.inlinetime, calls + entry.callcount)
        found[name] = rows
    return found


def thread_family(name: str) -> str:
    """The row a thread's time is summed under: grpcio's pool as one, the others by name."""
    return "grpc worker threads" if name.startswith("grpc") else name.split(" (")[0]


def print_loop_profile(before: dict, after: dict, calls: int, top: int) -> None:
    """What each loop family spent its CPU on between two ``loop_stats``, per API call served."""
    families: dict[str, dict[tuple[str, int, str], list[float]]] = collections.defaultdict(
        lambda: collections.defaultdict(lambda: [0.0, 0.0, 0.0]))
    for name, rows in after.items():
        family = "orchestrator-worker" if name.startswith("orchestrator-worker") else thread_family(name)
        for key, (total, own, n) in rows.items():
            was = before.get(name, {}).get(key, (0.0, 0.0, 0))
            acc = families[family][key]
            acc[0] += total - was[0]
            acc[1] += own - was[1]
            acc[2] += n - was[2]
    per_call = 1000 / max(1, calls)
    for family, rows in sorted(families.items(), key=lambda kv: -max(v[0] for v in kv[1].values())):
        spent = max(v[0] for v in rows.values())  # the loop's own entry point covers everything it did
        if spent * per_call < 0.02:
            continue
        print(f"\n#### {family}: {spent * per_call:.2f} ms of CPU per API call (with cProfile's overhead)\n")
        print("| function | cumulative ms per API call | own ms per API call | calls per API call |")
        print("| --- | ---: | ---: | ---: |")
        shown = 0
        for (path, line, name), (total, own, n) in sorted(rows.items(), key=lambda kv: -kv[1][0]):
            where = _short(path)
            if "threading.py" in where or "supervision.py" in where and name != "run_loop" or where == "~":
                continue
            print(f"| `{where}:{line} {name}` | {total * per_call:.3f} | {own * per_call:.3f} | {n / max(1, calls):.2f} |")
            shown += 1
            if shown >= top:
                break


def alone(platform: Any, request: Any, job_ids: list[str], calls: int, top: int, cpu: bool = False) -> None:
    import grpc

    from privtune.v1 import training_service_pb2 as pb
    from privtune.v1 import training_service_pb2_grpc as pb_grpc

    ca_pem, metadata = api_credentials(platform)
    stub = pb_grpc.TrainingServiceStub(grpc.secure_channel(platform.grpc_target, grpc.ssl_channel_credentials(ca_pem)))
    calls_by_op = {
        "GetTrainingJob": lambda n: stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=job_ids[n % len(job_ids)]),
                                                        metadata=metadata, timeout=60),
        "ListTrainingJobs": lambda n: stub.ListTrainingJobs(pb.ListTrainingJobsRequest(page_size=50),
                                                            metadata=metadata, timeout=60),
        "CreateTrainingJob": lambda n: stub.CreateTrainingJob(_named(request, f"profile-{n}"), metadata=metadata,
                                                              timeout=60),
    }
    for op in API_OPERATIONS:
        for n in range(5):
            calls_by_op[op](n)  # warm caches and connections outside the profile
        with profiled_calls(cpu) as profile:
            begin = time.perf_counter()
            for n in range(calls):
                calls_by_op[op](n)
            client_ms = (time.perf_counter() - begin) / calls * 1000
        stats = pstats.Stats(profile, stream=(out := io.StringIO()))
        total = sum(v[3] for v in stats.stats.values() if v[4] == {}) or 1e-9  # type: ignore[attr-defined]
        print(f"\n### {op} alone: {calls} calls, {client_ms:.2f} ms per call as the client saw it, "
              f"{total / calls * 1000:.2f} ms {'of CPU ' if cpu else ''}per call profiled in the server "
              "(with cProfile's overhead)\n")
        print("| function | cumulative ms per call | share | calls per call |")
        print("| --- | ---: | ---: | ---: |")
        rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][3])  # type: ignore[attr-defined]
        shown = 0
        for (path, line, name), (_cc, nc, _tt, ct, _callers) in rows:
            where = _short(path)
            if where.startswith("~") or "cProfile" in where or name in ("timed", "call") and "grpc_auth" in where:
                continue
            print(f"| `{where}:{line} {name}` | {ct / calls * 1000:.2f} | {ct / total:.0%} | {nc / calls:.1f} |")
            shown += 1
            if shown >= top:
                break
        print(f"\n{op}: the functions with the most time of their own (without what they call)\n")
        print("| function | own ms per call | share |")
        print("| --- | ---: | ---: |")
        for (path, line, name), (_cc, nc, tt, _ct, _callers) in sorted(
                stats.stats.items(), key=lambda kv: -kv[1][2])[:top // 2]:  # type: ignore[attr-defined]
            print(f"| `{_short(path)}:{line} {name}` | {tt / calls * 1000:.2f} | {tt / total:.0%} |")
        del out


def _named(request: Any, name: str) -> Any:
    from privtune.v1 import training_service_pb2 as pb

    named = pb.CreateTrainingJobRequest()
    named.CopyFrom(request)
    named.spec.name = name
    return named


def _short(path: str) -> str:
    for marker in ("site-packages/", "/services/", "/privtune/", "/benchmarks/"):
        if marker in path:
            head = "" if marker == "site-packages/" else marker.strip("/") + "/"
            return head + path.split(marker, 1)[1]
    return path


def under_load(platform: Any, request: Any, job_ids: list[str], clients: int, seconds: float, top: int,
               loops: dict[str, cProfile.Profile] | None = None) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    counts: collections.Counter[str] = collections.Counter()
    states: collections.Counter[str] = collections.Counter()
    samples = [0]
    stop = threading.Event()
    me = threading.get_ident()

    def sample() -> None:
        names = {}
        while not stop.is_set():
            frames = sys._current_frames()
            for ident, frame in frames.items():
                if ident == me or ident == threading.get_ident():
                    continue
                if ident not in names:
                    names = {t.ident: t.name for t in threading.enumerate()}
                if not str(names.get(ident, "")).startswith("grpc"):
                    continue
                seen, stack = set(), []
                f = frame
                while f is not None:
                    key = f"{_short(f.f_code.co_filename)}:{f.f_code.co_name}"
                    if key not in seen:
                        seen.add(key)
                        stack.append(key)
                    f = f.f_back
                if any("thread.py:_worker" in k for k in stack[:2]) or "queue.py:get" in stack[0]:
                    states["idle (waiting for a call)"] += 1
                    continue
                samples[0] += 1
                for key in stack:
                    counts[key] += 1
            time.sleep(0.002)

    def thread_cpu() -> dict[str, float]:
        """CPU seconds of every live thread of this process, summed by thread-name family."""
        found: dict[str, float] = collections.defaultdict(float)
        for thread in threading.enumerate():
            try:
                seconds = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))  # type: ignore[arg-type]
            except (OSError, TypeError):
                continue
            found[thread_family(thread.name)] += seconds
        return found

    sampler = threading.Thread(target=sample, daemon=True, name="benchmark stack sampler")
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        child.submit(int, 0).result()
        cpu_before, process_before = thread_cpu(), time.process_time()
        loops_before = loop_stats(loops or {})
        if loops is None:
            sampler.start()
        result = child.submit(drive_clients, platform.grpc_target, *api_credentials(platform), job_ids,
                              request.SerializeToString(), clients, seconds, 0)
        samples_, _cpu, _started = result.result()
        cpu_after, process_after = thread_cpu(), time.process_time()
        loops_after = loop_stats(loops or {})
        stop.set()
    if loops is None:
        sampler.join()
    process_cpu = process_after - process_before
    print(f"\n### Under load: where the server process's CPU went ({process_cpu:.1f} CPU-seconds in {seconds:g} s, "
          f"{len(samples_):,} calls: {process_cpu / max(1, len(samples_)) * 1000:.2f} ms per call)\n")
    print("| threads | CPU s | share | ms per call |")
    print("| --- | ---: | ---: | ---: |")
    spent = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}
    named = sum(spent.values())
    for name, cpu in sorted(spent.items(), key=lambda kv: -kv[1]):
        if cpu >= 0.01:
            print(f"| {name} | {cpu:.2f} | {cpu / process_cpu:.0%} | {cpu / max(1, len(samples_)) * 1000:.2f} |")
    print(f"| (threads without a Python name: grpcio's own, C) | {process_cpu - named:.2f} | "
          f"{(process_cpu - named) / process_cpu:.0%} | {(process_cpu - named) / max(1, len(samples_)) * 1000:.2f} |")
    if loops is not None:
        print(f"\n### Under load: what the background loops spent their CPU on ({len(samples_):,} calls)")
        print_loop_profile(loops_before, loops_after, len(samples_), top)
        return
    busy = samples[0] or 1
    print(f"\n### Under load: {clients} clients for {seconds:g} s, {len(samples_):,} calls; {busy:,} busy gRPC-thread "
          f"stack samples ({states['idle (waiting for a call)']:,} idle)\n")
    print("| function (inclusive) | share of busy samples |")
    print("| --- | ---: |")
    shown = 0
    for key, count in counts.most_common():
        if "threading.py" in key or "thread.py" in key or "_server.py" in key:
            continue
        print(f"| `{key}` | {count / busy:.0%} |")
        shown += 1
        if shown >= top:
            break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--load-seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--prefill", type=int, default=200)
    parser.add_argument("--cpu", action="store_true",
                        help="profile the calls alone by CPU time (time.thread_time) instead of wall time")
    parser.add_argument("--loops", action="store_true",
                        help="under load, profile the background loops (consumers, relay, access recorder, "
                             "controller) and the gRPC worker threads with cProfile's CPU clock instead of "
                             "sampling the gRPC threads")
    args = parser.parse_args()

    from privtune.devinfra.postgres import PostgresServer
    from tests.orchestrator_fixtures import job_request, register_version
    from tests.training_fixtures import make_models

    with tempfile.TemporaryDirectory(prefix="privtune-profile-") as tmp, contextlib.ExitStack() as stack:
        models = make_models(Path(tmp) / "models")
        if args.store == "sqlite":
            uri = f"sqlite:///{tmp}/sqlite/privtune.db"
        else:
            uri = stack.enter_context(PostgresServer(settings=DURABLE_POSTGRES)).create_database("profile")
        # (threads started later too: grpcio's pool starts its workers as calls arrive)
        loops = stack.enter_context(profiled_loops()) if args.loops else None
        platform = start_store_platform(Path(tmp) / args.store, uri, models)
        try:
            request = job_request(register_version(platform.engine, platform.config.storage_uri), name="profile")
            job_ids = prefill_jobs(platform, request, args.prefill)
            print(f"## {args.store}: the training-job API profiled ({args.prefill} jobs prefilled)")
            if args.calls > 0:
                alone(platform, request, job_ids, args.calls, args.top, args.cpu)
            if args.load_seconds > 0:
                under_load(platform, request, job_ids, args.clients, args.load_seconds, args.top, loops)
        finally:
            platform.stop()


if __name__ == "__main__":
    main()
