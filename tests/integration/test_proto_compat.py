"""The schema checks in `make test` are not vacuous: buf catches a breaking change."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _buf() -> str:
    return subprocess.run([str(ROOT / "scripts" / "go_tool.sh"), "buf"], check=True, capture_output=True,
                          text=True).stdout.strip()


def _latest_release() -> Path:
    return sorted((ROOT / "proto" / "release").glob("v*.json"))[-1]


def _breaking(proto_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_buf(), "breaking", "--against", str(_latest_release())], cwd=proto_dir,
                          capture_output=True, text=True)


def test_current_protos_are_compatible_with_the_last_release() -> None:
    result = _breaking(ROOT / "proto")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("edit, needle", [
    (("string storage_uri = 3;", "uint64 storage_uri = 3;"), "changed type"),
    (("  string checksum_sha256 = 6;               // sha256 of the raw files' manifest\n", ""), "deleted"),
    (("DatasetRegistered dataset_registered = 20;", "DatasetRegistered dataset_registered = 99;"), "20"),
])
def test_a_breaking_edit_is_caught(tmp_path: Path, edit: tuple[str, str], needle: str) -> None:
    work = tmp_path / "proto"
    shutil.copytree(ROOT / "proto", work, ignore=shutil.ignore_patterns("release"))
    events = work / "privtune" / "v1" / "events.proto"
    text = events.read_text()
    assert edit[0] in text
    events.write_text(text.replace(edit[0], edit[1], 1))
    result = _breaking(work)
    assert result.returncode != 0
    assert needle in result.stdout + result.stderr


def test_an_additive_edit_passes(tmp_path: Path) -> None:
    work = tmp_path / "proto"
    shutil.copytree(ROOT / "proto", work, ignore=shutil.ignore_patterns("release"))
    events = work / "privtune" / "v1" / "events.proto"
    before = events.read_text()
    after = before.replace("  map<string, string> labels = 9;\n}",
                           "  map<string, string> labels = 9;\n  string owner_team = 10;\n}", 1)
    assert after != before
    events.write_text(after)
    result = _breaking(work)
    assert result.returncode == 0, result.stdout + result.stderr
