"""Bearer tokens, the role table and component certificates, attacked the way a forger would."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography import x509

from privtune.v1 import (curation_service_pb2, curation_work_service_pb2, dataset_service_pb2, registry_service_pb2,
                         training_attempt_service_pb2, training_service_pb2)
from services.common.auth import roles
from services.common.auth.grpc_auth import Authenticator
from services.common.auth.pki import ensure_local_pki, issue_client, spiffe_identity
from services.common.auth.tokens import DEV_ISSUER, DevIssuer, JwtVerifier, StaticJwks, Verifiers
from services.common.errors import PermissionDenied, Unauthenticated

pytestmark = pytest.mark.unit
NOW = 1_800_000_000


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return DevIssuer(tmp_path / "auth")


def _refused(verifier: JwtVerifier | Verifiers, token: str) -> str:
    with pytest.raises(Unauthenticated) as info:
        verifier.verify(token)
    return info.value.reason


def test_a_valid_token_gives_its_tenant_subject_and_known_roles(issuer: DevIssuer) -> None:
    token = issuer.mint("acme", "alice@acme", ["ml-engineer", "root", "viewer"], now=NOW)
    claims = issuer.verifier(now=lambda: NOW + 10).verify(token)
    assert (claims.tenant, claims.subject, claims.roles) == ("acme", "alice@acme", frozenset({"ml-engineer", "viewer"}))


def test_expired_early_foreign_and_misaddressed_tokens_are_refused(issuer: DevIssuer, tmp_path: Path) -> None:
    verifier = issuer.verifier(now=lambda: NOW)
    assert _refused(verifier, issuer.mint("acme", "a", ["viewer"], ttl_s=60, now=NOW - 3600)) == "TOKEN_EXPIRED"
    assert _refused(verifier, issuer.mint("acme", "a", ["viewer"], now=NOW + 3600)) == "TOKEN_NOT_YET_VALID"
    assert _refused(verifier, issuer.mint("acme", "a", ["viewer"], audience="billing", now=NOW)) == "WRONG_AUDIENCE"
    # the same issuer name, another key: someone who made their own "privtune" issuer
    impostor = DevIssuer(tmp_path / "impostor")
    assert _refused(verifier, impostor.mint("acme", "a", ["admin"], now=NOW)) in ("UNKNOWN_SIGNING_KEY",
                                                                                  "BAD_SIGNATURE")
    other = DevIssuer(tmp_path / "other", issuer="https://evil.example/")
    assert _refused(Verifiers([verifier]), other.mint("acme", "a", ["admin"], now=NOW)) == "WRONG_ISSUER"
    assert _refused(verifier, other.mint("acme", "a", ["admin"], now=NOW)) in ("UNKNOWN_SIGNING_KEY",
                                                                               "BAD_SIGNATURE", "WRONG_ISSUER")


def _tampered(token: str, **changes: object) -> str:
    head, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{signature}"


def test_a_token_with_an_edited_claim_or_no_signature_is_refused(issuer: DevIssuer) -> None:
    verifier = issuer.verifier(now=lambda: NOW)
    token = issuer.mint("acme", "a", ["viewer"], now=NOW)
    assert _refused(verifier, _tampered(token, tenant="globex")) == "BAD_SIGNATURE"
    assert _refused(verifier, _tampered(token, roles=["admin"])) == "BAD_SIGNATURE"
    unsigned = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    assert _refused(verifier, f"{unsigned}.{token.split('.')[1]}.") in ("MALFORMED_TOKEN", "UNKNOWN_SIGNING_KEY",
                                                                       "BAD_SIGNATURE")
    for junk in ("", "abc", "a.b.c", "x" * 9000, token + "x"):
        assert _refused(verifier, junk) in ("MALFORMED_TOKEN", "BAD_SIGNATURE", "UNKNOWN_SIGNING_KEY")


def test_a_token_without_a_valid_tenant_is_refused(issuer: DevIssuer) -> None:
    verifier = JwtVerifier(issuer=DEV_ISSUER, audience="privtune", jwks=StaticJwks(issuer.jwks), now=lambda: NOW)
    for tenant in ("", "Acme", "../globex", "a" * 70):
        assert _refused(verifier, issuer.mint(tenant, "a", ["viewer"], now=NOW)) == "MISSING_CLAIM"


def test_every_rpc_the_platform_serves_has_roles_and_nothing_else_does() -> None:
    import importlib
    import pkgutil

    import privtune.v1

    modules = [importlib.import_module(f"privtune.v1.{m.name}") for m in pkgutil.iter_modules(privtune.v1.__path__)
               if m.name.endswith("_service_pb2")]  # every service any .proto declares, new ones included
    services = [s for module in modules for s in module.DESCRIPTOR.services_by_name.values()]
    assert {dataset_service_pb2, curation_service_pb2, training_service_pb2, registry_service_pb2,
            training_attempt_service_pb2, curation_work_service_pb2} <= set(modules)
    methods = {f"/{s.full_name}/{m.name}" for s in services for m in s.methods}
    assert methods == set(roles.RPC_ROLES)
    assert roles.decide("/privtune.v1.Nope/Nothing", roles.ROLES) == (False, False)  # deny by default


def test_roles_allow_what_they_name_and_break_glass_is_flagged() -> None:
    create = "/privtune.v1.DatasetService/CreateDataset"
    alias = "/privtune.v1.ModelRegistryService/SetModelAlias"
    claim = "/privtune.v1.TrainingAttemptService/ClaimAttempt"
    assert roles.decide(create, {"viewer"}) == (False, False)
    assert roles.decide(create, {"ml-engineer"}) == (True, False)
    assert roles.decide(alias, {"ml-engineer"}) == (False, False)
    assert roles.decide(alias, {"approver"}) == (True, False)
    assert roles.decide(claim, {"admin"}) == (False, False)  # only workers run attempts
    assert roles.decide(claim, {"break-glass"}) == (False, False)
    assert roles.decide(alias, {"break-glass"}) == (True, True)


def test_component_certificates_name_their_component(tmp_path: Path) -> None:
    pki = ensure_local_pki(tmp_path / "pki")
    pair = issue_client(pki, "worker", "training")
    cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
    uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier)
    assert uris == ["spiffe://privtune/worker/training"]
    assert oct(pair.key.stat().st_mode & 0o777) == oct(0o600)
    assert spiffe_identity("spiffe://privtune/service/orchestrator") == ("service", "orchestrator")
    for bad in ("spiffe://other/worker/x", "spiffe://privtune/admin/x", "spiffe://privtune/worker/", "https://x"):
        assert spiffe_identity(bad) is None
    with pytest.raises(ValueError):
        issue_client(pki, "worker", "../x")


def test_the_authenticator_never_takes_the_tenant_from_a_header(issuer: DevIssuer, tmp_path: Path) -> None:
    auth = Authenticator(verifiers=Verifiers([issuer.verifier()]))
    token = issuer.mint("acme", "alice", ["ml-engineer"])
    caller = auth.authenticate({"authorization": f"Bearer {token}", "x-privtune-actor": "mallory"}, {})
    assert (caller.tenant_id, caller.actor, caller.via) == ("acme", "alice", "token")
    with pytest.raises(PermissionDenied) as info:
        auth.authenticate({"authorization": f"Bearer {token}", "x-privtune-tenant": "globex"}, {})
    assert info.value.reason == "TENANT_MISMATCH"
    with pytest.raises(Unauthenticated) as missing:
        auth.authenticate({"x-privtune-tenant": "acme", "x-privtune-actor": "alice"}, {})  # headers alone
    assert missing.value.reason == "MISSING_CREDENTIALS"
    for header in ("Basic abc", "Bearer", "token abc"):
        with pytest.raises(Unauthenticated):
            auth.authenticate({"authorization": header}, {})
    pki = ensure_local_pki(tmp_path / "pki")
    worker = auth.authenticate({"x-privtune-tenant": "acme"},
                               {"x509_pem_cert": [issue_client(pki, "worker", "w1").cert.read_bytes()]})
    assert (worker.actor, worker.roles, worker.via) == ("worker:w1", frozenset({"worker"}), "certificate")
    pod = auth.authenticate({"x-privtune-tenant": "acme"},
                            {"x509_pem_cert": [issue_client(pki, "worker", "k8s-job-a1").cert.read_bytes()]})
    assert pod.roles == frozenset({"attempt"})  # a per-attempt pod certificate: ClaimAttempt only


def test_a_remembered_token_still_expires(issuer: DevIssuer) -> None:
    clock = [float(NOW)]
    verifiers = Verifiers([issuer.verifier(now=lambda: clock[0])], now=lambda: clock[0])
    token = issuer.mint("acme", "a", ["viewer"], ttl_s=60, now=NOW)
    assert verifiers.verify(token).tenant == "acme"
    assert verifiers.verify(token).tenant == "acme"  # from the cache
    clock[0] = NOW + 60 + 31  # past expiry and leeway
    assert _refused(verifiers, token) == "TOKEN_EXPIRED"
    assert _refused(verifiers, _tampered(token, tenant="globex")) == "BAD_SIGNATURE"  # a new token string


def test_odd_claim_values_are_refused_not_crashed_on(issuer: DevIssuer) -> None:
    from joserfc import jwt as jose_jwt

    verifier = issuer.verifier(now=lambda: NOW)

    def signed(**claims: object) -> str:
        body = {"iss": DEV_ISSUER, "aud": "privtune", "sub": "alice", "tenant": "acme", "exp": NOW + 60, **claims}
        return jose_jwt.encode({"alg": "ES256", "kid": issuer.key.kid}, body, issuer.key, algorithms=["ES256"])

    assert _refused(verifier, signed(exp=float("inf"))) == "MISSING_CLAIM"
    assert _refused(verifier, signed(exp=True)) == "MISSING_CLAIM"
    assert _refused(verifier, signed(exp="9999999999")) == "MISSING_CLAIM"
    assert _refused(verifier, signed(nbf="4000000000")) == "MALFORMED_TOKEN"
    assert _refused(verifier, signed(sub="root\nINFO forged log line")) == "MISSING_CLAIM"
    assert _refused(verifier, signed(sub="x" * 200)) == "MISSING_CLAIM"
    assert verifier.verify(signed(roles="viewer ml-engineer")).roles == frozenset({"viewer", "ml-engineer"})


def test_an_unreachable_issuer_is_asked_at_most_once_per_refresh_interval() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from services.common.auth.tokens import HttpJwks

    hits = []

    class Failing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            hits.append(self.path)
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        jwks = HttpJwks(f"http://127.0.0.1:{server.server_address[1]}/jwks.json", min_refresh_s=3600)
        for _ in range(20):
            with pytest.raises(Unauthenticated) as info:
                jwks.keys(refresh=True)
            assert info.value.reason == "ISSUER_UNREACHABLE"
        assert len(hits) == 1
    finally:
        server.shutdown()
    with pytest.raises(ValueError, match="https"):
        HttpJwks("http://idp.example.com/jwks.json")


def _make_pki(root: str) -> None:
    issue_client(ensure_local_pki(Path(root)), "worker", "training")
    DevIssuer(Path(root) / "auth")


def test_processes_starting_together_make_one_ca_and_one_issuer_key(tmp_path: Path) -> None:
    import multiprocessing

    from cryptography.hazmat.primitives.asymmetric import ec

    root = tmp_path / "pki"
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_make_pki, args=(str(root),)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    ca = x509.load_pem_x509_certificate((root / "ca.pem").read_bytes())
    for leaf in ("server.pem", "worker-training.pem"):
        cert = x509.load_pem_x509_certificate((root / leaf).read_bytes())
        public = ca.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        cert.verify_directly_issued_by(ca)  # raises if another process's CA signed it
    issuer = DevIssuer(root / "auth")
    assert issuer.verifier().verify(issuer.mint("acme", "a", ["viewer"])).tenant == "acme"
