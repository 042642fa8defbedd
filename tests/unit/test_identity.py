from __future__ import annotations

import pytest

from services.common.errors import Unauthenticated
from services.common.identity import Caller, caller_from_metadata, is_tenant_id

pytestmark = pytest.mark.unit


def test_identity_from_metadata() -> None:
    md = [("x-privtune-tenant", "acme-bank"), ("x-privtune-actor", "svc:curator@acme")]
    assert caller_from_metadata(md) == Caller("acme-bank", "svc:curator@acme")


@pytest.mark.parametrize("md, needle", [
    ([], "x-privtune-tenant"),
    ([("x-privtune-tenant", "acme")], "x-privtune-actor"),
    ([("x-privtune-tenant", "../other"), ("x-privtune-actor", "a")], "not a tenant id"),
    ([("x-privtune-tenant", "ACME"), ("x-privtune-actor", "a")], "not a tenant id"),
    ([("x-privtune-tenant", "acme"), ("x-privtune-actor", "a b")], "characters"),
])
def test_bad_identity_is_refused_with_the_header_named(md: list[tuple[str, str]], needle: str) -> None:
    with pytest.raises(Unauthenticated, match=needle):
        caller_from_metadata(md)


@pytest.mark.parametrize("value", ["acme", "a", "acme-bank", "0day", "9-9", "a" * 63, "x-"])
def test_tenant_ids_that_are_accepted(value: str) -> None:
    assert is_tenant_id(value)


@pytest.mark.parametrize("value", ["", "-acme", "ACME", "Acme", "acme_bank", "acme.bank", "acme/x", "../acme", "..",
                                   "a" * 64, "acme\n", "\nacme", "acme ", "ácme", "_unauthenticated"])
def test_anything_else_is_not_a_tenant_id(value: str) -> None:
    assert not is_tenant_id(value)


def test_every_tenant_check_uses_the_shared_rule() -> None:
    """Storage paths, policy files and denial records accept exactly the ids the API accepts."""
    from services.common.errors import InvalidArgument
    from services.common.storage import tenant_root_uri
    from services.orchestrator.policy_files import load_policy

    with pytest.raises(Unauthenticated):
        caller_from_metadata([("x-privtune-tenant", "acme\n"), ("x-privtune-actor", "a")])
    with pytest.raises(InvalidArgument):
        tenant_root_uri("file:///data/tenants", "acme\n")
    with pytest.raises(InvalidArgument):
        load_policy(None, "acme\n")
    assert tenant_root_uri("file:///data/tenants", "acme") == "file:///data/tenants/acme/"
