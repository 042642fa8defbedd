"""A Kubernetes pod's entry point reads its client certificate from the files its env vars name, and
refuses to start, saying which file and why, when one is missing, unreadable or expired."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import grpc
import pytest

from gpu_worker.run_attempt import CA_ENV, CLIENT_CERT_ENV, CLIENT_KEY_ENV, CredentialsError, claim_credentials, main
from services.common.auth.pki import ensure_local_pki
from services.orchestrator.executors.kubernetes_credentials import issue_pod_credentials

pytestmark = pytest.mark.unit


@pytest.fixture
def mounted(tmp_path: Path) -> dict[str, str]:
    """The env of a pod whose certificate Secret is mounted at ``tmp_path/tls``."""
    pki = ensure_local_pki(tmp_path / "pki")
    creds = issue_pod_credentials(pki, "k8s-acme-job-1-a1", dt.timedelta(hours=1))
    tls = tmp_path / "tls"
    tls.mkdir()
    for name, data in (("tls.crt", creds.cert_pem), ("tls.key", creds.key_pem), ("ca.crt", creds.ca_pem)):
        (tls / name).write_bytes(data)
    return {CLIENT_CERT_ENV: str(tls / "tls.crt"), CLIENT_KEY_ENV: str(tls / "tls.key"), CA_ENV: str(tls / "ca.crt")}


def test_the_mounted_files_make_mutual_tls_credentials(mounted: dict[str, str]) -> None:
    assert isinstance(claim_credentials(mounted), grpc.ChannelCredentials)


@pytest.mark.parametrize("name", [CLIENT_CERT_ENV, CLIENT_KEY_ENV, CA_ENV])
def test_an_unset_variable_is_named(mounted: dict[str, str], name: str) -> None:
    env = {k: v for k, v in mounted.items() if k != name}
    with pytest.raises(CredentialsError, match=rf"\${name} is not set"):
        claim_credentials(env)


def test_a_secret_that_is_not_mounted_is_named_with_its_path(mounted: dict[str, str], tmp_path: Path) -> None:
    env = {**mounted, CLIENT_KEY_ENV: str(tmp_path / "absent" / "tls.key")}
    with pytest.raises(CredentialsError, match="absent/tls.key, which cannot be read.*Secret mounted"):
        claim_credentials(env)


def test_a_file_that_is_not_pem_is_refused(mounted: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(b"\x00" * 100)
    with pytest.raises(CredentialsError, match="not a PEM file"):
        claim_credentials({**mounted, CA_ENV: str(tmp_path / "junk")})


def test_an_expired_certificate_is_refused_before_any_connection(mounted: dict[str, str]) -> None:
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
    with pytest.raises(CredentialsError, match="expired at .*retries the attempt"):
        claim_credentials(mounted, now=later)


def test_the_entry_point_exits_2_without_its_certificate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    for name in (CLIENT_CERT_ENV, CLIENT_KEY_ENV, CA_ENV):
        monkeypatch.delenv(name, raising=False)
    code = main(["--tenant", "acme", "--job-id", "job-1", "--attempt", "1", "--models-root", str(tmp_path),
                 "--storage-root", tmp_path.as_uri(), "--work-dir", str(tmp_path), "--bus", "sqlite:///unused.db",
                 "--orchestrator", "127.0.0.1:9"])
    assert code == 2
    assert f"${CLIENT_CERT_ENV} is not set" in capsys.readouterr().err
