"""What a curation job reads: exactly the dataset's objects, never a neighbour that shares a prefix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.common.storage import FileStorage
from services.curation.config import CurationConfig
from services.curation.pipeline import Curator

pytestmark = pytest.mark.unit


def _record(topic: str) -> str:
    return json.dumps({"instruction": f"Explain how {topic} work for a new customer of the bank today.",
                       "output": f"Here is how {topic} work: you apply in the app and we answer within a week."})


@pytest.mark.parametrize("dataset", ["docs/a.jsonl", "docs/"])
def test_a_single_object_dataset_does_not_read_objects_that_share_its_name_prefix(tmp_path: Path,
                                                                                 dataset: str) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.jsonl").write_text(_record("overdraft fees") + "\n")
    (docs / "a.jsonl.bak").write_text(_record("mortgage rates") + "\n")   # an editor's backup, not the dataset
    outcome = Curator(CurationConfig(redact_pii=False, holdout_fraction=0.0), salt="s").run(
        FileStorage(tmp_path), dataset, "ds", "0" * 64, work_dir=_work(tmp_path))
    expected = 1 if dataset == "docs/a.jsonl" else 2
    assert outcome.report["input"]["objects"] == expected
    assert outcome.report["examples"]["train"] == 1
    # In the folder, the backup is read and quarantined (no parser reads .bak); as a single object it is not there.
    assert outcome.report["quarantine"]["total"] == expected - 1


def _work(tmp_path: Path) -> Path:
    (tmp_path / "work").mkdir()
    return tmp_path / "work"


def test_a_record_with_half_a_character_is_quarantined_and_the_others_kept(tmp_path: Path) -> None:
    """JSON can carry a lone UTF-16 surrogate (``"\\ud800"``), which no later stage can encode: that record
    alone is quarantined, the job goes on, and its text is nowhere in the report."""
    docs = tmp_path / "docs"
    docs.mkdir()
    good = [_record(topic) for topic in ("overdraft fees", "card replacements", "wire transfers")]
    bad = json.dumps({"instruction": "Reset my password for the branch portal please, it expired today.",
                      "output": "Your new password=Xk29fj\ud800Lq83mZp0aQ77 works now for the portal."})
    (docs / "a.jsonl").write_text("\n".join([good[0], bad, *good[1:]]) + "\n")
    outcome = Curator(CurationConfig(redact_pii=False, holdout_fraction=0.0), salt="s").run(
        FileStorage(tmp_path), "docs/", "ds", "0" * 64, work_dir=_work(tmp_path))
    assert outcome.report["examples"]["train"] == 3
    [item] = outcome.report["quarantine"]["items"]
    assert (item["code"], item["line"]) == ("bad_encoding", 2)
    assert "Xk29fj" not in json.dumps(outcome.report)
