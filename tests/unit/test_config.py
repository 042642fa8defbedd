"""PlatformConfig's auth defaults: tls unless insecure-headers is asked for, and where the PKI and the
development token issuer live."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.config import PlatformConfig

pytestmark = pytest.mark.unit


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("PRIVTUNE_AUTH", "PRIVTUNE_PKI_DIR", "PRIVTUNE_AUTH_DIR"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_tls_is_the_default_and_keeps_its_keys_in_the_data_folder(clean_env: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    config = PlatformConfig.from_env(tmp_path)
    assert config.auth_mode == "tls" and config.tls
    assert (config.pki_dir, config.auth_dir) == (tmp_path / "pki", tmp_path / "auth")
    assert PlatformConfig(data_dir=tmp_path, bus_uri="", store_uri="", storage_root="", grpc_address="").tls


def test_insecure_headers_only_when_asked_for(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("PRIVTUNE_AUTH", "insecure-headers")
    assert not PlatformConfig.from_env(tmp_path).tls
    assert PlatformConfig.from_env(tmp_path, auth_mode="tls").tls  # an explicit override wins


def test_the_pki_and_the_issuer_can_live_elsewhere(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.chdir(tmp_path)
    clean_env.setenv("PRIVTUNE_PKI_DIR", "shared/pki")
    clean_env.setenv("PRIVTUNE_AUTH_DIR", str(tmp_path / "shared" / "auth"))
    config = PlatformConfig.from_env(tmp_path / "data")
    assert (config.pki_dir, config.auth_dir) == (tmp_path / "shared" / "pki", tmp_path / "shared" / "auth")
    other = PlatformConfig.from_env(tmp_path / "data", pki_root=tmp_path / "mine")
    assert other.pki_dir == tmp_path / "mine"
