"""PlatformConfig's auth settings: TLS is the only mode (the removed insecure-headers mode is refused,
at startup and in the CLI, saying what to do), and where the PKI and the development token issuer live."""

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


def test_the_pki_and_the_issuer_live_in_the_data_folder_by_default(clean_env: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    config = PlatformConfig.from_env(tmp_path)
    assert (config.pki_dir, config.auth_dir) == (tmp_path / "pki", tmp_path / "auth")
    clean_env.setenv("PRIVTUNE_AUTH", "tls")  # the one mode there is, as older deployments set it: no change
    assert PlatformConfig.from_env(tmp_path).pki_dir == tmp_path / "pki"


@pytest.mark.parametrize("value, says", [("insecure-headers", "that auth mode was removed"),
                                         ("plaintext", "is not an auth mode")])
def test_any_other_auth_mode_is_refused_at_startup_saying_what_to_do(clean_env: pytest.MonkeyPatch, tmp_path: Path,
                                                                     value: str, says: str) -> None:
    clean_env.setenv("PRIVTUNE_AUTH", value)
    with pytest.raises(ValueError, match=says) as info:
        PlatformConfig.from_env(tmp_path)
    assert "unset privtune_auth" in str(info.value).lower() and "docs/security.md" in str(info.value)


def test_the_cli_refuses_the_removed_mode_by_flag_and_by_environment(clean_env: pytest.MonkeyPatch, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from privtune.cli import main

    for command in (["up"], ["serve", "ingest"]):
        with pytest.raises(SystemExit) as flag:
            main([*command, "--data-dir", str(tmp_path), "--auth", "insecure-headers"])
        assert flag.value.code == 2 and "--auth was removed" in capsys.readouterr().err
    clean_env.setenv("PRIVTUNE_AUTH", "insecure-headers")
    with pytest.raises(SystemExit) as up:
        main(["up", "--data-dir", str(tmp_path)])
    assert "that auth mode was removed" in str(up.value.code)
    with pytest.raises(SystemExit) as client:  # the gRPC client commands, before any connection
        main(["datasets", "--tenant", "acme", "list"])
    assert "that auth mode was removed" in str(client.value.code)
    assert not (tmp_path / "pki").exists()  # nothing was started


def test_the_pki_and_the_issuer_can_live_elsewhere(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.chdir(tmp_path)
    clean_env.setenv("PRIVTUNE_PKI_DIR", "shared/pki")
    clean_env.setenv("PRIVTUNE_AUTH_DIR", str(tmp_path / "shared" / "auth"))
    config = PlatformConfig.from_env(tmp_path / "data")
    assert (config.pki_dir, config.auth_dir) == (tmp_path / "shared" / "pki", tmp_path / "shared" / "auth")
    other = PlatformConfig.from_env(tmp_path / "data", pki_root=tmp_path / "mine")
    assert other.pki_dir == tmp_path / "mine"


def test_a_misspelt_or_removed_setting_is_an_error_not_ignored(tmp_path: Path) -> None:
    import pydantic

    with pytest.raises(pydantic.ValidationError, match="auth_mode"):
        PlatformConfig.from_env(tmp_path, auth_mode="tls")
    with pytest.raises(pydantic.ValidationError, match="audit_seal_msec"):
        PlatformConfig.from_env(tmp_path, audit_seal_msec=100)
