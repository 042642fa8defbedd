"""What PostgreSQL itself spends on the training-job API: statements, transactions and WAL per API call.

    .venv/bin/python benchmarks/pg_statements.py [--clients 200] [--seconds 15] [--rate 0] [--top 20]
        [--prefill 200] [--peer]

A private PostgreSQL server (durable commits, as ``benchmarks/scheduler.py`` starts it) with
``pg_stat_statements`` loaded; a platform running the orchestrator only, as in that benchmark, with
``--prefill`` jobs; then ``--clients`` gRPC clients (the benchmark's mix, in a child process; closed
loop, or open loop at ``--rate`` calls/s) for ``--seconds``. Printed, per API call served: the
server's statements by total time (execution plus planning), its transactions (commits) and WAL
bytes, and the CPU of PostgreSQL's backends against the API process's. With ``--peer`` the bare
servicer of ``benchmarks/scheduler.py`` is measured the same way in the same run, after privtune,
on the same database.

The benchmark's machine runs the database, the server and the clients on the same cores, so a
statement PostgreSQL runs for privtune is CPU privtune's own process cannot use.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scheduler import (DURABLE_POSTGRES, _busy_jiffies, api_credentials, drive_clients, prefill_jobs,  # noqa: E402
                       settle, start_bare_server, start_store_platform)

STATEMENTS_SQL = (
    "SELECT calls, total_exec_time, total_plan_time, rows, wal_bytes, query FROM pg_stat_statements "
    "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())")
DATABASE_SQL = ("SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()")


def _snapshot(engine: Any) -> tuple[dict[str, list[float]], tuple[int, int]]:
    from sqlalchemy import text

    with engine.connect() as conn:
        rows = conn.execute(text(STATEMENTS_SQL)).all()
        commits = tuple(conn.execute(text(DATABASE_SQL)).one())
    found: dict[str, list[float]] = {}
    for calls, exec_ms, plan_ms, n, wal, query in rows:
        key = " ".join(query.split())
        acc = found.setdefault(key, [0.0, 0.0, 0.0, 0.0, 0.0])
        for i, value in enumerate((calls, exec_ms, plan_ms, n, float(wal or 0))):
            acc[i] += value
    return found, commits  # type: ignore[return-value]


def _server_cpu_s(data_dir: Path) -> float:
    """CPU seconds of the PostgreSQL server whose data directory is ``data_dir``: the postmaster (named in
    its ``postmaster.pid``, with its reaped children's time: backends whose connections closed) and every
    live child (backends, WAL writer, checkpointer, autovacuum), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    postmaster = (data_dir / "postmaster.pid").read_text().split("\n", 1)[0].strip()
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if pid == postmaster or fields[1] == postmaster:
            total += sum(int(v) for v in fields[11:15]) / ticks  # user, system, and reaped children's
    return total


def measure(label: str, engine: Any, data_dir: Path, target: str, credentials: Any, job_ids: list[str], request: Any,
            args: argparse.Namespace) -> None:
    from sqlalchemy import text

    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_statements_reset()"))
        conn.commit()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        child.submit(int, 0).result()
        before, commits0 = _snapshot(engine)
        pg0, own0, (busy0, total0) = _server_cpu_s(data_dir), time.process_time(), _busy_jiffies()
        samples, client_cpu, _started = child.submit(
            drive_clients, target, *credentials, job_ids, request.SerializeToString(), args.clients, args.seconds,
            0, args.rate).result()
        pg1, own1, (busy1, total1) = _server_cpu_s(data_dir), time.process_time(), _busy_jiffies()
        after, commits1 = _snapshot(engine)
    calls = sum(1 for s in samples if s[3] in ("OK", "REJECTED"))
    per = 1000 / max(1, calls)
    machine = (busy1 - busy0) / max(1, total1 - total0) * (os.cpu_count() or 1)
    print(f"\n## {label}: {calls:,} calls in {args.seconds:g} s ({calls / args.seconds:,.1f} calls/s)\n")
    print(f"- CPU per API call: the API process {(own1 - own0) * per:.2f} ms, PostgreSQL's processes "
          f"{(pg1 - pg0) * per:.2f} ms, the clients {client_cpu * per:.2f} ms; whole machine {machine:.2f} cores busy")
    print(f"- transactions per API call: {(commits1[0] - commits0[0]) / max(1, calls):.2f} committed, "
          f"{(commits1[1] - commits0[1]) / max(1, calls):.2f} rolled back")
    rows = []
    for query, (n, exec_ms, plan_ms, nrows, wal) in after.items():
        was = before.get(query, [0.0] * 5)
        d = [n - was[0], exec_ms - was[1], plan_ms - was[2], nrows - was[3], wal - was[4]]
        if d[0] > 0:
            rows.append((query, d))
    spent = sum(d[1] + d[2] for _q, d in rows)
    wal = sum(d[4] for _q, d in rows)
    print(f"- statements per API call: {sum(d[0] for _q, d in rows) / max(1, calls):.2f}, their time "
          f"(execution + planning, wall) {spent / max(1, calls):.3f} ms, WAL {wal / max(1, calls):,.0f} bytes\n")
    print("| statement | calls per API call | ms per API call (exec + plan) | share | rows per call of it "
          "| WAL bytes per API call |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for query, d in sorted(rows, key=lambda r: -(r[1][1] + r[1][2]))[:args.top]:
        shown = query if len(query) <= 110 else query[:107] + "..."
        print(f"| `{shown.replace('|', '/')}` | {d[0] / max(1, calls):.3f} | {(d[1] + d[2]) / max(1, calls):.4f} | "
              f"{(d[1] + d[2]) / max(1e-9, spent):.0%} | {d[3] / max(1, d[0]):.1f} | {d[4] / max(1, calls):,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=0.0, help="open loop at this many calls/s in all (0: closed)")
    parser.add_argument("--prefill", type=int, default=200)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--peer", action="store_true", help="measure the bare servicer too, after privtune")
    args = parser.parse_args()

    from privtune.devinfra.postgres import PostgresServer
    from tests.orchestrator_fixtures import job_request, register_version
    from tests.training_fixtures import make_models

    settings = {**DURABLE_POSTGRES, "shared_preload_libraries": "pg_stat_statements",
                "pg_stat_statements.track": "all", "track_counts": "on"}
    with tempfile.TemporaryDirectory(prefix="privtune-pgstat-") as tmp, contextlib.ExitStack() as stack:
        models = make_models(Path(tmp) / "models")
        server = stack.enter_context(PostgresServer(settings=settings))
        uri = server.create_database("pg_statements")
        platform = start_store_platform(Path(tmp) / "pg", uri, models)
        try:
            from sqlalchemy import text

            with platform.engine.connect() as conn:
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
                conn.commit()
            request = job_request(register_version(platform.engine, platform.config.storage_uri), name="pgstat")
            job_ids = prefill_jobs(platform, request, args.prefill)
            settle(platform)
            credentials = api_credentials(platform)
            measure("privtune", platform.engine, server.data_dir, platform.grpc_target, credentials, job_ids, request,
                    args)
            if args.peer:
                settle(platform)
                bare, port = start_bare_server(platform.engine, platform.config.pki_dir)
                try:
                    measure("bare peer", platform.engine, server.data_dir, f"127.0.0.1:{port}", credentials, job_ids,
                            request, args)
                finally:
                    bare.stop(1).wait()
        finally:
            platform.stop()


if __name__ == "__main__":
    main()
