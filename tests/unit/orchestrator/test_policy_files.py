"""Policy files: tenant file over default.yaml over the built-in policy; clear errors for bad files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument
from services.orchestrator.policy import default_policy
from services.orchestrator.policy_files import (BUILTIN_SOURCE, PolicyFileError, builtin_policy, load_policy,
                                                load_policy_file)

pytestmark = pytest.mark.unit

REPO_DEFAULT = Path(__file__).resolve().parents[3] / "deploy" / "policies" / "default.yaml"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_tenant_file_wins_over_default_yaml(tmp_path: Path) -> None:
    write(tmp_path, "default.yaml", "version: d-1\n")
    tenant = write(tmp_path, "acme.yaml", "version: acme-7\nlimits:\n  max_epochs: 3\n")
    loaded = load_policy(tmp_path, "acme")
    assert loaded.version == "acme-7" and loaded.policy.limits.max_epochs == 3
    assert loaded.policy.limits.max_gpus == 8  # omitted keys keep their defaults
    assert loaded.sha256 == hashlib.sha256(tenant.read_bytes()).hexdigest()
    assert loaded.source == str(tenant)


def test_default_yaml_applies_to_a_tenant_without_a_file(tmp_path: Path) -> None:
    default = write(tmp_path, "default.yaml", "version: d-1\nquotas:\n  weight: 2.5\n")
    loaded = load_policy(tmp_path, "globex")
    assert (loaded.version, loaded.policy.quotas.weight) == ("d-1", 2.5)
    assert loaded.sha256 == hashlib.sha256(default.read_bytes()).hexdigest()


def test_builtin_policy_when_no_file_applies(tmp_path: Path) -> None:
    for folder in (tmp_path, tmp_path / "missing", None):
        loaded = load_policy(folder, "acme")
        assert loaded.policy == default_policy() and loaded.source == BUILTIN_SOURCE
        assert loaded.version == default_policy().version and len(loaded.sha256) == 64
        assert loaded == builtin_policy()


def test_shipped_default_yaml_is_the_builtin_policy() -> None:
    loaded = load_policy_file(REPO_DEFAULT)
    assert loaded.policy == default_policy()
    assert loaded.sha256 == hashlib.sha256(REPO_DEFAULT.read_bytes()).hexdigest()


def test_malformed_yaml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "acme.yaml", "version: v\nlimits: [max_epochs: 3\n")
    with pytest.raises(PolicyFileError) as err:
        load_policy(tmp_path, "acme")
    assert path.name in str(err.value) and "not valid YAML" in str(err.value)
    assert str(path.parent) not in str(err.value)  # callers never see server paths
    assert isinstance(err.value, FailedPrecondition)


def test_malformed_tenant_file_does_not_fall_back_to_default(tmp_path: Path) -> None:
    write(tmp_path, "default.yaml", "version: d-1\n")
    write(tmp_path, "acme.yaml", "- just\n- a list\n")
    with pytest.raises(PolicyFileError, match="acme.yaml.*mapping"):
        load_policy(tmp_path, "acme")


def test_unknown_key_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "acme.yaml", "version: v\nlimits:\n  max_gpu: 2\n")
    with pytest.raises(PolicyFileError) as err:
        load_policy(tmp_path, "acme")
    message = str(err.value)
    assert path.name in message and "'limits.max_gpu'" in message and "max_gpus" in message
    assert err.value.path == path and err.value.reason == "POLICY_FILE_INVALID"
    assert err.value.key == "limits.max_gpu"


def test_unknown_section_names_the_known_ones(tmp_path: Path) -> None:
    write(tmp_path, "acme.yaml", "version: v\nbudget: {}\n")
    with pytest.raises(PolicyFileError, match="'budget'.*privacy"):
        load_policy(tmp_path, "acme")


def test_missing_version_and_bad_values_name_the_key(tmp_path: Path) -> None:
    write(tmp_path, "acme.yaml", "limits:\n  max_epochs: 3\n")
    with pytest.raises(PolicyFileError, match="'version': is required"):
        load_policy(tmp_path, "acme")
    write(tmp_path, "acme.yaml", "version: v\nlimits:\n  max_epochs: many\n")
    with pytest.raises(PolicyFileError, match="'limits.max_epochs'.*'many'"):
        load_policy(tmp_path, "acme")


def test_duplicate_key_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "acme.yaml", "version: v\nlimits:\n  max_gpus: 2\n  max_gpus: 64\n")
    with pytest.raises(PolicyFileError, match="duplicate key 'max_gpus'"):
        load_policy(tmp_path, "acme")


def test_tenant_id_cannot_name_another_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        load_policy(tmp_path, "../etc/passwd")
