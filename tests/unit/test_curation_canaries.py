"""Planted canaries: deterministic secrets in the train split only, listed and hashed in the manifest, and
no change at all to a version curated without them."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from privtune.v1 import curation_config_pb2 as pb
from services.common.errors import InvalidArgument
from services.common.storage import FileStorage
from services.curation.canaries import CanaryConfig, insertion_positions, make_canaries
from services.curation.config import CurationConfig, from_message
from services.curation.pipeline import Curator, CurationOutcome
from services.curation.snapshot import ShardWriter

pytestmark = pytest.mark.unit

SECRET = re.compile(r"^\d{3} \d{3} \d{3}$")
PROMPT = re.compile(r"^What is the account recovery code for customer \d{4}\?$")
TOPICS = ("overdraft fees", "card replacements", "wire transfers", "mortgage rates", "savings interest",
          "loan applications", "branch hours", "mobile banking", "cheque deposits", "currency exchange",
          "credit limits", "account closure", "direct debits", "fraud alerts", "pension transfers",
          "student accounts", "business loans", "travel insurance", "safe deposit boxes", "standing orders")
# The manifest of a version curated before canaries existed had exactly these keys.
MANIFEST_KEYS = {"schema", "dataset_id", "source_checksum_sha256", "recipe", "output_format", "config_sha256",
                 "config", "library_versions", "shards", "counts"}


def _corpus(storage: FileStorage) -> None:
    rows = [{"instruction": f"Explain how {topic} work for a new customer of the bank today.",
             "output": f"Here is how {topic} work: you apply in the app and we answer within {i + 2} days."}
            for i, topic in enumerate(TOPICS)]
    storage.write("data/pairs.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())


def _curate(tmp_path: Path, name: str, **config: object) -> tuple[FileStorage, CurationOutcome]:
    storage = FileStorage(tmp_path / name)
    _corpus(storage)
    work = tmp_path / f"work-{name}"
    work.mkdir()
    outcome = Curator(CurationConfig(redact_pii=False, **config), salt="s").run(  # type: ignore[arg-type]
        storage, "data/", "ds-1", "0" * 64, work_dir=work)
    return storage, outcome


def _read(storage: FileStorage, key: str) -> bytes:
    with storage.open(key) as fh:
        return fh.read()


def _split(storage: FileStorage, outcome: CurationOutcome, split: str) -> list[dict]:
    base = outcome.version.manifest_key.rsplit("/", 1)[0]
    rows: list[dict] = []
    for shard in outcome.version.manifest["shards"]:  # type: ignore[union-attr]
        if shard["split"] == split:
            rows += [json.loads(line) for line in _read(storage, f"{base}/{shard['name']}").splitlines()]
    return rows


# -- the canaries themselves -------------------------------------------------------------------

def test_canaries_have_the_documented_format_and_distinct_prompts_and_secrets() -> None:
    planted = make_canaries(CanaryConfig(count=20, candidates=50, seed=3))
    assert len(planted.canaries) == 20
    assert [c.id for c in planted.canaries] == [f"can-{i:04d}" for i in range(20)]
    for canary in planted.canaries:
        assert PROMPT.match(canary.prompt) and SECRET.match(canary.secret)
        assert canary.template == "The recovery code is {secret}."
        assert canary.answer == f"The recovery code is {canary.secret}."
    assert len({c.secret for c in planted.canaries}) == 20
    assert len({c.prompt for c in planted.canaries}) == 20


def test_candidates_are_distinct_unseen_secrets_of_the_same_format() -> None:
    planted = make_canaries(CanaryConfig(count=5, candidates=999))
    inserted = {c.secret for c in planted.canaries}
    for canary in planted.canaries:
        assert len(canary.candidates) == 999 == len(set(canary.candidates))
        assert all(SECRET.match(s) for s in canary.candidates)
        assert not inserted & set(canary.candidates)


def test_the_same_settings_give_the_same_canaries_and_another_seed_others() -> None:
    settings = CanaryConfig(count=4, repeats=3, candidates=20, seed=11)
    assert make_canaries(settings).to_json() == make_canaries(settings.model_copy()).to_json()
    assert make_canaries(settings).training_examples("chat") == make_canaries(settings).training_examples("chat")
    other = make_canaries(settings.model_copy(update={"seed": 12}))
    assert {c.secret for c in other.canaries}.isdisjoint({c.secret for c in make_canaries(settings).canaries})


def test_canaries_json_has_schema_settings_and_each_canary() -> None:
    settings = CanaryConfig(count=2, repeats=2, candidates=9, seed=5)
    body = json.loads(make_canaries(settings).to_json())
    assert body["schema"] == 1
    assert body["settings"] == {"count": 2, "repeats": 2, "candidates": 9, "seed": 5}
    [first, _] = body["canaries"]
    assert set(first) == {"id", "messages", "template", "secret", "candidates"}
    assert first["messages"] == [{"role": "user", "content": first["messages"][0]["content"]}]
    assert PROMPT.match(first["messages"][0]["content"])


@pytest.mark.parametrize("output_format, expected", [
    ("chat", lambda p, a: {"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": a}]}),
    ("alpaca", lambda p, a: {"instruction": p, "input": "", "output": a}),
    ("prompt_completion", lambda p, a: {"prompt": p, "completion": a}),
])
def test_training_copies_are_in_the_jobs_output_format(output_format: str, expected) -> None:  # type: ignore[no-untyped-def]
    planted = make_canaries(CanaryConfig(count=3, repeats=2, candidates=9))
    copies = planted.training_examples(output_format)
    wanted = [expected(c.prompt, c.answer) for c in planted.canaries for _ in range(2)]
    assert sorted(map(json.dumps, copies)) == sorted(map(json.dumps, wanted))


def test_insertion_positions_are_seeded_distinct_and_inside_the_final_split() -> None:
    positions = insertion_positions(1000, 30, seed=4)
    assert positions == insertion_positions(1000, 30, seed=4) != insertion_positions(1000, 30, seed=5)
    assert positions == sorted(set(positions)) and len(positions) == 30 and positions[-1] < 1030
    assert insertion_positions(0, 3, seed=0) == [0, 1, 2]


# -- the config -----------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [("count", 101), ("count", -1), ("repeats", 0), ("repeats", 101),
                                          ("candidates", 8), ("candidates", 100_001), ("seed", -1)])
def test_out_of_range_settings_are_refused(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field):
        CanaryConfig(**{field: value})


def test_the_message_maps_to_the_settings_and_bad_values_name_their_field() -> None:
    config = from_message(pb.CurationConfig(canaries=pb.CanarySettings(count=3, repeats=5, seed=2**63)))
    assert config.canaries == CanaryConfig(count=3, repeats=5, candidates=999, seed=2**63)
    assert from_message(pb.CurationConfig()).canaries == CanaryConfig()
    with pytest.raises(InvalidArgument) as info:
        from_message(pb.CurationConfig(canaries=pb.CanarySettings(count=500)))
    assert [f.field for f in info.value.details.fields] == ["config.canaries.count"]


def test_canaries_are_in_the_config_hash_only_when_on() -> None:
    off = CurationConfig(canaries=CanaryConfig(count=0, repeats=7, seed=9))
    assert off.canonical_json() == CurationConfig().canonical_json() and off.sha256() == CurationConfig().sha256()
    assert "canaries" not in json.loads(CurationConfig().canonical_json())
    on = CurationConfig(canaries=CanaryConfig(count=2))
    assert json.loads(on.canonical_json())["canaries"] == {"count": 2, "repeats": 1, "candidates": 999, "seed": 0}
    assert on.sha256() != CurationConfig().sha256()
    assert CurationConfig.model_validate_json(on.canonical_json()) == on  # the worker's round trip
    assert CurationConfig.model_validate_json(off.canonical_json()).canaries == CanaryConfig()


# -- the pipeline ---------------------------------------------------------------------------------

@pytest.mark.parametrize("output_format", ["chat", "alpaca", "prompt_completion"])
def test_copies_go_into_train_only_and_the_manifest_covers_canaries_json(tmp_path: Path, output_format: str) -> None:
    settings = CanaryConfig(count=3, repeats=4, candidates=20, seed=1)
    storage, outcome = _curate(tmp_path, "acme", output_format=output_format, holdout_fraction=0.3,
                               canaries=settings)
    manifest = outcome.version.manifest
    planted = make_canaries(settings, "s")
    secrets = [c.secret for c in planted.canaries]
    train, holdout = _split(storage, outcome, "train"), _split(storage, outcome, "holdout")
    assert holdout and not any(s in json.dumps(row) for row in holdout for s in secrets)
    for secret in secrets:  # every copy kept: identical copies are not deduplicated away
        assert sum(secret in json.dumps(row) for row in train) == 4
    copies = sorted(json.dumps(c, sort_keys=True) for c in planted.training_examples(output_format))
    assert sorted(json.dumps(row, sort_keys=True) for row in train
                  if any(s in json.dumps(row) for s in secrets)) == copies
    assert manifest["counts"]["train"] == len(train) == outcome.report["examples"]["train"] + 12  # type: ignore[index]

    entry = manifest["canaries"]  # type: ignore[index]
    base = outcome.version.manifest_key.rsplit("/", 1)[0]
    body = _read(storage, f"{base}/canaries.json")
    assert body == planted.to_json()
    assert entry == {"name": "canaries.json", "sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body),
                     "count": 3, "repeats": 4, "candidates": 20}
    assert manifest["config"]["canaries"] == settings.model_dump()  # type: ignore[index]
    assert outcome.report["canaries"] == {"count": 3, "repeats": 4, "inserted": 12, "candidates": 20}
    for name in ("report.json", "report.html"):  # counts only: the secrets stay in canaries.json and train
        text = _read(storage, f"{base}/{name}").decode()
        assert not any(s in text for s in secrets), name
    assert "canaries planted in train: 3 x 4" in _read(storage, f"{base}/report.html").decode()


def test_copies_sit_at_the_seeded_positions_and_the_same_job_gives_the_same_version(tmp_path: Path) -> None:
    settings = CanaryConfig(count=2, repeats=3, candidates=9, seed=7)
    storage, outcome = _curate(tmp_path, "a", holdout_fraction=0.0, canaries=settings)
    train = _split(storage, outcome, "train")
    secrets = [c.secret for c in make_canaries(settings, "s").canaries]
    at = [i for i, row in enumerate(train) if any(s in json.dumps(row) for s in secrets)]
    assert at == insertion_positions(len(train) - 6, 6, seed=7)
    _, again = _curate(tmp_path, "b", holdout_fraction=0.0, canaries=settings)
    assert again.version.version_id == outcome.version.version_id
    _, other = _curate(tmp_path, "c", holdout_fraction=0.0, canaries=settings.model_copy(update={"seed": 8}))
    assert other.version.version_id != outcome.version.version_id


def test_canaries_off_change_nothing_in_the_version(tmp_path: Path) -> None:
    storage, plain = _curate(tmp_path, "plain", holdout_fraction=0.2)
    _, off = _curate(tmp_path, "off", holdout_fraction=0.2, canaries=CanaryConfig(count=0, repeats=9, seed=3))
    assert (off.version.version_id, off.version.manifest_sha256) == (plain.version.version_id,
                                                                     plain.version.manifest_sha256)
    assert set(plain.version.manifest) == MANIFEST_KEYS
    assert set(plain.version.manifest["counts"]) == {"train", "holdout", "general_mix", "documents",  # type: ignore[arg-type]
                                                     "quarantined"}
    assert "canaries" not in plain.version.manifest["config"]  # type: ignore[operator]
    assert "canaries" not in plain.report
    base = plain.version.manifest_key.rsplit("/", 1)[0]
    assert not storage.exists(f"{base}/canaries.json")
    assert sorted(o.key.rsplit("/", 1)[1] for o in storage.list(base + "/")) == [
        "holdout-00000.jsonl", "manifest.json", "report.html", "report.json", "train-00000.jsonl"]


def test_the_shard_writer_places_inserted_examples_across_rolled_shards(tmp_path: Path) -> None:
    writer = ShardWriter(3, tmp_path / "shards")
    for i in range(7):
        writer.add("train", {"n": i})
    writer.add("holdout", {"h": 0})
    writer.insert("train", [(0, {"c": 0}), (4, {"c": 1}), (9, {"c": 2}), (10, {"c": 3})])
    shards = writer.finish()
    rows = {}
    for shard in shards:
        body = shard.path.read_bytes()
        assert hashlib.sha256(body).hexdigest() == shard.digest.hexdigest() and shard.size == len(body)
        assert shard.records == len(body.splitlines())
        rows.setdefault(shard.split, []).extend(json.loads(line) for line in body.splitlines())
    assert [s.name for s in shards] == ["holdout-00000.jsonl", "train-00000.jsonl", "train-00001.jsonl",
                                        "train-00002.jsonl", "train-00003.jsonl"]
    assert rows["train"] == [{"c": 0}, {"n": 0}, {"n": 1}, {"n": 2}, {"c": 1}, {"n": 3}, {"n": 4}, {"n": 5},
                             {"n": 6}, {"c": 2}, {"c": 3}]
    assert rows["holdout"] == [{"h": 0}]
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == [s.name for s in shards]
    writer.cleanup()


def test_the_secrets_follow_from_the_versions_secret_salt_not_from_the_config_on_the_bus() -> None:
    # the seed travels in the curation request's config; the salt is an HMAC of the platform's key
    settings = CanaryConfig(count=5, candidates=9)
    one, two = make_canaries(settings, "salt-of-version-1"), make_canaries(settings, "salt-of-version-2")
    assert {c.secret for c in one.canaries}.isdisjoint({c.secret for c in two.canaries})
    assert {c.secret for c in make_canaries(settings).canaries}.isdisjoint({c.secret for c in one.canaries})
