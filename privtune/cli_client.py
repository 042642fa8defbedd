"""What the gRPC client commands share: the channel, the caller's credentials, JSON output of messages.

The CLI speaks TLS, as the platform does, trusting the CA of the embedded default
(``<data dir>/pki/ca.pem``, or ``PRIVTUNE_PKI_DIR/ca.pem``, or ``PRIVTUNE_CA``), and sends a bearer
token: ``PRIVTUNE_TOKEN`` when set (one from your identity provider), else one it mints with the
local development issuer of the data folder (or ``PRIVTUNE_AUTH_DIR``), for ``--tenant`` and
``--actor`` with ``PRIVTUNE_ROLES`` (default viewer, ml-engineer, approver). Anyone who can read the
data folder can mint tokens: that issuer is for one machine, never for a shared platform.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

DEFAULT_ROLES = "viewer,ml-engineer,approver"


def _check_auth_setting() -> None:
    """A ``PRIVTUNE_AUTH`` that asks for the removed plaintext mode stops the command, saying so."""
    from services.common.config import check_auth_setting

    try:
        check_auth_setting(os.environ)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None


def _data_dir() -> Path:
    return Path(os.environ.get("PRIVTUNE_DATA_DIR", "var")).absolute()


def _pki_dir() -> Path:
    """As ``PlatformConfig.pki_dir``: ``PRIVTUNE_PKI_DIR``, else ``<data dir>/pki``."""
    return Path(os.environ.get("PRIVTUNE_PKI_DIR") or _data_dir() / "pki").absolute()


def _auth_dir() -> Path:
    """As ``PlatformConfig.auth_dir``: ``PRIVTUNE_AUTH_DIR``, else ``<data dir>/auth``."""
    return Path(os.environ.get("PRIVTUNE_AUTH_DIR") or _data_dir() / "auth").absolute()


def client_channel(target: str) -> Any:
    """A TLS channel to the platform, trusting the local CA (or ``PRIVTUNE_CA``)."""
    import grpc

    _check_auth_setting()
    return grpc.secure_channel(target, grpc.ssl_channel_credentials(ca_file().read_bytes()))


def ca_file() -> Path:
    """The CA certificate the CLI trusts for the platform's TLS (gRPC API and gateway): ``PRIVTUNE_CA``, else the
    data folder's local CA."""
    ca = Path(os.environ.get("PRIVTUNE_CA") or _pki_dir() / "ca.pem")
    if not ca.exists():
        raise SystemExit(f"error: no CA certificate at {ca} to trust the platform's TLS certificate: start the "
                         "platform once with this data folder (privtune up) or set PRIVTUNE_CA")
    return ca


def call_metadata(args: argparse.Namespace, default_roles: str = DEFAULT_ROLES) -> list[tuple[str, str]]:
    """The caller's credentials: a bearer token (``PRIVTUNE_TOKEN``, or one minted for ``--tenant`` and
    ``--actor``)."""
    _check_auth_setting()
    token = os.environ.get("PRIVTUNE_TOKEN", "")
    if not token:
        from services.common.auth.tokens import DevIssuer

        auth_dir = _auth_dir()
        if not (auth_dir / "issuer-key.json").exists():
            raise SystemExit(f"error: no token: set PRIVTUNE_TOKEN, or run next to the platform's data folder "
                             f"(no development issuer in {auth_dir}; set PRIVTUNE_DATA_DIR or PRIVTUNE_AUTH_DIR)")
        roles = [r.strip() for r in os.environ.get("PRIVTUNE_ROLES", default_roles).split(",") if r.strip()]
        token = DevIssuer(auth_dir).mint(args.tenant, args.actor, roles, ttl_s=900)
    return [("authorization", f"Bearer {token}")]


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


DEFAULT_TARGET = "127.0.0.1:50051"


def client_args(p: argparse.ArgumentParser, leaf: bool = False) -> None:
    """``--target/--tenant/--actor`` of an API client command; on a leaf parser too, so they may follow the action."""
    if leaf:
        for flag in ("--target", "--tenant", "--actor"):
            p.add_argument(flag, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        return
    p.add_argument("--target", default=DEFAULT_TARGET, help="gRPC address of the platform")
    p.add_argument("--tenant", help="tenant id (required)")
    p.add_argument("--actor", default="cli")
