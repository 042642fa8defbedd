"""Helpers to run the platform in-process for tests and call its gRPC API, as a real client does:
over TLS with a bearer token.

Every test platform of a session shares one PKI and one development token issuer (see
``shared_auth``): ``metadata()`` mints a token without knowing which platform it is for, and a
worker started in another process presents a certificate of the same CA. A test that needs a
PKI of its own makes one (``services.common.auth.pki.ensure_local_pki``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import grpc
import pytest

from privtune.platform import Platform
from privtune.v1 import dataset_service_pb2 as ds_pb
from privtune.v1 import dataset_service_pb2_grpc as ds_grpc
from services.common.auth.pki import ensure_local_pki, issue_client
from services.common.auth.tokens import DevIssuer
from services.common.config import PlatformConfig
from services.common.identity import CORRELATION_HEADER, TENANT_HEADER

# what a test caller may do unless it asks otherwise: the CLI's default roles
DEFAULT_ROLES = ("viewer", "ml-engineer", "approver")
TOKEN_TTL_S = 3600
_REMINT_BEFORE_S = 900  # a cached token is replaced once it has less left (no stream outlives it)

_shared_root: Path | None = None
_issuer: DevIssuer | None = None
_tokens: dict[tuple[str, str, tuple[str, ...]], tuple[str, float]] = {}
_lock = threading.Lock()


def shared_auth_root() -> Path:
    """The temporary folder of this process's shared PKI (``pki/``) and token issuer (``auth/``), made on
    first use and removed when the process exits."""
    global _shared_root
    with _lock:
        if _shared_root is None:
            _shared_root = Path(tempfile.mkdtemp(prefix="privtune-test-auth-"))
            atexit.register(shutil.rmtree, _shared_root, True)
        return _shared_root


def shared_auth_overrides() -> dict[str, Path]:
    """PlatformConfig overrides that put a platform on the shared PKI and token issuer."""
    root = shared_auth_root()
    return {"pki_root": root / "pki", "auth_root": root / "auth"}


@pytest.fixture(scope="session", autouse=True)
def shared_auth() -> Iterator[Path]:
    """PRIVTUNE_PKI_DIR and PRIVTUNE_AUTH_DIR name the shared PKI and issuer for the whole session, so
    every ``PlatformConfig.from_env`` of a test, and every child process it starts (workers, ``privtune
    serve``, the CLI), trusts the same CA and tokens. Nothing is made until a platform or token needs it."""
    overrides = shared_auth_overrides()
    saved = {name: os.environ.get(name) for name in ("PRIVTUNE_PKI_DIR", "PRIVTUNE_AUTH_DIR")}
    os.environ["PRIVTUNE_PKI_DIR"] = str(overrides["pki_root"])
    os.environ["PRIVTUNE_AUTH_DIR"] = str(overrides["auth_root"])
    try:
        yield shared_auth_root()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def start_platform(data_dir: Path, **overrides: object) -> Platform:
    """Every service (or ``services``) on the embedded defaults under ``data_dir``, on a free port, on
    the shared PKI and issuer; ``overrides`` are PlatformConfig fields."""
    services: Sequence[str] | None = overrides.pop("services", None)  # type: ignore[assignment]
    config = PlatformConfig.from_env(data_dir, grpc_address="127.0.0.1:0", gateway_address="127.0.0.1:0",
                                     **{**shared_auth_overrides(), **overrides})
    return (Platform(config) if services is None else Platform(config, services=services)).start()


def issuer() -> DevIssuer:
    """The shared development token issuer."""
    global _issuer
    if _issuer is None:
        _issuer = DevIssuer(shared_auth_root() / "auth")
    return _issuer


def token(tenant: str = "acme", actor: str = "alice", roles: Sequence[str] = DEFAULT_ROLES) -> str:
    """A bearer token of ``tenant`` for ``actor`` (reused while it has a while left to live)."""
    key = (tenant, actor, tuple(sorted(roles)))
    with _lock:
        cached = _tokens.get(key)
    if cached is not None and cached[1] - time.time() > _REMINT_BEFORE_S:
        return cached[0]
    minted = issuer().mint(tenant, actor, roles, ttl_s=TOKEN_TTL_S)
    with _lock:
        _tokens[key] = (minted, time.time() + TOKEN_TTL_S)
    return minted


def metadata(tenant: str = "acme", actor: str = "alice", roles: Sequence[str] = DEFAULT_ROLES,
             correlation_id: str = "") -> list[tuple[str, str]]:
    """Call metadata of a person of ``tenant``: a bearer token (tenant, actor and roles are its claims)."""
    md = [("authorization", f"Bearer {token(tenant, actor, roles)}")]
    return md + ([(CORRELATION_HEADER, correlation_id)] if correlation_id else [])


def _target(platform_or_target: Platform | str) -> str:
    return platform_or_target if isinstance(platform_or_target, str) else platform_or_target.grpc_target


def _pki_dir(platform_or_target: Platform | str) -> Path:
    """The platform's PKI; for a bare ``host:port``, the shared one."""
    if isinstance(platform_or_target, str):
        return shared_auth_overrides()["pki_root"]
    return platform_or_target.config.pki_dir


