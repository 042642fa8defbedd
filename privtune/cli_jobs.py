"""CLI clients of the training-job API (gRPC); output is JSON (watch: one event per line).

    privtune jobs create --name N --base-model M --dataset-version DV [--method lora] [--pool P] [--gpus 2]
                         [--priority 10] [--dp-epsilon 4] [--set learning_rate=1e-4 ...] [--tag k=v ...] [--wait]
    privtune jobs create --request job.yaml            (TrainingJobSpec fields as YAML/JSON)
    privtune jobs get ID | list [--state queued] | cancel ID [--reason WHY] | watch ID
    privtune jobs ledger [--month 2026-11]
    privtune estimate  (same flags as create)          memory, GPU-hours, cost, epsilon and policy verdict
    privtune jobs render-k8s (same flags) --k8s-settings k8s.yaml [--pool P]
                                                       the Kubernetes objects a job would run as (validated)

Each takes ``--tenant`` (required), ``--actor`` and ``--target`` (default 127.0.0.1:50051).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from privtune.cli_client import DEFAULT_TARGET, call_metadata, client_channel, print_message, print_rpc_error

STATES = ("requested", "rejected", "queued", "scheduled", "running", "succeeded", "failed", "cancelled", "preempted")


def _client(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", default=DEFAULT_TARGET, help="gRPC address of the platform")
    p.add_argument("--tenant", required=True)
    p.add_argument("--actor", default="cli")


def _request_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--request", help="YAML or JSON file with TrainingJobSpec fields (see docs/api.md)")
    p.add_argument("--name")
    p.add_argument("--base-model", help="model id in the base-model store (privtune models list)")
    p.add_argument("--dataset-version", help="dataset_version_id from curation")
    p.add_argument("--method", choices=["full", "lora", "qlora", "prompt_tuning", "dpo", "continued_pretraining"],
                   help="default: the tenant policy's default for the model's size")
    p.add_argument("--pool", help="GPU pool (default: the platform's default pool)")
    p.add_argument("--gpus", type=int, default=0, help="accelerators at once (data-parallel processes)")
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--dp-epsilon", type=float, help="train with DP-SGD to this target epsilon")
    p.add_argument("--dp-delta", type=float, default=1e-5)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="TrainingJobSpec field, e.g. max_steps=100, lora.r=16 or options.checkpoint_every=10 "
                        "(repeatable; see docs/training.md)")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="experiment tag (repeatable)")


# TrainingSpec names a --set may use, and where they live in a TrainingJobSpec
SPEC_ALIASES = {
    **{name: f"hyperparameters.{name}" for name in (
        "learning_rate", "epochs", "micro_batch_size", "gradient_accumulation_steps", "max_seq_length",
        "warmup_steps", "max_grad_norm", "seed", "max_steps", "packing")},
    **{name: f"options.{name}" for name in (
        "weight_decay", "num_virtual_tokens", "dpo_beta", "checkpoint_every", "keep_last_checkpoints", "eval_every",
        "divergence_factor", "memory_limit_mb", "merge_weights")},
    "lora": "lora_config",
}


def build_spec(args: argparse.Namespace) -> Any:
    """A TrainingJobSpec from ``--request`` plus flags (flags win).

    Raises:
        BadFlag: a --set key or value that does not fit the spec.
    """
    import yaml

    from privtune.cli_fields import entries_to_dict, merge_dict
    from privtune.v1 import events_pb2
    from privtune.v1 import training_service_pb2 as pb

    spec = pb.TrainingJobSpec()
    if args.request:
        merge_dict(spec, yaml.safe_load(Path(args.request).read_text()) or {}, flag=args.request)
    for flag, field in (("name", "name"), ("base_model", "base_model_id"), ("dataset_version", "dataset_version_id"),
                        ("pool", "gpu_pool")):
        if getattr(args, flag):
            setattr(spec, field, getattr(args, flag))
    if args.method:
        spec.method = getattr(events_pb2, f"TRAINING_METHOD_{args.method.upper()}")
    spec.gpus = args.gpus or spec.gpus
    spec.priority = args.priority or spec.priority
    if args.dp_epsilon:
        spec.dp.CopyFrom(events_pb2.DifferentialPrivacy(enabled=True, target_epsilon=args.dp_epsilon,
                                                        target_delta=args.dp_delta))
    merge_dict(spec, entries_to_dict(args.set, SPEC_ALIASES))
    for item in args.tag:
        key, _, value = item.partition("=")
        spec.experiment_tags[key] = value
    return spec


def build_request(args: argparse.Namespace) -> Any:
    """A CreateTrainingJobRequest: the spec from ``--request`` and flags."""
    from privtune.v1 import training_service_pb2 as pb

    return pb.CreateTrainingJobRequest(spec=build_spec(args))


def _call(args: argparse.Namespace, action: Callable[[Any, list[tuple[str, str]]], int]) -> int:
    import grpc

    from privtune.cli_fields import BadFlag
    from privtune.v1 import training_service_pb2_grpc as pb_grpc

    stub = pb_grpc.TrainingServiceStub(client_channel(args.target))
    try:
        return action(stub, call_metadata(args))
    except BadFlag as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        print_rpc_error(exc)
        return 1


def _watch(stub: Any, md: list[tuple[str, str]], job_id: str) -> int:
    from google.protobuf.json_format import MessageToDict

    from privtune.v1 import training_service_pb2 as pb

    last = ""
    for item in stub.WatchTrainingJob(pb.WatchTrainingJobRequest(job_id=job_id), metadata=md):
        env = item.event
        last = env.WhichOneof("payload") or ""
        print(json.dumps(MessageToDict(env, preserving_proto_field_name=True), sort_keys=True), flush=True)
    return 0 if last == "training_completed" else 1


def cmd_jobs(args: argparse.Namespace) -> int:
    from privtune.v1 import training_service_pb2 as pb

    def act(stub: Any, md: list[tuple[str, str]]) -> int:
        if args.action == "create":
            job = stub.CreateTrainingJob(build_request(args), metadata=md, timeout=120).job
            print_message(job)
            if job.state == pb.TRAINING_JOB_STATE_REJECTED:
                return 3
            return _watch(stub, md, job.job_id) if args.wait else 0
        if args.action == "get":
            print_message(stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=args.id), metadata=md, timeout=30).job)
        elif args.action == "list":
            state = getattr(pb, f"TRAINING_JOB_STATE_{args.state.upper()}") if args.state else 0
            print_message(stub.ListTrainingJobs(pb.ListTrainingJobsRequest(page_size=args.page_size, state=state),
                                         metadata=md, timeout=30))
        elif args.action == "cancel":
            print_message(stub.CancelTrainingJob(pb.CancelTrainingJobRequest(job_id=args.id, reason=args.reason),
                                                 metadata=md, timeout=30).job)
        elif args.action == "watch":
            return _watch(stub, md, args.id)
        elif args.action == "ledger":
            print_message(stub.GetPrivacyLedger(pb.GetPrivacyLedgerRequest(month=args.month or ""), metadata=md,
                                                timeout=30).ledger)
        return 0

    return _call(args, act)


def cmd_estimate(args: argparse.Namespace) -> int:
    def act(stub: Any, md: list[tuple[str, str]]) -> int:
        from privtune.v1 import events_pb2
        from privtune.v1 import training_service_pb2 as pb

        result = stub.EstimateTrainingJob(pb.EstimateTrainingJobRequest(spec=build_spec(args)), metadata=md,
                                          timeout=120)
        print_message(result)
        e = result.estimate
        gib = 1024 ** 3
        method = events_pb2.TrainingMethod.Name(result.method).removeprefix("TRAINING_METHOD_").lower()
        print(f"\n{method} on {e.gpu_type}: peak {e.peak_memory_bytes / gib:.2f} GiB of "
              f"{e.gpu_memory_bytes / gib:.0f} GiB per device ({'fits' if e.fits else 'does NOT fit'}); "
              f"{e.tokens:,} tokens, {e.gpu_hours:.3f} GPU-hours, ${e.cost_usd:.2f}"
              + (f"; epsilon {e.planned_epsilon:.3f}" if e.planned_epsilon else ""), file=sys.stderr)
        for v in result.violations:
            print(f"REFUSED by {v.rule}: {v.reason}\n  to comply: {v.remedy}", file=sys.stderr)
        return 3 if result.violations else 0

    return _call(args, act)


def cmd_render_k8s(args: argparse.Namespace) -> int:
    """Render (and validate) the Kubernetes objects of a job spec, offline."""
    import yaml

    from services.common.training_spec import TrainingSpec
    from services.orchestrator.executors.kubernetes import (KubernetesSettings, dump_manifests, render_job,
                                                            validate_manifests)
    from services.orchestrator.settings import load_pools

    spec = TrainingSpec.model_validate_json(Path(args.spec).read_text())
    pools = load_pools(Path(args.pools))
    if args.pool not in pools:
        print(f"error: pool {args.pool!r} is not in {args.pools} ({', '.join(sorted(pools))})", file=sys.stderr)
        return 2
    settings = KubernetesSettings.model_validate(yaml.safe_load(Path(args.k8s_settings).read_text()))
    pool = pools[args.pool]
    manifests = render_job(spec.job_id, spec.tenant_id, spec, pool, pool.gpu_type, settings, spec.dataset_uri, 1)
    validate_manifests(manifests)
    print(dump_manifests(manifests))
    return 0


def add_commands(sub: Any) -> None:
    jobs = sub.add_parser("jobs", help="training-job API client (gRPC): create, get, list, cancel, watch, ledger")
    jsub = jobs.add_subparsers(dest="action", required=True)
    p = jsub.add_parser("create", help="submit a training job (policy, budget and quota checked first)")
    _client(p)
    _request_args(p)
    p.add_argument("--wait", action="store_true", help="stream the job's events until it finishes")
    p = jsub.add_parser("get")
    _client(p)
    p.add_argument("id")
    p = jsub.add_parser("list")
    _client(p)
    p.add_argument("--state", choices=STATES)
    p.add_argument("--page-size", type=int, default=50)
    p = jsub.add_parser("cancel", help="cancel a job (a running one checkpoints first)")
    _client(p)
    p.add_argument("id")
    p.add_argument("--reason", default="")
    p = jsub.add_parser("watch", help="stream a job's events until it finishes")
    _client(p)
    p.add_argument("id")
    p = jsub.add_parser("ledger", help="the tenant's privacy ledger (monthly epsilon)")
    _client(p)
    p.add_argument("--month", help="YYYY-MM (default: this month)")
    jobs.set_defaults(func=cmd_jobs)
    p = jsub.add_parser("render-k8s", help="print the validated Kubernetes objects a job spec would run as")
    p.add_argument("spec", help="TrainingSpec JSON (job_id, tenant_id, dataset_uri, ...)")
    p.add_argument("--pools", required=True, help="pool file (see deploy/pools.example.yaml)")
    p.add_argument("--pool", required=True)
    p.add_argument("--k8s-settings", required=True, help="KubernetesSettings YAML (see docs/kubernetes.md)")
    p.set_defaults(func=cmd_render_k8s)

    p = sub.add_parser("estimate", help="peak memory, GPU-hours, cost and epsilon of a job, and the policy verdict")
    _client(p)
    _request_args(p)
    p.set_defaults(func=cmd_estimate)
