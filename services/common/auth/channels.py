"""Client credentials of platform components: a worker or service calling another one presents
its client certificate (mutual TLS) to the component listener, trusting only the platform CA."""

from __future__ import annotations

import grpc

from services.common.auth.pki import ensure_local_pki, issue_client
from services.common.config import PlatformConfig


def component_credentials(config: PlatformConfig, kind: str, name: str) -> grpc.ChannelCredentials:
    """Mutual-TLS credentials naming ``spiffe://privtune/<kind>/<name>``, issued from the platform CA."""
    pki = ensure_local_pki(config.pki_dir)
    cert, key = issue_client(pki, kind, name).read()
    return grpc.ssl_channel_credentials(root_certificates=pki.ca_bytes(), private_key=key, certificate_chain=cert)