def _ca(platform_or_target: Platform | str) -> bytes:
    return ensure_local_pki(_pki_dir(platform_or_target)).ca_bytes()


def channel(platform_or_target: Platform | str,
            options: Sequence[tuple[str, object]] | None = None) -> grpc.Channel:
    """A TLS channel to the platform's API, trusting its CA (for a ``host:port``: the shared CA).
    The server's certificate names 127.0.0.1 and localhost."""
    return grpc.secure_channel(_target(platform_or_target), grpc.ssl_channel_credentials(_ca(platform_or_target)),
                               options=options)


def component_target(platform: Platform) -> str:
    """The platform's component (mutual TLS) listener, where workers claim work."""
    return platform.config.own_target


def component_credentials(platform_or_target: Platform | str, kind: str = "worker",
                          name: str = "test") -> grpc.ChannelCredentials:
    """Mutual-TLS credentials of the component ``spiffe://privtune/<kind>/<name>`` of the platform's CA."""
    pki = ensure_local_pki(_pki_dir(platform_or_target))
    cert, key = issue_client(pki, kind, name).read()
    return grpc.ssl_channel_credentials(root_certificates=pki.ca_bytes(), private_key=key, certificate_chain=cert)


def component_channel(platform: Platform, kind: str = "worker", name: str = "test") -> grpc.Channel:
    """A channel to the component listener with a client certificate, as a worker's."""
    return grpc.secure_channel(component_target(platform), component_credentials(platform, kind, name))


def component_metadata(tenant: str = "acme") -> list[tuple[str, str]]:
    """A component names the tenant it acts for; who it is comes from its certificate."""
    return [(TENANT_HEADER, tenant)]


def dataset_stub(platform: Platform) -> ds_grpc.DatasetServiceStub:
    return ds_grpc.DatasetServiceStub(channel(platform))


def put_files(platform: Platform, tenant: str, folder: str, files: dict[str, bytes]) -> str:
    """Write files into the tenant's storage and return the folder's file:// URI."""
    root = platform.config.storage_path / tenant / folder
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return f"file://{root}"


def register(stub: ds_grpc.DatasetServiceStub, platform: Platform, tenant: str, name: str,
             files: dict[str, bytes] | None = None) -> ds_pb.Dataset:
    uri = put_files(platform, tenant, name, files or {"data.jsonl": b'{"prompt": "p", "completion": "c"}\n'})
    return stub.CreateDataset(ds_pb.CreateDatasetRequest(name=name, storage_uri=uri, classification=2),
                              metadata=metadata(tenant), timeout=30).dataset


@dataclass(frozen=True)
class ErrorDetails:
    """What a client program reads from a failed call's google.rpc.Status details."""

    reason: str
    domain: str
    metadata: dict[str, str]
    fields: dict[str, str]                      # BadRequest: field path -> description
    resource: tuple[str, str] | None            # ResourceInfo: (type, name)
    preconditions: list[tuple[str, str, str]]   # PreconditionFailure: (type, subject, description)


def error_details(exc: grpc.RpcError) -> ErrorDetails:
    """Decode the status details of ``exc`` (fails the test when there are none, or no ErrorInfo)."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None, f"no status details on {exc.code()}: {exc.details()}"  # type: ignore[attr-defined]
    info, fields, resource, preconditions = None, {}, None, []
    for any_ in status.details:
        if any_.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            any_.Unpack(info)
        elif any_.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            any_.Unpack(bad)
            fields.update({v.field: v.description for v in bad.field_violations})
        elif any_.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
            ri = error_details_pb2.ResourceInfo()
            any_.Unpack(ri)
            resource = (ri.resource_type, ri.resource_name)
        elif any_.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            pf = error_details_pb2.PreconditionFailure()
            any_.Unpack(pf)
            preconditions += [(v.type, v.subject, v.description) for v in pf.violations]
    assert info is not None, f"no ErrorInfo in the details of {exc.details()}"  # type: ignore[attr-defined]
    return ErrorDetails(reason=info.reason, domain=info.domain, metadata=dict(info.metadata), fields=fields,
                        resource=resource, preconditions=preconditions)


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def wait_settled(platform: Platform, timeout: float = 60.0) -> None:
    """Until everything written so far reached every read model (a read model a test checks is not the only
    one that lags): ``Platform.settled_since`` the wait began."""
    begun = time.time()
    wait_until(lambda: platform.settled_since(begun), timeout, "every read model caught up")
