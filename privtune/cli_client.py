"""What the gRPC client commands share: call metadata and JSON output of messages."""

from __future__ import annotations

import argparse
import json
from typing import Any


def call_metadata(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The caller's identity from ``--tenant`` and ``--actor``."""
    return [("x-privtune-tenant", args.tenant), ("x-privtune-actor", args.actor)]


def print_message(message: Any) -> None:
    """A protobuf message as indented JSON (field names as in the .proto)."""
    from google.protobuf.json_format import MessageToDict

    print(json.dumps(MessageToDict(message, preserving_proto_field_name=True), indent=2, sort_keys=True))


def print_rpc_error(exc: Any) -> None:
    """A failed call on stderr: its status, message, and the details a program would act on
    (error reason, bad fields, failed preconditions, the resource)."""
    import sys

    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
    status = rpc_status.from_call(exc)
    for detail in status.details if status is not None else ():
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.ResourceInfo,
                     error_details_pb2.PreconditionFailure):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                if isinstance(message, error_details_pb2.ErrorInfo):
                    print(f"  reason: {message.reason}", file=sys.stderr)
                elif isinstance(message, error_details_pb2.BadRequest):
                    for v in message.field_violations:
                        print(f"  field {v.field}: {v.description}", file=sys.stderr)
                elif isinstance(message, error_details_pb2.ResourceInfo):
                    print(f"  resource: {message.resource_type} {message.resource_name}", file=sys.stderr)
                else:
                    for p in message.violations:
                        print(f"  precondition {p.type} ({p.subject}): {p.description}", file=sys.stderr)
