"""Bearer tokens (JWT) for people and enterprise systems: verified against the issuer's JWKS —
signature, issuer, audience, expiry, not-before — and read for the tenant and roles, which come
from verified claims only.

``JwtVerifier`` checks tokens of one issuer (an enterprise OpenID Connect provider, or the local
development issuer ``privtune up`` makes). ``DevIssuer`` is that local issuer: an ES256 key in
the data folder and its JWKS, minting tokens for the CLI and the demo.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import threading
import time
import logging
import urllib.parse
import urllib.request
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import ECKey, KeySet

from services.common.auth.pki import creation_lock, write_private
from services.common.auth.roles import ROLES
from services.common.errors import Unauthenticated
from services.common.identity import is_actor, is_tenant_id

log = logging.getLogger(__name__)
MAX_TOKEN_CHARS = 8192
ALGORITHMS = ("RS256", "ES256", "EdDSA")
DEV_ISSUER = "https://privtune.local/dev-issuer"
DEV_AUDIENCE = "privtune"


@dataclass(frozen=True)
class Claims:
    """What a verified token says about its bearer."""

    subject: str
    tenant: str
    roles: frozenset[str]
    issuer: str
    expires_at: int
    token_id: str = ""


class JwksSource(Protocol):
    def keys(self, refresh: bool = False) -> KeySet: ...


@dataclass
class StaticJwks:
    """A key set given once (the development issuer's file, a test's keys)."""

    jwks: dict[str, Any]

    def keys(self, refresh: bool = False) -> KeySet:
        return KeySet.import_key_set(self.jwks)  # type: ignore[arg-type]


@dataclass
class HttpJwks:
    """An issuer's published key set, fetched over HTTPS (plain HTTP on loopback only) and cached.

    Fetched again when a token names a key it does not hold (key rotation), but at most once per
    ``min_refresh_s`` whatever the outcome (a failed fetch is remembered too), and by one caller
    at a time without holding up the others: they use the keys at hand, or are refused at once
    while there are none. So tokens naming unknown keys cannot turn every call into a fetch.
    """

    url: str
    min_refresh_s: float = 30.0
    timeout_s: float = 3.0
    _cached: KeySet | None = None
    _tried_at: float = float("-inf")
    _fetching: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost",
                                                                                          "::1")):
            raise ValueError(f"the JWKS URL must be https:// (plain http only on loopback), not {self.url!r}")

    def keys(self, refresh: bool = False) -> KeySet:
        with self._lock:
            due = time.monotonic() - self._tried_at >= self.min_refresh_s
            fetch = (self._cached is None or refresh) and due and not self._fetching
            if fetch:
                self._fetching, self._tried_at = True, time.monotonic()
            cached = self._cached
        if fetch:
            try:
                with urllib.request.urlopen(self.url, timeout=self.timeout_s) as response:  # noqa: S310
                    cached = KeySet.import_key_set(json.loads(response.read(1 << 20)))
                with self._lock:
                    self._cached = cached
            except (OSError, ValueError, JoseError) as exc:
                log.warning("fetching the token issuer's keys from %s failed: %s", self.url, type(exc).__name__)
            finally:
                with self._lock:
                    self._fetching = False
        if cached is None:
            raise Unauthenticated("the token issuer's keys are not available right now; retry shortly",
                                  reason="ISSUER_UNREACHABLE")
        return cached


def _is_time(value: object) -> bool:
    """A NumericDate: a finite number (not a boolean) within 64-bit seconds."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and 0 <= value < 2**62


def _refuse(reason: str, message: str) -> Unauthenticated:
    return Unauthenticated(f"{message}; get a new token from your identity provider", reason=reason)


@dataclass
class JwtVerifier:
    """Verifies tokens of one issuer for one audience."""

    issuer: str
    audience: str
    jwks: JwksSource
    algorithms: tuple[str, ...] = ALGORITHMS
    leeway_s: int = 30
    now: Callable[[], float] = time.time
    tenant_claim: str = "tenant"
    roles_claim: str = "roles"

    def verify(self, token: str) -> Claims:
        """The claims of ``token``.

        Raises:
            Unauthenticated: with a stable reason: MALFORMED_TOKEN, UNKNOWN_SIGNING_KEY,
                BAD_SIGNATURE, WRONG_ISSUER, WRONG_AUDIENCE, TOKEN_EXPIRED, TOKEN_NOT_YET_VALID,
                MISSING_CLAIM.
        """
        if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise _refuse("MALFORMED_TOKEN", "the bearer token is not a signed JWT")
        decoded = self._decode(token)
        claims = decoded.claims
        now = int(self.now())
        if claims.get("iss") != self.issuer:
            raise _refuse("WRONG_ISSUER", "the token was issued by another issuer")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.audience not in audiences:
            raise _refuse("WRONG_AUDIENCE", f"the token is not meant for this service (audience {self.audience!r})")
        exp = claims.get("exp")
        if not _is_time(exp):
            raise _refuse("MISSING_CLAIM", "the token has no valid expiry (exp)")
        if now > exp + self.leeway_s:
            raise _refuse("TOKEN_EXPIRED", "the token has expired")
        for name in ("nbf", "iat"):
            if name in claims and not _is_time(claims[name]):
                raise _refuse("MALFORMED_TOKEN", f"the token's {name} is not a time")
        nbf = claims.get("nbf", claims.get("iat"))
        if nbf is not None and now + self.leeway_s < nbf:
            raise _refuse("TOKEN_NOT_YET_VALID", "the token is not valid yet")
        tenant = claims.get(self.tenant_claim)
        if not isinstance(tenant, str) or not is_tenant_id(tenant):
            raise _refuse("MISSING_CLAIM", f"the token carries no valid {self.tenant_claim!r} claim")
        subject = claims.get("sub") or claims.get("client_id") or ""
        if not isinstance(subject, str) or not is_actor(subject):
            raise _refuse("MISSING_CLAIM", "the token names no valid subject (sub: 1-128 letters, digits and ._@:+-)")
        raw_roles = claims.get(self.roles_claim, [])
        roles = raw_roles.split() if isinstance(raw_roles, str) else raw_roles if isinstance(raw_roles, list) else []
        return Claims(subject=subject, tenant=tenant, roles=frozenset(r for r in roles if r in ROLES),
                      issuer=self.issuer, expires_at=int(exp), token_id=str(claims.get("jti", ""))[:128])

    def _decode(self, token: str) -> jwt.Token:
        for refresh in (False, True):
            try:
                return jwt.decode(token, self.jwks.keys(refresh=refresh), algorithms=list(self.algorithms))
            except BadSignatureError:
                raise _refuse("BAD_SIGNATURE", "the token's signature does not verify") from None
            except (ValueError, JoseError) as exc:
                if not refresh and "key" in str(exc).lower():
                    continue  # an unknown key id: the issuer may have rotated its keys
                reason = "UNKNOWN_SIGNING_KEY" if "key" in str(exc).lower() else "MALFORMED_TOKEN"
                raise _refuse(reason, f"the bearer token cannot be verified ({type(exc).__name__})") from None
        raise AssertionError("unreachable")


