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
