"""Where the platform keeps its state: one data folder by default, any backend by URI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr


def _folder(value: str | None) -> Path | None:
    return Path(value).absolute() if value else None


def check_auth_setting(environ: Mapping[str, str]) -> None:
    """Refuse a ``PRIVTUNE_AUTH`` left over from when the platform had a second auth mode.

    The platform always serves TLS with a verified bearer token per call, and mutual TLS for its
    components. ``PRIVTUNE_AUTH`` unset or ``tls`` changes nothing; anything else is an error, so a
    deployment that still asks for ``insecure-headers`` learns at startup that it no longer exists.

    Raises:
        ValueError: ``PRIVTUNE_AUTH`` names another mode; the message says what to do instead.
    """
    value = environ.get("PRIVTUNE_AUTH", "")
    if value in ("", "tls"):
        return
    if value == "insecure-headers":
        raise ValueError(
            "PRIVTUNE_AUTH=insecure-headers: that auth mode was removed, and no header alone identifies a "
            "caller any more. Unset PRIVTUNE_AUTH: the platform always serves TLS and takes the tenant and "
            "roles from a verified bearer token (PRIVTUNE_TOKEN, or the CLI's --tenant/--actor with the "
            "development issuer); see docs/security.md")
    raise ValueError(f"PRIVTUNE_AUTH={value[:40]!r} is not an auth mode: the platform always serves TLS with "
                     "verified bearer tokens; unset PRIVTUNE_AUTH (see docs/security.md)")


class PlatformConfig(BaseModel):
    """Backends by URI. Every field can be set with an environment variable (in brackets)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt or removed setting is an error, never ignored

    data_dir: Path = Field(description="folder for the embedded defaults [PRIVTUNE_DATA_DIR]")
    bus_uri: str = Field(description="event bus: sqlite:///... or kafka://host:9092 [PRIVTUNE_BUS]")
    store_uri: str = Field(description="metadata store: sqlite:///... or postgresql+psycopg://... [PRIVTUNE_STORE]")
    storage_root: str = Field(
        description="tenant storage root, a folder or file:// or s3://bucket/prefix URI; tenant T lives in <root>/T/ "
                    "[PRIVTUNE_STORAGE]")
    grpc_address: str = Field(description="gRPC listen address [PRIVTUNE_GRPC]")
    orchestrator_address: str = Field(
        "", description="gRPC address (host:port) of the orchestrator, where training workers claim attempts "
                        "[PRIVTUNE_ORCHESTRATOR]; empty: this process's own gRPC server")
    curation_address: str = Field(
        "", description="gRPC address (host:port) of the curation service, where curation workers claim jobs "
                        "[PRIVTUNE_CURATION]; empty: this process's own gRPC server")
    eval_address: str = Field(
        "", description="gRPC address (host:port) of the eval service, where eval workers claim shards "
                        "[PRIVTUNE_EVAL]; empty: this process's own gRPC server")
    component_grpc_address: str = Field(
        "", description="mutual-TLS listener for platform components (workers, services) "
                        "[PRIVTUNE_COMPONENT_GRPC]; empty: the API's host, port + 1 (port 0 when the API's is 0)")
    oidc_issuer: str = Field("", description="an enterprise OpenID Connect issuer to trust [PRIVTUNE_OIDC_ISSUER]")
    oidc_audience: str = Field("privtune", description="the audience its tokens must name [PRIVTUNE_OIDC_AUDIENCE]")
    oidc_jwks_uri: str = Field("", description="its JWKS URL; empty: <issuer>/.well-known/jwks.json "
                                               "[PRIVTUNE_OIDC_JWKS]")
    pki_root: Path | None = Field(
        None, description="folder of the CA, server and component certificates [PRIVTUNE_PKI_DIR]; "
                          "None: <data dir>/pki. Processes sharing it trust each other's certificates")
    auth_root: Path | None = Field(
        None, description="folder of the development token issuer's key and JWKS [PRIVTUNE_AUTH_DIR]; "
                          "None: <data dir>/auth")
    dev_issuer: Literal["auto", "on", "off"] = Field(
        "auto", description="trust the local development issuer (anyone who can read the data folder can mint "
                            "tokens with it); auto: only while no enterprise issuer is configured [PRIVTUNE_DEV_ISSUER]")
    audit_storage: str = Field(
        "", description="WORM storage of sealed audit segments: file:///folder or s3://bucket/prefix (a bucket with "
                        "Object Lock) [PRIVTUNE_AUDIT_STORAGE]; empty: file://<data dir>/audit/segments")
    audit_key_file: Path | None = Field(
        None, description="the Ed25519 key that signs audit tree heads, PEM [PRIVTUNE_AUDIT_KEY]; None: "
                          "<data dir>/audit/signing-key.pem, made on first start")
    audit_seal_records: int = Field(1000, ge=1, le=100_000, description="seal a segment and sign a head after this "
                                                                         "many records [PRIVTUNE_AUDIT_SEAL_RECORDS]")
    audit_seal_ms: int = Field(60_000, ge=10, description="... or when the oldest unsealed record is this old, "
                                                          "milliseconds [PRIVTUNE_AUDIT_SEAL_MS]")
    audit_retention: str = Field(
        "default=2557", description="retention of sealed segments in days, per tenant: 'default=2557,acme=3650' "
                                    "(S3 Object Lock compliance mode: not even the root account can shorten it) "
                                    "[PRIVTUNE_AUDIT_RETENTION]")
    audit_legal_hold: str = Field("", description="tenants whose segments are sealed under legal hold, comma "
                                                  "separated [PRIVTUNE_AUDIT_LEGAL_HOLD]")
    audit_exports: str = Field("", description="where the audit log is exported, comma separated: relp://host:port "
                                               "(TLS, acknowledged), syslog-tls://host:port (RFC 5425), kafka (the "
                                               "privtune.audit topic) [PRIVTUNE_AUDIT_EXPORTS]")
    metrics_address: str = Field(
        "", description="Prometheus text endpoint (http://ADDRESS/metrics: read-model lag) [PRIVTUNE_METRICS]; "
                        "empty: none")
    gateway_address: str = Field(
        "127.0.0.1:8080", description="where the deploy service's OpenAI-compatible gateway listens (host:port; port "
                                      "0: a free one) [PRIVTUNE_GATEWAY]")
    serving_engine: Literal["transformers", "vllm"] = Field(
        "transformers", description="what serves deployed models: transformers (privtune's own server) or vllm "
                                    "(its cached venv, scripts/vllm_env.sh) [PRIVTUNE_SERVING_ENGINE]")
    deploy_environments: str = Field(
        "staging,production", description="environments deployments may go to, comma separated; each names the "
                                          "registry alias it moves, and production needs an approver "
                                          "[PRIVTUNE_DEPLOY_ENVIRONMENTS]")
    _component_port: int = PrivateAttr(default=0)

    @classmethod
    def from_env(cls, data_dir: Path | str | None = None, **overrides: object) -> "PlatformConfig":
        """Defaults under ``data_dir`` (or $PRIVTUNE_DATA_DIR, or ./var), then env vars, then overrides.

        Raises:
            ValueError: ``PRIVTUNE_AUTH`` asks for an auth mode other than ``tls`` (see ``check_auth_setting``).
        """
        check_auth_setting(os.environ)
        base = Path(data_dir or os.environ.get("PRIVTUNE_DATA_DIR", "var")).absolute()
        values: dict[str, object] = {
            "data_dir": base,
            "bus_uri": os.environ.get("PRIVTUNE_BUS", f"sqlite:///{base}/events.db"),
            "store_uri": os.environ.get("PRIVTUNE_STORE", f"sqlite:///{base}/privtune.db"),
            "storage_root": os.environ.get("PRIVTUNE_STORAGE", str(base / "tenants")),
            "grpc_address": os.environ.get("PRIVTUNE_GRPC", "127.0.0.1:50051"),
            "orchestrator_address": os.environ.get("PRIVTUNE_ORCHESTRATOR", ""),
            "curation_address": os.environ.get("PRIVTUNE_CURATION", ""),
            "eval_address": os.environ.get("PRIVTUNE_EVAL", ""),
            "pki_root": _folder(os.environ.get("PRIVTUNE_PKI_DIR")),
            "auth_root": _folder(os.environ.get("PRIVTUNE_AUTH_DIR")),
            "component_grpc_address": os.environ.get("PRIVTUNE_COMPONENT_GRPC", ""),
            "oidc_issuer": os.environ.get("PRIVTUNE_OIDC_ISSUER", ""),
            "oidc_audience": os.environ.get("PRIVTUNE_OIDC_AUDIENCE", "privtune"),
            "oidc_jwks_uri": os.environ.get("PRIVTUNE_OIDC_JWKS", ""),
            "dev_issuer": os.environ.get("PRIVTUNE_DEV_ISSUER", "auto"),
            "audit_storage": os.environ.get("PRIVTUNE_AUDIT_STORAGE", ""),
            "audit_key_file": _folder(os.environ.get("PRIVTUNE_AUDIT_KEY")),
            "audit_seal_records": int(os.environ.get("PRIVTUNE_AUDIT_SEAL_RECORDS", "1000")),
            "audit_seal_ms": int(os.environ.get("PRIVTUNE_AUDIT_SEAL_MS", "60000")),
            "audit_retention": os.environ.get("PRIVTUNE_AUDIT_RETENTION", "default=2557"),
            "audit_legal_hold": os.environ.get("PRIVTUNE_AUDIT_LEGAL_HOLD", ""),
            "audit_exports": os.environ.get("PRIVTUNE_AUDIT_EXPORTS", ""),
            "gateway_address": os.environ.get("PRIVTUNE_GATEWAY", "127.0.0.1:8080"),
            "metrics_address": os.environ.get("PRIVTUNE_METRICS", ""),
            "serving_engine": os.environ.get("PRIVTUNE_SERVING_ENGINE", "transformers"),
            "deploy_environments": os.environ.get("PRIVTUNE_DEPLOY_ENVIRONMENTS", "staging,production"),
        }
        values.update({k: (str(v) if k == "storage_root" else v) for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def bind_component_port(self, port: int) -> None:
        """Record the port this process's component listener got (its address may ask for port 0)."""
        self._component_port = port

    @property
    def component_address(self) -> str:
        """Where the mutual-TLS listener for platform components binds."""
        if self.component_grpc_address:
            return self.component_grpc_address
        host, _, port = self.grpc_address.rpartition(":")
        return f"{host}:{int(port) + 1 if port and int(port) else 0}"

    @property
    def trusts_dev_issuer(self) -> bool:
        return self.dev_issuer == "on" or (self.dev_issuer == "auto" and not self.oidc_issuer)

    @property
    def pki_dir(self) -> Path:
        """The local CA, the server's and the components' certificates."""
        return self.pki_root or self.data_dir / "pki"

    @property
    def auth_dir(self) -> Path:
        """The local development token issuer's key and JWKS."""
        return self.auth_root or self.data_dir / "auth"

    @property
    def audit_dir(self) -> Path:
        """The audit service's signing key and published public keys (embedded default)."""
        return self.data_dir / "audit"

    @property
    def audit_storage_uri(self) -> str:
        return self.audit_storage or f"file://{self.audit_dir / 'segments'}"

    @property
    def own_target(self) -> str:
        """This process's own gRPC server as a platform component reaches it: its component listener,
        where workers present their certificates."""
        host, _, port = self.component_address.rpartition(":")
        host = "127.0.0.1" if host in ("", "0.0.0.0", "[::]") else host
        return f"{host}:{self._component_port or port}"

    @property
    def orchestrator_target(self) -> str:
        """Where training workers claim attempts: ``orchestrator_address``, else this process's server."""
        return self.orchestrator_address or self.own_target

    @property
    def curation_target(self) -> str:
        """Where curation workers claim jobs: ``curation_address``, else this process's server."""
        return self.curation_address or self.own_target

    @property
    def eval_target(self) -> str:
        """Where eval workers claim shards: ``eval_address``, else this process's server."""
        return self.eval_address or self.own_target

    @property
    def models_dir(self) -> Path:
        """The base-model store (open weights, shared by tenants) [PRIVTUNE_MODELS]."""
        return Path(os.environ.get("PRIVTUNE_MODELS", self.data_dir / "models"))

    @property
    def work_dir(self) -> Path:
        """Scratch space of training jobs (local checkpoints), per tenant and job."""
        return self.data_dir / "work"

    @property
    def storage_uri(self) -> str:
        """The storage root as a URI (a plain folder becomes ``file:///abs/path``)."""
        return self.storage_root if "://" in self.storage_root else f"file://{Path(self.storage_root).absolute()}"

    @property
    def storage_path(self) -> Path:
        """The storage root folder, for the embedded default (``file://`` roots only)."""
        uri = self.storage_uri
        if not uri.startswith("file://"):
            raise ValueError(f"storage root {uri} is not a local folder")
        return Path(uri[len("file://"):])
