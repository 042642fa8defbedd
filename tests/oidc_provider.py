"""A real OpenID Connect provider for tests: Ory Hydra 2.3.0 on loopback, started lazily.

Each OAuth client stands for one enterprise system with a fixed tenant and roles, kept in
the client's ``metadata``. Hydra issues client-credentials access tokens as RS256 JWTs;
a token hook (a tiny HTTP server in this process) reads the client's metadata from
Hydra's admin API and adds ``tenant`` and ``roles`` as top-level claims::

    from tests.oidc_provider import OidcProvider, oidc_provider  # noqa: F401 - fixture

    def test_x(oidc_provider: OidcProvider) -> None:
        client_id, secret = oidc_provider.create_client("acme", ["ml-engineer"], audience=["privtune"])
        token = oidc_provider.client_credentials_token(client_id, secret, audience=["privtune"])
        # verify against oidc_provider.issuer and oidc_provider.jwks_url

    oidc_provider   session: an ``OidcProvider`` (``issuer``, ``jwks_url``, ``token_url``,
                    ``admin_url``, ``create_client``, ``client_credentials_token``).

The binary comes from ``scripts/build_hydra.sh`` (built once into the cache, ~2 min) or
``$PRIVTUNE_HYDRA``. Hydra runs with ``dsn: memory``, binds only 127.0.0.1, and its config,
log, HOME and TMPDIR all live in one temporary directory that is removed on stop. It runs
in its own session with ``PR_SET_PDEATHSIG=SIGKILL`` and is stopped at interpreter exit,
so it never outlives the test process; the hook server is a daemon thread of this process.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from privtune import devinfra
from privtune.devinfra import DevInfraError, free_port, make_temp_dir, repo_root, tail

HYDRA_ENV = "PRIVTUNE_HYDRA"
CUSTOM_CLAIMS = ("tenant", "roles")
_HOOK_PATH = "/token-hook"
_HOOK_MAX_BODY = 1 << 20
_START_TIMEOUT_S = 60.0
_HTTP_TIMEOUT_S = 10.0


def hydra_binary() -> Path:
    """Return the Hydra binary: ``$PRIVTUNE_HYDRA``, or the cached build (built on first use).

    Raises:
        DevInfraError: the binary is not cached and cannot be built (no Go, no C compiler...).
    """
    env = os.environ.get(HYDRA_ENV)
    if env:
        if not os.access(env, os.X_OK):
            raise DevInfraError(f"${HYDRA_ENV}={env} is not an executable file; unset it to build Hydra")
        return Path(env)
    script = repo_root() / "scripts" / "build_hydra.sh"
    res = subprocess.run([str(script)], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise DevInfraError(f"{script} failed:\n{res.stderr[-4000:]}")
    return Path(res.stdout.strip().splitlines()[-1])


def _http_json(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
               form: dict[str, str] | None = None) -> tuple[int, Any]:
    """One HTTP request; returns (status, decoded JSON body or None). Never raises on 4xx/5xx."""
    data: bytes | None = None
    all_headers = {"Accept": "application/json", **(headers or {})}
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        all_headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
        all_headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT_S) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return status, {"raw": raw[:2000].decode("utf-8", "replace")}


class _TokenHook(ThreadingHTTPServer):
    """Hydra's token hook: adds the client's tenant and roles (from its metadata) to access tokens.

    Hydra POSTs ``{"session": {...}, "request": {"client_id": ..., "granted_audience": [...],
    "grant_types": [...], ...}}``; we answer ``{"session": {"access_token": {claims}, "id_token":
    {}}}``. A client without a ``tenant`` in its metadata gets 403, which Hydra turns into an
    ``access_denied`` token error: no token leaves the provider without a tenant. If the
    admin API does not answer, 502 (Hydra: ``server_error``).
    """

    daemon_threads = True

    def __init__(self, admin_url: str, api_key: str) -> None:
        super().__init__(("127.0.0.1", 0), _TokenHookHandler)
        self.admin_url = admin_url
        self.api_key = api_key
        self.requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=100)  # bodies Hydra sent

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{_HOOK_PATH}"

    def client_metadata(self, client_id: str) -> dict[str, Any] | None:
        """The client's metadata from Hydra's admin API ({} for an unknown client); None if Hydra fails."""
        url = f"{self.admin_url}/admin/clients/{urllib.parse.quote(client_id, safe='')}"
        try:
            status, client = _http_json("GET", url)
        except OSError:
            return None
        if status == HTTPStatus.NOT_FOUND:
            return {}
        if status != HTTPStatus.OK or not isinstance(client, dict):
            return None
        metadata = client.get("metadata") or {}
        return metadata if isinstance(metadata, dict) else {}


def tenant_claims(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The ``tenant`` and ``roles`` claims of a client with these metadata; None without a tenant."""
    tenant, roles = metadata.get("tenant"), metadata.get("roles", [])
    if not isinstance(tenant, str) or not tenant or not isinstance(roles, list):
        return None
    return {"tenant": tenant, "roles": [str(r) for r in roles]}


