"""The PII worker pool: same results as in-process, order kept, crashes and orphans handled, no torch upstream."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from services.common.pii import PiiConfig, PiiRedactor
from services.common.pii.pool import WORKERS_ENV, PiiPool, PiiWorkerError, default_workers, worker_pids
from tests.platform_fixtures import wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TEXTS = [
    "Hi Priya Raman, please call me on (415) 555-2671 about the card 4111 1111 1111 1111.",
    "No personal data in this one, only a question about overdraft fees.",
    "",
    "Write to ana.garcia@contoso.co.uk or ana.garcia@contoso.co.uk again.",
    "Server 10.20.30.40 rejected the key AKIAIOSFODNN7EXAMPLE yesterday.",
]


def _fields(result: object) -> tuple[object, ...]:
    return (result.text, result.found, result.dropped)  # type: ignore[attr-defined]


def test_pool_results_match_the_in_process_redactor_in_order() -> None:
    config = PiiConfig(mode="redact")
    expected = [_fields(r) for r in PiiRedactor(config).redact_many(TEXTS)]
    batches = [TEXTS[i:i + 2] for i in range(0, len(TEXTS), 2)] * 7   # more batches than the in-flight window
    got = list(PiiPool(config, workers=2).redact_batches(batches))
    assert [len(b) for b in got] == [len(b) for b in batches]
    flat = [_fields(r) for batch in got for r in batch]
    assert flat == expected * 7
    assert "Priya" not in json.dumps([r[0] for r in flat])


def test_a_config_the_redactor_refuses_fails_the_first_batch_with_its_reason() -> None:
    pool = PiiPool(PiiConfig(mode="redact", pseudonymize=True), workers=1)   # no salt
    with pytest.raises(ValueError, match="salt"):
        list(pool.redact_batches([["Hi Ana Silva"]]))


def test_a_killed_worker_fails_the_job_clearly_and_the_next_job_gets_a_fresh_pool() -> None:
    config = PiiConfig(mode="redact")
    pool = PiiPool(config, workers=1)
    pool.warm_up()
    [pid] = worker_pids(1)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(PiiWorkerError, match="died"):
        list(pool.redact_batches([["Hi Ana Silva"]] * 4))
    again = list(PiiPool(config, workers=1).redact_batches([["Hi Ana Silva, call (415) 555-2671"]]))
    assert again[0][0].text == "Hi <PERSON>, call <PHONE_NUMBER>"
    assert worker_pids(1) and worker_pids(1) != [pid]


def test_workers_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WORKERS_ENV, "3")
    assert default_workers() == 3
    for bad in ("0", "-2", "two", "65", "100000"):
        monkeypatch.setenv(WORKERS_ENV, bad)
        with pytest.raises(ValueError, match=WORKERS_ENV):
            default_workers()
    monkeypatch.delenv(WORKERS_ENV)
    assert default_workers() >= 1


def test_curation_process_never_loads_spacy_or_torch_and_orphaned_workers_exit(tmp_path: Path) -> None:
    """A curation job in a fresh process, then kill -9 of that process: its PII workers must go too."""
    raw = tmp_path / "acme" / "raw"
    raw.mkdir(parents=True)
    rng = random.Random(7)
    words = ("overdraft fees card replacement wire transfer mortgage rate savings interest fraud alert statement "
             "copy travel notice loan payoff account closure branch hours cheque deposit limit pension").split()
    (raw / "a.jsonl").write_text("\n".join(json.dumps(
        {"instruction": f"Customer Maria Lopez asked about {' '.join(rng.sample(words, 8))}; "
                        f"call +1 415 555 {1000 + i}.",
         "output": f"About {' '.join(rng.sample(words, 10))}: see the handbook."}) for i in range(40)))
    script = textwrap.dedent(f"""
        import json, sys, tempfile, time
        from pathlib import Path
        from services.common.storage import FileStorage
        from services.curation.config import CurationConfig
        from services.curation.pipeline import Curator
        from services.common.pii.pool import worker_pids
        curator = Curator(CurationConfig(), salt="s", pii_workers=2)
        outcome = curator.run(FileStorage(Path({str(tmp_path / "acme")!r})), "raw/", "ds", "0" * 64,
                              work_dir=Path(tempfile.mkdtemp()))
        loaded = sorted(m for m in ("spacy", "torch", "presidio_analyzer", "thinc") if m in sys.modules)
        print(json.dumps({{"loaded": loaded, "pids": worker_pids(2), "train": outcome.report["examples"]["train"],
                          "pii": outcome.report["pii"]["found_by_type"]}}), flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, "the curation subprocess ended without output"
        result = json.loads(line)
        assert result["loaded"] == []
        assert result["train"] > 0 and result["pii"]["PHONE_NUMBER"] == 40
        assert result["pids"]   # started on demand: one or two, depending on how the batches queued
    finally:
        proc.kill()
        proc.wait()

    def gone() -> bool:
        return not any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in result["pids"])

    wait_until(gone, timeout=30, what="the PII workers of a killed curation process to exit")


def _state(pid: int) -> str:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "zombie"
    return next((line.lower() for line in status.splitlines() if line.startswith("State:")), "")
