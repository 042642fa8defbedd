"""Records the PII stage drops (``pii.mode: drop_record``) are listed in the report by location, never text.

Integration tier: it runs the real PII worker pool (Presidio), which takes seconds to start.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.common.storage import FileStorage
from services.curation.config import CurationConfig
from services.curation.pipeline import Curator

pytestmark = pytest.mark.integration

MARKER = "MARKER-5b7e-AVOCET-FLINT"
ANSWER = "Refunds reach the card within five business days after the shop confirms the return."


def _jsonl(*records: object) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def test_records_dropped_for_pii_are_listed_by_location(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "acme")
    storage.write("data/pairs.jsonl", _jsonl(
        {"instruction": "How long do refunds take to arrive?", "output": ANSWER},
        {"instruction": "Who handles refunds for the northern region?",
         "output": f"Please write to jane.doe@example.com when a refund for the northern region is late or "
                   f"missing, and quote the code {MARKER} in the subject of the message."},
        {"instruction": "When is the refund desk open during the week?",
         "output": "The refund desk is open on weekdays from nine in the morning until five."}))
    config = CurationConfig(holdout_fraction=0.0, pii={"mode": "drop_record"})  # type: ignore[arg-type]
    (tmp_path / "work").mkdir()
    outcome = Curator(config, salt="s", pii_workers=1).run(storage, "data/", "ds-1", "0" * 64,
                                                           work_dir=tmp_path / "work")
    pii = outcome.report["dropped"]["pii"]  # type: ignore[index]
    assert [(i["source"], i["line"]) for i in pii["items"]] == [("pairs.jsonl", 2)]
    assert outcome.report["pii"]["dropped_records"] == 1  # type: ignore[index]
    assert outcome.report["examples"]["train"] == 2  # type: ignore[index]
    assert MARKER not in json.dumps(outcome.report)
