"""Files parsed once until they change (issue 17: no per-call work that could be done once)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.common import file_cache
from services.orchestrator.policy_files import load_policy

pytestmark = pytest.mark.unit


def _age(path: Path, seconds: float = 60.0) -> None:
    """Set the file's modification time ``seconds`` back (its change time stays now: see RACY_S)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))


def test_a_file_is_parsed_once_and_again_after_every_edit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.json"
    path.write_text("1")
    parses: list[str] = []

    def parse(p: Path) -> str:
        parses.append(p.read_text())
        return p.read_text()

    # a file changed within RACY_S is parsed on every call: its stamp could hide a same-size edit
    assert [file_cache.parsed(path, parse) for _ in range(3)] == ["1"] * 3 and parses == ["1"] * 3
    monkeypatch.setattr(file_cache, "RACY_S", 0.0)  # from here on, stamps are old enough to trust
    parses.clear()
    assert [file_cache.parsed(path, parse) for _ in range(5)] == ["1"] * 5
    assert parses == ["1"]
    path.write_text("2")  # same size, new content: the change time and mtime move
    _age(path)
    assert file_cache.parsed(path, parse) == "2" and parses == ["1", "2"]
    replacement = tmp_path / "b.json"
    replacement.write_text("3")
    replacement.replace(path)  # an atomic rename: another inode
    assert file_cache.parsed(path, parse) == "3"
    path.unlink()
    with pytest.raises(FileNotFoundError):
        file_cache.parsed(path, parse)


def test_a_policy_edit_takes_effect_on_the_next_call_and_a_broken_one_is_not_cached(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text('version: "v1"\n')
    assert load_policy(tmp_path, "acme").version == "v1"
    (tmp_path / "acme.yaml").write_text('version: "v2-longer"\n')
    assert load_policy(tmp_path, "acme").version == "v2-longer"
    (tmp_path / "acme.yaml").write_text("version: [unclosed\n")
    for _ in range(2):  # a parse error is raised each time, never remembered as a policy
        with pytest.raises(Exception, match="YAML|yaml"):
            load_policy(tmp_path, "acme")