class _TokenHookHandler(BaseHTTPRequestHandler):
    server: _TokenHook

    def do_POST(self) -> None:
        if self.path != _HOOK_PATH:
            return self._reply(HTTPStatus.NOT_FOUND)
        if not secrets.compare_digest(self.headers.get("Authorization", ""), f"Bearer {self.server.api_key}"):
            return self._reply(HTTPStatus.UNAUTHORIZED)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if not 0 < length <= _HOOK_MAX_BODY:
            return self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE if length else HTTPStatus.BAD_REQUEST)
        try:
            body = json.loads(self.rfile.read(length))
            client_id = str(body["request"]["client_id"])
        except (ValueError, KeyError, TypeError):
            return self._reply(HTTPStatus.BAD_REQUEST)
        self.server.requests.append(body)
        metadata = self.server.client_metadata(client_id)
        if metadata is None:
            return self._reply(HTTPStatus.BAD_GATEWAY)
        claims = tenant_claims(metadata)
        if claims is None:
            return self._reply(HTTPStatus.FORBIDDEN)
        return self._reply(HTTPStatus.OK, {"session": {"access_token": claims, "id_token": {}}})

    def _reply(self, status: HTTPStatus, body: dict[str, Any] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def hydra_config(public_port: int, admin_port: int, hook_url: str, hook_api_key: str) -> dict[str, Any]:
    """Hydra 2.3.0 config: in-memory, loopback only, JWT access tokens with tenant and roles."""
    public_url = f"http://127.0.0.1:{public_port}"
    return {
        "dsn": "memory",
        "log": {"level": "info", "format": "text"},
        "serve": {
            "public": {"host": "127.0.0.1", "port": public_port},
            "admin": {"host": "127.0.0.1", "port": admin_port},
        },
        "urls": {"self": {"issuer": public_url, "public": public_url}},
        "secrets": {"system": [secrets.token_urlsafe(32)]},
        "strategies": {"access_token": "jwt"},
        "oauth2": {
            "allowed_top_level_claims": list(CUSTOM_CLAIMS),
            "mirror_top_level_claims": False,  # not also under "ext"
            "token_hook": {
                "url": hook_url,
                "auth": {"type": "api_key",
                         "config": {"in": "header", "name": "Authorization", "value": f"Bearer {hook_api_key}"}},
            },
        },
        "sqa": {"opt_out": True},
    }


class OidcProvider:
    """Ory Hydra on 127.0.0.1 plus its token hook; ``start()``/``stop()`` or a ``with`` block."""

    def __init__(self, binary: Path | None = None) -> None:
        self.binary = binary
        self.dir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.hook: _TokenHook | None = None
        self.public_port = 0
        self.admin_port = 0

    @property
    def issuer(self) -> str:
        """The ``iss`` of every token, and the base of the discovery document."""
        return f"http://127.0.0.1:{self.public_port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/.well-known/jwks.json"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/oauth2/token"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def log_path(self) -> Path:
        assert self.dir is not None, "provider not started"
        return self.dir / "hydra.log"

    def start(self) -> OidcProvider:
        """Build (once) and start Hydra and the hook; wait until both Hydra ports are ready."""
        if self.process is not None:
            raise DevInfraError("Hydra already started")
        binary = self.binary or hydra_binary()
        self.dir = make_temp_dir("privtune-hydra-")
        self.public_port = self.admin_port = free_port()
        while self.admin_port == self.public_port:
            self.admin_port = free_port()
        api_key = secrets.token_urlsafe(24)
        self.hook = _TokenHook(self.admin_url, api_key)
        threading.Thread(target=self.hook.serve_forever, name="hydra-token-hook", daemon=True).start()
        config_path = self.dir / "hydra.yaml"
        config_path.write_text(yaml.safe_dump(hydra_config(self.public_port, self.admin_port, self.hook.url, api_key)))
        # A clean environment: Hydra reads any variable named like a config key (DSN, SERVE_...).
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.dir), "TMPDIR": str(self.dir),
               "LANG": "C.UTF-8"}
        # --dev: the issuer is plain http on loopback (Hydra otherwise insists on https).
        argv = [str(binary), "serve", "all", "--config", str(config_path), "--dev", "--sqa-opt-out"]
        devinfra.register(self)
        self.process = devinfra.spawn(argv, self.log_path, cwd=self.dir, env=env)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        urls = [f"{self.issuer}/health/ready", f"{self.admin_url}/health/ready"]
        while urls:
            assert self.process is not None
            if self.process.poll() is not None:
                raise DevInfraError(f"Hydra exited with status {self.process.returncode} before it was ready; "
                                    f"its log ({self.log_path}):\n{tail(self.log_path)}")
            try:
                if _http_json("GET", urls[0])[0] == HTTPStatus.OK:
                    urls.pop(0)
                    continue
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise DevInfraError(f"Hydra was not ready at {urls[0]} within {_START_TIMEOUT_S:.0f}s; "
                                    f"its log:\n{tail(self.log_path)}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop Hydra (SIGTERM, then SIGKILL) and the hook; remove the temporary directory."""
        devinfra.unregister(self)
        if self.process is not None:
            devinfra.terminate(self.process, grace=10)
            self.process = None
        if self.hook is not None:
            self.hook.shutdown()
            self.hook.server_close()
            self.hook = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def hook_requests(self) -> list[dict[str, Any]]:
        """The token-hook requests Hydra sent so far (JSON bodies), oldest first."""
        return list(self.hook.requests) if self.hook is not None else []

    def create_client(self, tenant: str, roles: Sequence[str], audience: Sequence[str] = ("privtune",)) -> tuple[str, str]:
        """Register one enterprise system: a client-credentials client of ``tenant`` with ``roles``.

        Returns:
            (client_id, client_secret).
        """
        status, client = _http_json("POST", f"{self.admin_url}/admin/clients", body={
            "client_name": f"{tenant} enterprise system",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_basic",
            "audience": list(audience),
            "metadata": {"tenant": tenant, "roles": list(roles)},
        })
        if status != HTTPStatus.CREATED or not isinstance(client, dict):
            raise DevInfraError(f"Hydra refused to create a client for tenant {tenant!r}: HTTP {status} {client}")
        return str(client["client_id"]), str(client["client_secret"])

    def client_credentials_token(self, client_id: str, secret: str, audience: Sequence[str]) -> str:
        """An access token (a JWT) for ``client_id`` naming ``audience``, from the public token endpoint."""
        # RFC 6749 2.3.1: form-encode id and secret before Basic auth.
        basic = ":".join(urllib.parse.quote_plus(part) for part in (client_id, secret))
        status, reply = _http_json(
            "POST", self.token_url,
            headers={"Authorization": "Basic " + base64.b64encode(basic.encode()).decode()},
            form={"grant_type": "client_credentials", "audience": " ".join(audience)})
        if status != HTTPStatus.OK or not isinstance(reply, dict) or "access_token" not in reply:
            raise DevInfraError(f"Hydra refused a token for client {client_id} and audience {list(audience)}: "
                                f"HTTP {status} {reply}")
        return str(reply["access_token"])


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[OidcProvider]:
    """Ory Hydra with a tenant/roles token hook, on 127.0.0.1, for the whole session."""
    with OidcProvider() as provider:
        yield provider