class Verifiers:
    """Several trusted issuers: a token is checked by the verifier of the issuer it names.

    A token that verified is remembered (by its sha256, up to ``cache_size`` tokens) until it
    expires, so a client calling many times with one token pays for its signature check once;
    expiry is checked again on every call.
    """

    def __init__(self, verifiers: Iterable[JwtVerifier], cache_size: int = 4096,
                 now: Callable[[], float] = time.time) -> None:
        self.by_issuer = {v.issuer: v for v in verifiers}
        self.cache_size = cache_size
        self.now = now
        self._verified: OrderedDict[bytes, Claims] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, token: str) -> Claims:
        if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise _refuse("MALFORMED_TOKEN", "the bearer token is not a signed JWT")
        key = hashlib.sha256(token.encode()).digest()
        with self._lock:
            known = self._verified.get(key)
            if known is not None:
                self._verified.move_to_end(key)
        if known is not None:
            verifier = self.by_issuer[known.issuer]
            if self.now() <= known.expires_at + verifier.leeway_s:
                return known
            with self._lock:
                self._verified.pop(key, None)
        # read unverified only to pick the verifier; the chosen verifier checks everything
        verifier = self.by_issuer.get(_unverified_issuer(token))
        if verifier is None:
            raise _refuse("WRONG_ISSUER", "the token was issued by an issuer this platform does not trust")
        claims = verifier.verify(token)
        with self._lock:
            self._verified[key] = claims
            while len(self._verified) > self.cache_size:
                self._verified.popitem(last=False)
        return claims


def _unverified_issuer(token: str) -> str:
    try:
        payload = token.split(".")[1]
        body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        issuer = body.get("iss", "") if isinstance(body, dict) else ""
        return issuer if isinstance(issuer, str) else ""
    except (ValueError, IndexError):
        return ""


class DevIssuer:
    """The local development issuer of the embedded default: an ES256 key under ``root`` (0600)
    and its public JWKS; mints short-lived tokens for the CLI, the demo and tests."""

    def __init__(self, root: Path, issuer: str = DEV_ISSUER, audience: str = DEV_AUDIENCE) -> None:
        self.root, self.issuer, self.audience = root, issuer, audience
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        key_file = root / "issuer-key.json"
        with creation_lock(root):  # processes starting together share one key
            if not key_file.exists():
                key = ECKey.generate_key("P-256", parameters={"kid": uuid.uuid4().hex[:16], "use": "sig",
                                                              "alg": "ES256"})
                write_private(key_file, json.dumps(key.as_dict(private=True)).encode())
            self.key = ECKey.import_key(json.loads(key_file.read_text()))
            self.jwks = {"keys": [self.key.as_dict(private=False)]}
            jwks_file = root / "jwks.json"
            if not jwks_file.exists() or json.loads(jwks_file.read_text()) != self.jwks:
                tmp = jwks_file.with_name(f".{jwks_file.name}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps(self.jwks))
                os.replace(tmp, jwks_file)

    def mint(self, tenant: str, subject: str, roles: Iterable[str], ttl_s: int = 3600, audience: str = "",
             now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        claims = {"iss": self.issuer, "sub": subject, "aud": audience or self.audience, "iat": issued,
                  "nbf": issued, "exp": issued + ttl_s, "jti": uuid.uuid4().hex, "tenant": tenant,
                  "roles": sorted(set(roles))}
        return jwt.encode({"alg": "ES256", "kid": self.key.kid}, claims, self.key, algorithms=["ES256"])

    def verifier(self, now: Callable[[], float] = time.time) -> JwtVerifier:
        return JwtVerifier(issuer=self.issuer, audience=self.audience, jwks=StaticJwks(self.jwks), now=now)
