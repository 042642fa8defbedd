"""CLI clients of the model registry, lineage and experiment APIs (gRPC); output is JSON.

    privtune registry versions [MODEL]
    privtune registry get MODEL/vN | MODEL@ALIAS
    privtune registry alias MODEL ALIAS VERSION --reason WHY     (--remove instead of VERSION)
    privtune registry history MODEL [--alias ALIAS]
    privtune lineage --deployment ID | --model-version MODEL/vN | --job JOB_ID
    privtune runs list [--tag KEY=VALUE ...] | get JOB_ID | compare JOB_ID JOB_ID ...
    privtune runs export JOB_ID --mlflow-uri URI

Each takes ``--tenant`` (required), ``--actor`` and ``--target`` (default 127.0.0.1:50051).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from privtune.cli_client import call_metadata, client_args, client_channel, print_message, print_rpc_error





def _call(args: argparse.Namespace, action: Any) -> int:
    """Run ``action(registry_stub, experiment_stub, metadata)``, print its JSON, map RPC errors to exit 1."""
    import grpc

    from privtune.v1 import registry_service_pb2_grpc as pb_grpc

    if not args.tenant:
        print("error: --tenant is required", file=sys.stderr)
        return 2
    channel = client_channel(args.target)
    try:
        result = action(pb_grpc.ModelRegistryServiceStub(channel), pb_grpc.ExperimentServiceStub(channel),
                        call_metadata(args))
    except grpc.RpcError as exc:
        print_rpc_error(exc)
        return 1
    finally:
        channel.close()
    if result is not None:
        print_message(result)
    return 0


def cmd_registry(args: argparse.Namespace) -> int:
    from privtune.v1 import registry_service_pb2 as pb

    def action(registry: Any, _experiments: Any, md: list[tuple[str, str]]) -> Any:
        if args.action == "versions":
            return registry.ListModelVersions(pb.ListModelVersionsRequest(
                model_name=args.model or "", page_size=args.page_size, page_token=args.page_token or ""),
                metadata=md, timeout=30)
        if args.action == "get":
            return registry.GetModelVersion(pb.GetModelVersionRequest(model_version_id=args.id), metadata=md,
                                            timeout=30).model_version
        if args.action == "alias":
            return registry.SetModelAlias(pb.SetModelAliasRequest(
                model_name=args.model, alias=args.alias, model_version_id="" if args.remove else args.version,
                reason=args.reason), metadata=md, timeout=30).model_version
        return registry.ListAliasHistory(pb.ListAliasHistoryRequest(model_name=args.model, alias=args.alias or ""),
                                         metadata=md, timeout=30)

    if args.action == "alias" and not args.remove and not args.version:
        print("error: give the VERSION to point the alias at, or --remove", file=sys.stderr)
        return 2
    return _call(args, action)


def cmd_lineage(args: argparse.Namespace) -> int:
    from privtune.v1 import registry_service_pb2 as pb

    request = pb.GetLineageRequest(deployment_id=args.deployment) if args.deployment else \
        pb.GetLineageRequest(model_version_id=args.model_version) if args.model_version else \
        pb.GetLineageRequest(job_id=args.job)
    return _call(args, lambda registry, _e, md: registry.GetLineage(request, metadata=md, timeout=30).lineage)


def cmd_runs(args: argparse.Namespace) -> int:
    from privtune.v1 import registry_service_pb2 as pb

    def action(registry: Any, experiments: Any, md: list[tuple[str, str]]) -> Any:
        if args.action == "list":
            tags = dict(item.partition("=")[::2] for item in args.tag or [])
            return experiments.ListRuns(pb.ListRunsRequest(tags=tags, page_size=args.page_size,
                                                           page_token=args.page_token or ""), metadata=md, timeout=30)
        if args.action == "get":
            return experiments.GetRun(pb.GetRunRequest(run_id=args.id), metadata=md, timeout=30).run
        if args.action == "compare":
            return experiments.CompareRuns(pb.CompareRunsRequest(run_ids=args.ids), metadata=md, timeout=60)
        return _export(args, registry, experiments, md)

    return _call(args, action)


def _export(args: argparse.Namespace, registry: Any, experiments: Any, md: list[tuple[str, str]]) -> None:
    """Fetch the run over gRPC and export it from here: only parameters, metrics and hashes travel."""
    import grpc

    from privtune.v1 import registry_service_pb2 as pb
    from services.orchestrator.mlflow_export import export_run
    from services.orchestrator.registry_grpc import run_from_proto

    run = experiments.GetRun(pb.GetRunRequest(run_id=args.id), metadata=md, timeout=30).run
    config_sha256 = requested_by = ""
    try:  # the run message has no config hash; lineage has it once the dataset chain is known
        found = registry.GetLineage(pb.GetLineageRequest(job_id=args.id), metadata=md, timeout=30).lineage
        config_sha256, requested_by = found.config_sha256, found.requested_by
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
    try:
        mlflow_run_id = export_run(run_from_proto(run, args.tenant, config_sha256, requested_by), args.mlflow_uri)
    except Exception as exc:  # noqa: BLE001 - MLflow's own errors say what is wrong with the server or URI
        print(f"error: exporting run {args.id} to {args.mlflow_uri} failed: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(json.dumps({"run_id": args.id, "mlflow_run_id": mlflow_run_id, "tracking_uri": args.mlflow_uri}))


def _leaf(subparsers: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(name, **kwargs)
    client_args(p, leaf=True)
    return p


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``registry``, ``lineage`` and ``runs`` to the ``privtune`` parser's subcommands."""
    reg = sub.add_parser("registry", help="model registry API client (gRPC): versions, aliases, alias history")
    client_args(reg)
    rsub = reg.add_subparsers(dest="action", required=True)
    p = _leaf(rsub, "versions", help="list model versions (of one model, or all)")
    p.add_argument("model", nargs="?")
    p.add_argument("--page-size", type=int, default=50)
    p.add_argument("--page-token")
    p = _leaf(rsub, "get", help="one version: MODEL/vN or MODEL@ALIAS")
    p.add_argument("id")
    p = _leaf(rsub, "alias", help="point an alias (staging, production, ...) at a version")
    p.add_argument("model")
    p.add_argument("alias")
    p.add_argument("version", nargs="?", help="MODEL/vN, vN or N")
    p.add_argument("--reason", required=True, help="why; kept in the alias history")
    p.add_argument("--remove", action="store_true", help="remove the alias instead")
    p = _leaf(rsub, "history", help="who moved which alias to which version, when and why")
    p.add_argument("model")
    p.add_argument("--alias", help="only this alias")
    reg.set_defaults(func=cmd_registry)

    lin = sub.add_parser("lineage", help="deployment -> model version -> job -> dataset version -> raw data")
    client_args(lin)
    group = lin.add_mutually_exclusive_group(required=True)
    group.add_argument("--deployment")
    group.add_argument("--model-version")
    group.add_argument("--job")
    lin.set_defaults(func=cmd_lineage)

    runs = sub.add_parser("runs", help="experiment tracker API client (gRPC): runs, learning curves, MLflow export")
    client_args(runs)
    usub = runs.add_subparsers(dest="action", required=True)
    p = _leaf(usub, "list")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="only runs with this tag (repeatable)")
    p.add_argument("--page-size", type=int, default=50)
    p.add_argument("--page-token")
    p = _leaf(usub, "get")
    p.add_argument("id", help="run id (= training job id)")
    p = _leaf(usub, "compare", help="runs side by side: differing parameters and learning curves")
    p.add_argument("ids", nargs="+")
    p = _leaf(usub, "export", help="export a run to an MLflow tracking server")
    p.add_argument("id")
    p.add_argument("--mlflow-uri", required=True, help="MLflow tracking URI, e.g. http://mlflow:5000 or "
                                                       "sqlite:///mlflow.db")
    runs.set_defaults(func=cmd_runs)
