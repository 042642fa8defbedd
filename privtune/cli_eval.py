"""CLI client of the evaluation API (gRPC); output is JSON, scores only.

    privtune eval suite create NAME [--dataset-version ID] [--general-per-category N] [--no-general]
                                    [--no-safety] [--safety-per-category N] [--max-domain-items N] [--extraction-items N] [--seed N]
    privtune eval suite get SUITE_ID
    privtune eval run MODEL/vN [--suite SUITE_ID|default] [--gate NAME=VALUE ...] [--judge metric:rouge_l|model:ID]
                               [--max-new-tokens N] [--shard-size N] [--request-id ID] [--wait]
    privtune eval get EVAL_ID [--summary] | list [--model-version MODEL/vN] [--summary] | watch EVAL_ID

Each takes ``--tenant`` (required), ``--actor`` and ``--target`` (default 127.0.0.1:50051).
``run --wait`` follows the run and exits 0 when it passed its gates, 3 when it failed them,
1 when the run failed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from privtune.cli_client import call_metadata, client_args, client_channel, print_message, print_rpc_error

GATES = ("win_rate_vs_base_min", "toxicity_max_delta", "forgetting_max", "pii_leakage_max", "canary_exposure_max",
         "extraction_max", "domain_delta_min")


def parse_gates(items: list[str]) -> dict[str, float]:
    """``NAME=VALUE`` pairs as gate thresholds.

    Raises:
        SystemExit: an unknown gate or a value that is not a number (exit 2, naming the accepted ones).
    """
    gates: dict[str, float] = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in GATES:
            raise SystemExit(f"error: unknown gate {name!r}; use one of {', '.join(GATES)}")
        try:
            gates[name] = float(value)
        except ValueError:
            raise SystemExit(f"error: gate {name} needs a number, e.g. {name}=0.5") from None
    return gates


def _state_name(run: Any) -> str:
    from privtune.v1 import eval_service_pb2 as pb

    return str(pb.EvalRunState.Name(run.state).removeprefix("EVAL_RUN_STATE_").lower())


def _list_row(run: Any) -> dict[str, Any]:
    """One run of a list, for triage: what was evaluated, how it was asked for, and how it ended."""
    out: dict[str, Any] = {"eval_id": run.eval_id, "model_version_id": run.model_version_id,
                           "state": _state_name(run), "trigger": run.trigger, "judge": run.judge,
                           "items": run.item_count, "shards": f"{run.shards_done}/{run.shards_total}"}
    if out["state"] == "succeeded":
        out["passed"] = run.passed
    if run.error_code:
        out["error_code"] = run.error_code
    if run.reason:
        out["reason"] = run.reason
    return out


def _summary(run: Any) -> dict[str, Any]:
    """A short human view of a finished run: decision, gates, and the headline estimates."""
    out: dict[str, Any] = {"eval_id": run.eval_id, "state": _state_name(run), "trigger": run.trigger,
                           "passed": run.passed, "reason": run.reason, "report_uri": run.report_uri}
    if run.error_code:
        out["error_code"] = run.error_code
    out["gates"] = [{"gate": g.gate, "passed": g.passed, "bound": round(g.bound, 4), "threshold": g.threshold,
                     "margin": round(g.margin, 4)} for g in run.gates]
    out["estimates"] = {e.name: {"candidate": round(e.candidate, 4), "base": round(e.reference, 4),
                                 "delta": round(e.delta, 4), "ci": [round(e.ci_low, 4), round(e.ci_high, 4)]}
                        for e in run.estimates}
    return out


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    import grpc

    from privtune.v1 import eval_service_pb2 as pb
    from privtune.v1 import eval_service_pb2_grpc as pb_grpc
    from privtune.v1 import events_pb2

    if not args.tenant:
        print("error: --tenant is required", file=sys.stderr)
        return 2
    for name in ("general_per_category", "max_domain_items", "extraction_items", "safety_per_category", "seed",
                 "max_new_tokens", "shard_size"):
        value = getattr(args, name, None)
        if value is not None and value < 0:
            print(f"error: --{name.replace('_', '-')} must be 0 or more", file=sys.stderr)
            return 2
    channel = client_channel(args.target)
    stub = pb_grpc.EvalServiceStub(channel)
    md = call_metadata(args)
    try:
        if args.action == "suite":
            if args.suite_action == "create":
                options = pb.EvalSuiteOptions(seed=args.seed)
                for name in ("general_per_category", "max_domain_items", "extraction_items", "safety_per_category"):
                    if getattr(args, name) is not None:
                        setattr(options, name, getattr(args, name))
                if args.no_general:
                    options.include_general = False
                if args.no_safety:
                    options.include_safety = False
                print_message(stub.CreateEvalSuite(pb.CreateEvalSuiteRequest(
                    name=args.name, dataset_version_id=args.dataset_version or "", options=options),
                    metadata=md, timeout=600).suite)
            else:
                print_message(stub.GetEvalSuite(pb.GetEvalSuiteRequest(suite_id=args.id), metadata=md,
                                                timeout=30).suite)
            return 0
        if args.action == "run":
            request = pb.CreateEvalRunRequest(model_version_id=args.model_version, suite_id=args.suite,
                                              gates=events_pb2.EvalGates(**parse_gates(args.gate or [])),
                                              judge=args.judge or "", request_id=args.request_id or "")
            if args.max_new_tokens is not None:
                request.generation.max_new_tokens = args.max_new_tokens
            if args.shard_size is not None:
                request.shard_size = args.shard_size
            run = stub.CreateEvalRun(request, metadata=md, timeout=600).run
            if not args.wait:
                print_message(run)
                return 0
            return _follow(stub, md, run.eval_id)
        if args.action == "get":
            run = stub.GetEvalRun(pb.GetEvalRunRequest(eval_id=args.id), metadata=md, timeout=30).run
            print(json.dumps(_summary(run), indent=2)) if args.summary else print_message(run)
            return 0
        if args.action == "list":
            page = stub.ListEvalRuns(pb.ListEvalRunsRequest(
                model_version_id=args.model_version or "", page_size=args.page_size,
                page_token=args.page_token or ""), metadata=md, timeout=30)
            if args.summary:
                print(json.dumps({"runs": [_list_row(r) for r in page.runs],
                                  "next_page_token": page.next_page_token}, indent=2))
            else:
                print_message(page)
            return 0
        return _follow(stub, md, args.id)
    except grpc.RpcError as exc:
        print_rpc_error(exc)
        return 1
    finally:
        channel.close()


def _follow(stub: Any, md: list[tuple[str, str]], eval_id: str) -> int:
    """Print the run's events as they are recorded, then its summary; exit code by outcome."""
    import json

    from privtune.v1 import eval_service_pb2 as pb

    for item in stub.WatchEvalRun(pb.WatchEvalRunRequest(eval_id=eval_id), metadata=md, timeout=24 * 3600):
        env = item.event
        print(json.dumps({"event": env.type.rsplit(".", 1)[-1], "version": env.aggregate_version}), flush=True)
    run = stub.GetEvalRun(pb.GetEvalRunRequest(eval_id=eval_id), metadata=md, timeout=30).run
    print(json.dumps(_summary(run), indent=2))
    if run.state == pb.EVAL_RUN_STATE_FAILED:
        return 1
    return 0 if run.passed else 3


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``eval`` to the ``privtune`` parser's subcommands."""
    ev = sub.add_parser("eval", help="evaluation API client (gRPC): suites, runs against the base, gates")
    client_args(ev)
    esub = ev.add_subparsers(dest="action", required=True)
    suite = esub.add_parser("suite", help="frozen, content-addressed evaluation suites")
    client_args(suite, leaf=True)
    ssub = suite.add_subparsers(dest="suite_action", required=True)
    p = ssub.add_parser("create", help="build a suite from a dataset version's holdout, the general slice, "
                                       "safety prompts and the version's canaries")
    client_args(p, leaf=True)
    p.add_argument("name")
    p.add_argument("--dataset-version", help="the dataset version whose holdout is the domain split")
    p.add_argument("--general-per-category", type=int)
    p.add_argument("--no-general", action="store_true", help="leave the general-capability slice out")
    p.add_argument("--no-safety", action="store_true", help="leave the safety and refusal prompts out")
    p.add_argument("--safety-per-category", type=int, help="harmful and benign prompts each (default all 48)")
    p.add_argument("--max-domain-items", type=int)
    p.add_argument("--extraction-items", type=int)
    p.add_argument("--seed", type=int, default=0)
    p = ssub.add_parser("get")
    client_args(p, leaf=True)
    p.add_argument("id")
    p = esub.add_parser("run", help="evaluate a model version against its base model on a suite")
    client_args(p, leaf=True)
    p.add_argument("model_version", help="MODEL/vN")
    p.add_argument("--suite", default="default", help="a suite id, or 'default' (built from the version's data)")
    p.add_argument("--gate", action="append", metavar="NAME=VALUE",
                   help=f"a promotion gate, decided on its confidence bound (repeatable): {', '.join(GATES)}")
    p.add_argument("--judge", help="metric:rouge_l (default, reference-guided) or model:<model id> (LLM judge)")
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--shard-size", type=int)
    p.add_argument("--request-id")
    p.add_argument("--wait", action="store_true", help="follow the run; exit 0 passed, 3 gates failed, 1 failed")
    p = esub.add_parser("get")
    client_args(p, leaf=True)
    p.add_argument("id")
    p.add_argument("--summary", action="store_true", help="decision, gates and estimates only")
    p = esub.add_parser("list")
    client_args(p, leaf=True)
    p.add_argument("--model-version")
    p.add_argument("--page-size", type=int, default=50)
    p.add_argument("--page-token")
    p.add_argument("--summary", action="store_true",
                   help="each run's triage fields only: state, trigger, judge, items, error code, reason")
    p = esub.add_parser("watch")
    client_args(p, leaf=True)
    p.add_argument("id")
    ev.set_defaults(func=cmd_eval)
