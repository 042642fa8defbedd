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
