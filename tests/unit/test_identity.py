from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import Unauthenticated
from services.common.identity import Caller, bind_caller, caller_from_metadata, is_tenant_id, unbind_caller

pytestmark = pytest.mark.unit
HEADERS = [("x-privtune-tenant", "acme-bank"), ("x-privtune-actor", "svc:curator@acme")]


def test_the_caller_is_the_verified_one_whatever_the_headers_say() -> None:
    verified = Caller("globex", "bob", frozenset({"viewer"}), via="token")
    token = bind_caller(verified)
    try:
        assert caller_from_metadata(HEADERS) == verified
    finally:
        unbind_caller(token)


@pytest.mark.parametrize("md", [HEADERS, [], None, [("x-privtune-tenant", b"acme"), ("x-privtune-actor", b"a")]])
def test_headers_alone_never_identify_a_caller(md: list[tuple[str, str | bytes]] | None) -> None:
    """Without a caller bound by the auth layer, a handler refuses the call, however well-formed its headers."""
    with pytest.raises(Unauthenticated, match="authorization: Bearer") as info:
        caller_from_metadata(md)
    assert info.value.reason == "MISSING_CREDENTIALS"


@pytest.mark.parametrize("value", ["acme", "a", "acme-bank", "0day", "9-9", "a" * 63, "x-"])
def test_tenant_ids_that_are_accepted(value: str) -> None:
    assert is_tenant_id(value)


@pytest.mark.parametrize("value", ["", "-acme", "ACME", "Acme", "acme_bank", "acme.bank", "acme/x", "../acme", "..",
                                   "a" * 64, "acme\n", "\nacme", "acme ", "ácme", "_unauthenticated"])
def test_anything_else_is_not_a_tenant_id(value: str) -> None:
    assert not is_tenant_id(value)


def test_every_tenant_check_uses_the_shared_rule(tmp_path: Path) -> None:
    """Storage paths, policy files and component calls accept exactly the ids the API accepts."""
    from services.common.auth.grpc_auth import Authenticator
    from services.common.auth.pki import ensure_local_pki, issue_client
    from services.common.errors import InvalidArgument
    from services.common.storage import tenant_root_uri
    from services.orchestrator.policy_files import load_policy

    pki = ensure_local_pki(tmp_path / "pki")
    with pytest.raises(Unauthenticated):  # a component names the tenant it acts for in a header
        Authenticator().authenticate({"x-privtune-tenant": "acme\n"},
                                     {"x509_pem_cert": [issue_client(pki, "worker", "w1").cert.read_bytes()]})
    with pytest.raises(InvalidArgument):
        tenant_root_uri("file:///data/tenants", "acme\n")
    with pytest.raises(InvalidArgument):
        load_policy(None, "acme\n")
    assert tenant_root_uri("file:///data/tenants", "acme") == "file:///data/tenants/acme/"
