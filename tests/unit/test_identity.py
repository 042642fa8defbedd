from __future__ import annotations

import pytest

from services.common.errors import Unauthenticated
from services.common.identity import Caller, caller_from_metadata

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
