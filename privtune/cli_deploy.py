"""CLI client of the deployment API (gRPC) and of the gateway (HTTPS, OpenAI-compatible); output is JSON.

    privtune deploy create MODEL/vN --environment ENV [--strategy blue-green|canary|shadow] [--canary-steps 10,50,100]
                                    [--endpoint NAME] [--drain-seconds N] [--verify-seconds N] [--rollback-on-regression]
                                    [--max-error-rate X] [--p95-latency-ms MS] [--min-requests N] [--request-id ID] [--wait]
    privtune deploy approve DEPLOYMENT_ID       (the approver role; never the requester)
    privtune deploy rollback DEPLOYMENT_ID [--reason TEXT]
    privtune deploy get DEPLOYMENT_ID | list [--endpoint NAME] | served REQUEST_ID
    privtune deploy chat ENDPOINT MESSAGE [--gateway URL] [--max-tokens N]

Each takes ``--tenant`` (required), ``--actor`` and ``--target`` (default 127.0.0.1:50051); the roles of a
minted development token come from ``PRIVTUNE_ROLES``. ``create --wait`` follows the deployment and exits 0
when it is verified, 3 when it was rolled back and 1 when it failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from privtune.cli_client import call_metadata, client_args, client_channel, print_message, print_rpc_error

STRATEGIES = {"blue-green": 1, "canary": 2, "shadow": 3}


def state_name(deployment: Any) -> str:
    from privtune.v1 import deployment_service_pb2 as pb

    return str(pb.DeploymentState.Name(deployment.state).removeprefix("DEPLOYMENT_STATE_").lower())


def wait_for(stub: Any, md: list[tuple[str, str]], deployment_id: str, timeout: float = 3600) -> Any:
    """Poll until the deployment is verified, rolled back or failed (printing each new state); returns it."""
    from privtune.v1 import deployment_service_pb2 as pb

    final = (pb.DEPLOYMENT_STATE_VERIFIED, pb.DEPLOYMENT_STATE_ROLLED_BACK, pb.DEPLOYMENT_STATE_FAILED)
    deadline, last = time.monotonic() + timeout, -1
    while True:
        d = stub.GetDeployment(pb.GetDeploymentRequest(deployment_id=deployment_id), metadata=md, timeout=30).deployment
        if d.state != last:
            print(json.dumps({"deployment_id": deployment_id, "state": state_name(d),
                              "weight_percent": d.weight_percent}), file=sys.stderr, flush=True)
            last = d.state
        if d.state in final or time.monotonic() > deadline:
            return d
        time.sleep(0.5)


def chat(gateway_url: str, token: str, endpoint: str, message: str, max_tokens: int = 64,
         ca: Path | None = None) -> tuple[str, dict]:
    """Ask ``endpoint`` on the gateway; returns (answer, the x-privtune-* headers). ``ca``: the certificate to
    trust (default: ``PRIVTUNE_CA``, else the local CA of the data folder, as for the gRPC API)."""
    import ssl

    import httpx

    from privtune.cli_client import ca_file

    ca = ca or ca_file()
    body = {"model": endpoint, "messages": [{"role": "user", "content": message}], "max_tokens": max_tokens,
            "temperature": 0}
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), timeout=300) as client:
        response = client.post(gateway_url.rstrip("/") + "/v1/chat/completions", json=body,
                               headers={"authorization": f"Bearer {token}"})
    headers = {k: v for k, v in response.headers.items() if k.startswith("x-privtune-")}
    if response.status_code != 200:
        raise SystemExit(f"error: the gateway answered {response.status_code}: {response.text[:500]}")
    return response.json()["choices"][0]["message"]["content"], headers


def cmd_deploy(args: argparse.Namespace) -> int:
    import grpc

    from privtune.v1 import deployment_service_pb2 as pb
    from privtune.v1 import deployment_service_pb2_grpc as pb_grpc
    from privtune.v1 import events_pb2

    if not args.tenant:
        print("error: --tenant is required", file=sys.stderr)
        return 2
    channel = client_channel(args.target)
    stub = pb_grpc.DeploymentServiceStub(channel)
    md = call_metadata(args)
    try:
        if args.action == "create":
            gates = events_pb2.TrafficGateLimits()
            for name in ("max_error_rate", "p95_latency_ms", "min_requests"):
                if getattr(args, name) is not None:
                    setattr(gates, name, getattr(args, name))
            try:
                steps = [int(s) for s in args.canary_steps.split(",")] if args.canary_steps else []
            except ValueError:
                print("error: --canary-steps is a comma-separated list of percentages, e.g. 10,50,100", file=sys.stderr)
                return 2
            request = pb.CreateDeploymentRequest(
                model_version_id=args.model_version, environment=args.environment,
                strategy=STRATEGIES[args.strategy], canary_steps_percent=steps, endpoint_name=args.endpoint or "",
                rollback_on_regression=args.rollback_on_regression, metric_gates=gates,
                request_id=args.request_id or "")
            if args.drain_seconds is not None:
                request.traffic_switch.drain_seconds = args.drain_seconds
            if args.verify_seconds is not None:
                request.verify_seconds = args.verify_seconds
            deployment = stub.CreateDeployment(request, metadata=md, timeout=60).deployment
            if not args.wait:
                print_message(deployment)
                return 0
            final = wait_for(stub, md, deployment.deployment_id)
            print_message(final)
            return {pb.DEPLOYMENT_STATE_VERIFIED: 0, pb.DEPLOYMENT_STATE_ROLLED_BACK: 3}.get(final.state, 1)
        if args.action == "approve":
            print_message(stub.ApproveDeployment(pb.ApproveDeploymentRequest(deployment_id=args.id), metadata=md,
                                                 timeout=30).deployment)
        elif args.action == "rollback":
            print_message(stub.RollbackDeployment(pb.RollbackDeploymentRequest(deployment_id=args.id,
                                                                               reason=args.reason or ""),
                                                  metadata=md, timeout=120).deployment)
        elif args.action == "get":
            print_message(stub.GetDeployment(pb.GetDeploymentRequest(deployment_id=args.id), metadata=md,
                                             timeout=30).deployment)
        elif args.action == "list":
            print_message(stub.ListDeployments(pb.ListDeploymentsRequest(
                endpoint_name=args.endpoint or "", page_size=args.page_size, page_token=args.page_token or ""),
                metadata=md, timeout=30))
        elif args.action == "served":
            print_message(stub.GetServedRequest(pb.GetServedRequestRequest(request_id=args.id), metadata=md,
                                                timeout=30).request)
        else:  # chat
            url = args.gateway
            if not url:
                page = stub.ListDeployments(pb.ListDeploymentsRequest(endpoint_name=args.endpoint), metadata=md,
                                            timeout=30)
                if not page.deployments:
                    print(f"error: no deployment of endpoint {args.endpoint!r} in tenant {args.tenant!r}",
                          file=sys.stderr)
                    return 1
                url = page.deployments[0].gateway_url
            answer, headers = chat(url, md[0][1].split(" ", 1)[1], args.endpoint, args.message, args.max_tokens)
            print(json.dumps({"answer": answer, **headers}, indent=2, ensure_ascii=False))
        return 0
    except grpc.RpcError as exc:
        print_rpc_error(exc)
        return 1
    finally:
        channel.close()


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``deploy`` to the ``privtune`` parser's subcommands."""
    de = sub.add_parser("deploy", help="deployment API client (gRPC) and gateway chat: blue-green, canary, shadow")
    client_args(de)
    dsub = de.add_subparsers(dest="action", required=True)
    p = dsub.add_parser("create", help="deploy a registered model version behind an endpoint of the gateway")
    client_args(p, leaf=True)
    p.add_argument("model_version", help="MODEL/vN")
    p.add_argument("--environment", required=True, help="staging, production, ...: the registry alias it moves "
                                                         "(production waits for an approver)")
    p.add_argument("--strategy", choices=sorted(STRATEGIES), default="blue-green")
    p.add_argument("--canary-steps", help="canary: comma-separated percentages, rising, e.g. 10,50,100")
    p.add_argument("--endpoint", help="the model name clients send (default: the model's name)")
    p.add_argument("--drain-seconds", type=int)
    p.add_argument("--verify-seconds", type=int, help="how long the gates watch after the flip (default 300)")
    p.add_argument("--rollback-on-regression", action="store_true", help="roll back at once when a gate breaks")
    p.add_argument("--max-error-rate", type=float)
    p.add_argument("--p95-latency-ms", type=float)
    p.add_argument("--min-requests", type=int)
    p.add_argument("--request-id")
    p.add_argument("--wait", action="store_true", help="follow it; exit 0 verified, 3 rolled back, 1 failed")
    for name, text in (("approve", "approve a production deployment (approver role, not the requester)"),
                       ("rollback", "move the endpoint back to the version before this deployment"),
                       ("get", "one deployment"), ("served", "which model version answered a request")):
        p = dsub.add_parser(name, help=text)
        client_args(p, leaf=True)
        p.add_argument("id", help="a request id (x-privtune-request-id)" if name == "served" else "dep-...")
        if name == "rollback":
            p.add_argument("--reason")
    p = dsub.add_parser("list")
    client_args(p, leaf=True)
    p.add_argument("--endpoint")
    p.add_argument("--page-size", type=int, default=50)
    p.add_argument("--page-token")
    p = dsub.add_parser("chat", help="ask an endpoint through the gateway (HTTPS, your token)")
    client_args(p, leaf=True)
    p.add_argument("endpoint")
    p.add_argument("message")
    p.add_argument("--gateway", help="the gateway's URL (default: from the endpoint's deployment)")
    p.add_argument("--max-tokens", type=int, default=64)
    de.set_defaults(func=cmd_deploy)
