"""Tokens from a real OpenID Connect provider (Ory Hydra), verified without trusting it.

Each test verifies like a resource server would: fetch the discovery document and the JWKS
over HTTP, check the RS256 signature with joserfc, then ``iss``, ``aud``, ``exp``, ``nbf``
and ``iat``, and only then read the ``tenant`` and ``roles`` claims.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from typing import Any

import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidClaimError
from joserfc.jwk import KeySet

from privtune.devinfra import DevInfraError
from tests.oidc_provider import OidcProvider, oidc_provider  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

AUDIENCE = "privtune"
OTHER_AUDIENCE = "billing-system"
LEEWAY_S = 30  # clock skew a resource server tolerates on exp/nbf/iat


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _keys(provider: OidcProvider) -> KeySet:
    discovery = _get_json(f"{provider.issuer}/.well-known/openid-configuration")
    assert discovery["issuer"] == provider.issuer
    assert discovery["jwks_uri"] == provider.jwks_url
    return KeySet.import_key_set(_get_json(discovery["jwks_uri"]))


def _claims_registry(issuer: str, audience: str) -> jwt.JWTClaimsRegistry:
    return jwt.JWTClaimsRegistry(
        leeway=LEEWAY_S,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": audience},
        exp={"essential": True},
        nbf={"essential": True},
        iat={"essential": True},
    )


def _verify(token: str, provider: OidcProvider, audience: str = AUDIENCE) -> dict[str, Any]:
    """The token's claims if its signature, issuer, audience and times check out; raises otherwise."""
    decoded = jwt.decode(token, _keys(provider), algorithms=["RS256"])
    _claims_registry(provider.issuer, audience).validate(decoded.claims)
    return decoded.claims


def _change_one_payload_byte(token: str, old: bytes, new: bytes) -> str:
    header, payload, signature = token.split(".")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert raw.count(old) == 1 and len(old) == len(new)
    changed = raw.replace(old, new)
    assert sum(a != b for a, b in zip(raw, changed)) == 1
    return ".".join([header, base64.urlsafe_b64encode(changed).rstrip(b"=").decode(), signature])


@pytest.fixture(scope="module")
def acme_client(oidc_provider: OidcProvider) -> tuple[str, str]:
    return oidc_provider.create_client("acme", ["ml-engineer"], audience=[AUDIENCE, OTHER_AUDIENCE])


def test_token_carries_verified_tenant_and_roles(oidc_provider: OidcProvider, acme_client: tuple[str, str]) -> None:
    client_id, secret = acme_client
    token = oidc_provider.client_credentials_token(client_id, secret, audience=[AUDIENCE])

    claims = _verify(token, oidc_provider)

    assert claims["tenant"] == "acme"
    assert claims["roles"] == ["ml-engineer"]
    assert claims["sub"] == client_id
    assert claims["aud"] == [AUDIENCE]


def test_token_for_another_audience_fails_the_audience_check(
    oidc_provider: OidcProvider, acme_client: tuple[str, str]
) -> None:
    client_id, secret = acme_client
    token = oidc_provider.client_credentials_token(client_id, secret, audience=[OTHER_AUDIENCE])
    assert _verify(token, oidc_provider, audience=OTHER_AUDIENCE)["tenant"] == "acme"  # a good token...

    with pytest.raises(InvalidClaimError, match="aud"):  # ...but not for us
        _verify(token, oidc_provider)


def test_tampered_token_fails_the_signature_check(oidc_provider: OidcProvider, acme_client: tuple[str, str]) -> None:
    client_id, secret = acme_client
    token = oidc_provider.client_credentials_token(client_id, secret, audience=[AUDIENCE])
    tampered = _change_one_payload_byte(token, b'"acme"', b'"acmf"')

    with pytest.raises(BadSignatureError):
        _verify(tampered, oidc_provider)


def test_client_without_a_tenant_gets_no_token(oidc_provider: OidcProvider) -> None:
    client_id, secret = oidc_provider.create_client("", ["ml-engineer"], audience=[AUDIENCE])

    with pytest.raises(DevInfraError, match="access_denied"):
        oidc_provider.client_credentials_token(client_id, secret, audience=[AUDIENCE])
