"""The token issuers a platform process trusts, from its configuration (every server uses the same)."""

from __future__ import annotations

from services.common.auth.tokens import DevIssuer, HttpJwks, JwtVerifier, Verifiers
from services.common.config import PlatformConfig


def trusted_verifiers(config: PlatformConfig) -> Verifiers:
    """The development issuer (when trusted) and the enterprise OpenID Connect issuer (when set).

    Raises:
        ValueError: no token issuer is trusted (the development issuer is off and no OIDC issuer is set).
    """
    verifiers = [DevIssuer(config.auth_dir).verifier()] if config.trusts_dev_issuer else []
    if config.oidc_issuer:
        jwks = config.oidc_jwks_uri or config.oidc_issuer.rstrip("/") + "/.well-known/jwks.json"
        verifiers.append(JwtVerifier(issuer=config.oidc_issuer, audience=config.oidc_audience, jwks=HttpJwks(jwks)))
    if not verifiers:
        raise ValueError("no token issuer is trusted: set PRIVTUNE_OIDC_ISSUER, or PRIVTUNE_DEV_ISSUER=on")
    return Verifiers(verifiers)
