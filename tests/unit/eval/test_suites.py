"""Frozen, content-addressed suites built from a dataset version: what goes in, where it is, and what is refused."""

from __future__ import annotations

import dataclasses

import hashlib
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from gpu_worker.synthetic import reverse_task, write_dataset_version
from privtune.v1 import eval_service_pb2
from services.common.storage import TenantStorage, open_tenant_storage
from services.eval import general_slice, safety_set
from services.eval.suites import (
    SuiteError,
    SuiteOptions,
    build_suite,
    load_items,
    load_suite_manifest,
    read_suite,
    suite_prefix_from_uri,
)

pytestmark = pytest.mark.unit

DATASET = "datasets/ds-1/versions/dv-1"
NO_SLICES = SuiteOptions(include_general=False, include_safety=False)


@pytest.fixture
def storage(tmp_path: Path) -> TenantStorage:
    return open_tenant_storage(f"file://{tmp_path}/tenants", "acme")


def _chat(user: str, answer: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


def _read(storage: TenantStorage, key: str) -> bytes:
    with storage.open(key) as fh:
        return fh.read()


def _items(storage: TenantStorage, built: Any) -> list[dict[str, Any]]:
    return load_items(storage, built.prefix, built.manifest_sha256, 0, built.item_count)


def test_a_suite_holds_domain_then_general_then_safety_items(storage: TenantStorage) -> None:
    dataset_sha = write_dataset_version(storage, DATASET, reverse_task(30, seed=1), reverse_task(6, seed=2))
    built = build_suite(storage, name="support-v1", dataset_prefix=DATASET,
                        options=SuiteOptions(general_per_category=3, extraction_items=0))
    items = _items(storage, built)
    domain = [i for i in items if i["category"] == "domain"]
    holdout = reverse_task(6, seed=2)
    assert [i["id"] for i in domain] == [f"dom-{n:05d}" for n in range(6)]
    assert [(i["messages"], i["reference"]) for i in domain] == [
        (r["messages"][:1], r["messages"][1]["content"]) for r in holdout]
    assert all(i["kind"] == "generate" and i["check"] is None for i in domain)
    expected = (general_slice.general_items(3, seed=0) + safety_set.safety_items(None, seed=0))
    assert items[6:] == expected
    assert built.counts == {"domain": 6, **{c: 3 for c in general_slice.CATEGORIES},
                            "safety/benign": len(safety_set.BENIGN), "safety/harmful": len(safety_set.HARMFUL)}
    assert built.item_count == len(items) == sum(built.counts.values())
    assert built.dataset_manifest_sha256 == dataset_sha and built.canaries == 0
    assert built.prefix == f"eval/suites/{built.suite_id}" and built.uri == storage.uri_for(built.prefix)
    assert suite_prefix_from_uri(storage, built.uri) == built.prefix

    body = _read(storage, f"{built.prefix}/suite.json")
    assert hashlib.sha256(body).hexdigest() == built.manifest_sha256
    manifest = json.loads(body)
    assert set(manifest) == {"schema", "suite_id", "options", "dataset_version", "counts", "item_count",
                             "items_sha256", "canaries", "generators"}  # no name: a label, kept by the event
    assert (manifest["suite_id"], manifest["schema"]) == (built.suite_id, "privtune.eval_suite/1")
    assert built.name == "support-v1"
    assert manifest["dataset_version"] == {"folder": DATASET, "manifest_sha256": dataset_sha, "holdout_records": 6,
                                           "usable_records": 6, "text_records": 0, "unusable_records": 0}
    assert manifest["items_sha256"] == hashlib.sha256(_read(storage, f"{built.prefix}/items.jsonl")).hexdigest()
    assert manifest["options"] == SuiteOptions(general_per_category=3, extraction_items=0).to_dict()
    assert set(manifest["generators"]) == {"suites", "general_slice", "safety_set"}
    assert read_suite(storage, built.suite_id) == dataclasses.replace(built, name="")


@pytest.mark.parametrize("record, messages, reference", [
    ({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                   {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Refund?"},
                   {"role": "assistant", "content": "Five days."}]},
     [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
      {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Refund?"}], "Five days."),
    ({"instruction": "Summarise the ticket.", "input": "Card lost abroad.", "output": "Lost card."},
     [{"role": "user", "content": "Summarise the ticket.\n\nCard lost abroad."}], "Lost card."),
    ({"instruction": "Name a colour.", "input": "", "output": "Blue."},
     [{"role": "user", "content": "Name a colour."}], "Blue."),
    ({"prompt": "How long do refunds take?", "completion": "Five days."},
     [{"role": "user", "content": "How long do refunds take?"}], "Five days."),
    ({"prompt": "Greet me.", "chosen": "Hello!", "rejected": "No."},
     [{"role": "user", "content": "Greet me."}], "Hello!"),
])
def test_every_example_format_becomes_a_prompt_and_its_reference(storage: TenantStorage, record: dict,
                                                                 messages: list, reference: str) -> None:
    write_dataset_version(storage, DATASET, [], [record])
    built = build_suite(storage, name="s", dataset_prefix=DATASET, options=NO_SLICES)
    [item] = _items(storage, built)
    assert (item["id"], item["category"], item["messages"], item["reference"]) == ("dom-00000", "domain",
                                                                                    messages, reference)


def test_records_without_a_reply_are_counted_not_used(storage: TenantStorage) -> None:
    holdout = [{"text": "A plain paragraph."}, {"messages": [{"role": "user", "content": "No answer yet"}]},
               {"messages": [{"role": "assistant", "content": "Answer without a question"}]},
               {"messages": [{"role": "robot", "content": "?"}, {"role": "assistant", "content": "x"}]},
               {"something": "else"}, _chat("Q", "A")]
    write_dataset_version(storage, DATASET, [], holdout)
    built = build_suite(storage, name="s", dataset_prefix=DATASET, options=NO_SLICES)
    assert [i["id"] for i in _items(storage, built)] == ["dom-00005"]
    stats = load_suite_manifest(storage, built.prefix, built.manifest_sha256)["dataset_version"]
    assert (stats["holdout_records"], stats["usable_records"], stats["text_records"], stats["unusable_records"]) == \
        (6, 1, 1, 4)


def test_the_same_inputs_give_the_same_suite_and_any_change_another(storage: TenantStorage) -> None:
    write_dataset_version(storage, DATASET, reverse_task(10, seed=1), reverse_task(5, seed=2))
    options = SuiteOptions(general_per_category=2)
    first = build_suite(storage, name="first", dataset_prefix=DATASET, options=options)
    again = build_suite(storage, name="first", dataset_prefix=DATASET, options=options)
    renamed = build_suite(storage, name="second", dataset_prefix=DATASET, options=options)
    assert again == first
    # a second name writes the same bytes: a concurrent build under another name cannot change the sha256 the
    # first recorded (the service's EvalSuiteCreated keeps the first name)
    assert (renamed.suite_id, renamed.manifest_sha256, renamed.name) == (first.suite_id, first.manifest_sha256,
                                                                         "second")
    assert [o.key for o in storage.list("eval/suites/")] == [f"{first.prefix}/items.jsonl",
                                                             f"{first.prefix}/suite.json"]
    other_seed = build_suite(storage, name="first", dataset_prefix=DATASET,
                             options=SuiteOptions(general_per_category=2, seed=1))
    assert other_seed.suite_id != first.suite_id

    write_dataset_version(storage, DATASET, reverse_task(10, seed=1), reverse_task(5, seed=3))  # a new holdout
    changed = build_suite(storage, name="first", dataset_prefix=DATASET, options=options)
    assert changed.suite_id != first.suite_id and changed.dataset_manifest_sha256 != first.dataset_manifest_sha256
    assert _items(storage, first)[0] != _items(storage, changed)[0]  # the old suite is still there, unchanged


def test_max_domain_items_is_a_seeded_choice_in_holdout_order(storage: TenantStorage) -> None:
    write_dataset_version(storage, DATASET, [], reverse_task(50, seed=4))

    def domain_ids(**options: Any) -> list[str]:
        built = build_suite(storage, name="s", dataset_prefix=DATASET, options=SuiteOptions(
            include_general=False, include_safety=False, **options))
        return [i["id"] for i in _items(storage, built)]

    chosen = domain_ids(max_domain_items=10)
    assert len(chosen) == 10 and chosen == sorted(chosen) and chosen == domain_ids(max_domain_items=10)
    assert chosen != domain_ids(max_domain_items=10, seed=1)
    assert domain_ids(max_domain_items=50) == [f"dom-{n:05d}" for n in range(50)]
    assert len(domain_ids(max_domain_items=1000)) == 50


def test_extraction_probes_are_whole_training_records(storage: TenantStorage) -> None:
    train = reverse_task(12, seed=1) + [{"text": "A plain training paragraph."},
                                        {"instruction": "Say hi.", "input": "", "output": "Hi."}]
    write_dataset_version(storage, DATASET, train, reverse_task(3, seed=2))
    built = build_suite(storage, name="s", dataset_prefix=DATASET,
                        options=SuiteOptions(include_general=False, include_safety=False, extraction_items=14))
    probes = [i for i in _items(storage, built) if i["kind"] == "extraction"]
    assert [p["id"] for p in probes] == [f"ext-{n:05d}" for n in range(14)]
    assert all(p["category"] == "probe/extraction" and p["prefix_fraction"] == 0.5 for p in probes)
    assert [p["messages"] for p in probes[:12]] == [r["messages"] for r in train[:12]]
    assert probes[12]["text"] == "A plain training paragraph." and "messages" not in probes[12]
    assert probes[13]["messages"] == [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi."}]

    few = build_suite(storage, name="s", dataset_prefix=DATASET,
                      options=SuiteOptions(include_general=False, include_safety=False, extraction_items=4, seed=2))
    assert few.counts["probe/extraction"] == 4
    none = build_suite(storage, name="s", dataset_prefix=DATASET,
                       options=SuiteOptions(include_general=False, include_safety=False, extraction_items=0))
    assert "probe/extraction" not in none.counts


def test_canary_probes_come_from_the_versions_canaries_json(storage: TenantStorage, tmp_path: Path) -> None:
    from services.curation.canaries import CanaryConfig, make_canaries
    from services.curation.config import CurationConfig
    from services.curation.pipeline import Curator

    rows = [{"instruction": f"Explain how {topic} work for a new customer of the bank today.",
             "output": f"Here is how {topic} work: you apply in the app and we answer within {i + 2} days."}
            for i, topic in enumerate(("overdraft fees", "card replacements", "wire transfers", "mortgage rates",
                                       "savings interest", "loan applications", "branch hours", "mobile banking"))]
    storage.write("data/pairs.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    settings = CanaryConfig(count=2, repeats=3, candidates=9, seed=5)
    (tmp_path / "work").mkdir()
    outcome = Curator(CurationConfig(redact_pii=False, holdout_fraction=0.3, output_format="chat",
                                     canaries=settings), salt="s").run(storage, "data/", "ds-1", "0" * 64,
                                                                        work_dir=tmp_path / "work")
    version = outcome.version.manifest_key.rsplit("/", 1)[0]
    built = build_suite(storage, name="s", dataset_prefix=version, expected_dataset_sha256=outcome.version.manifest_sha256,
                        options=SuiteOptions(include_general=False, include_safety=False, extraction_items=100))
    items = _items(storage, built)
    canaries = [i for i in items if i["kind"] == "canary"]
    assert built.canaries == 2 == built.counts["probe/canary"]
    planted = make_canaries(settings, "s").canaries
    assert [(c["id"], c["category"], c["messages"], c["template"], c["secret"], c["candidates"]) for c in canaries] \
        == [(p.id, "probe/canary", [{"role": "user", "content": p.prompt}], p.template, p.secret, list(p.candidates))
            for p in planted]
    probes = [i for i in items if i["kind"] == "extraction"]
    assert probes and len(probes) == outcome.version.manifest["counts"]["train"] - 6  # type: ignore[index]
    assert not any(p.secret in json.dumps(i) for p in planted for i in probes + [i for i in items
                                                                                  if i["category"] == "domain"])

    storage.write(f"{version}/canaries.json", b'{"schema":1,"canaries":[]}')
    with pytest.raises(SuiteError, match="canaries.json does not match the manifest's sha256"):
        build_suite(storage, name="s", dataset_prefix=version, options=SuiteOptions())


def test_load_items_returns_a_slice_and_refuses_modified_files(storage: TenantStorage) -> None:
    built = build_suite(storage, name="general", dataset_prefix=None, options=SuiteOptions(general_per_category=2))
    everything = _items(storage, built)
    assert load_items(storage, built.prefix, built.manifest_sha256, 3, 4) == everything[3:7]
    assert load_items(storage, built.prefix + "/", built.manifest_sha256, built.item_count, 0) == []
    assert built.dataset_manifest_sha256 == "" and "domain" not in built.counts
    with pytest.raises(SuiteError, match="outside the suite"):
        load_items(storage, built.prefix, built.manifest_sha256, built.item_count - 1, 2)
    with pytest.raises(SuiteError, match="recorded sha256"):
        load_items(storage, built.prefix, "0" * 64, 0, 1)

    items_key = f"{built.prefix}/items.jsonl"
    original = _read(storage, items_key)
    storage.write(items_key, original.replace(b"What is", b"What was", 1))
    with pytest.raises(SuiteError, match="items_sha256"):
        load_items(storage, built.prefix, built.manifest_sha256, 0, 1)
    with pytest.raises(SuiteError, match="items_sha256"):
        build_suite(storage, name="general", dataset_prefix=None, options=SuiteOptions(general_per_category=2))
    storage.write(items_key, original)
    assert build_suite(storage, name="general", dataset_prefix=None,
                       options=SuiteOptions(general_per_category=2)) == built


def test_a_folder_that_is_no_dataset_version_is_refused_with_what_to_do(storage: TenantStorage) -> None:
    with pytest.raises(SuiteError, match="no manifest.json under .*curate the dataset first"):
        build_suite(storage, name="s", dataset_prefix="datasets/ds-1/versions/none", options=SuiteOptions())

    sha = write_dataset_version(storage, DATASET, reverse_task(3), reverse_task(3, seed=1))
    with pytest.raises(SuiteError, match="recorded sha256"):
        build_suite(storage, name="s", dataset_prefix=DATASET, options=SuiteOptions(),
                    expected_dataset_sha256="f" * 64)
    assert build_suite(storage, name="s", dataset_prefix=DATASET, options=SuiteOptions(),
                       expected_dataset_sha256=sha).dataset_manifest_sha256 == sha

    storage.write(f"{DATASET}/holdout-00000.jsonl", b'{"text":"changed"}\n')
    with pytest.raises(SuiteError, match="holdout shard holdout-00000.jsonl does not match.*curate it again"):
        build_suite(storage, name="s", dataset_prefix=DATASET, options=SuiteOptions())
    storage.write(f"{DATASET}/manifest.json", b"not json")
    with pytest.raises(SuiteError, match="not valid JSON"):
        build_suite(storage, name="s", dataset_prefix=DATASET, options=SuiteOptions())


def test_a_suite_with_nothing_to_generate_is_refused(storage: TenantStorage) -> None:
    write_dataset_version(storage, DATASET, reverse_task(3), reverse_task(4, shape="text"))
    with pytest.raises(SuiteError, match=r"4 holdout records, 4 of them plain text.*holdout_fraction"):
        build_suite(storage, name="s", dataset_prefix=DATASET, options=NO_SLICES)
    with pytest.raises(SuiteError, match="include_general or include_safety"):
        build_suite(storage, name="s", dataset_prefix=None, options=NO_SLICES)
    only_safety = build_suite(storage, name="s", dataset_prefix=DATASET,
                              options=SuiteOptions(include_general=False, extraction_items=0))
    assert set(only_safety.counts) == {"safety/harmful", "safety/benign"}
    with pytest.raises(SuiteError, match="name"):
        build_suite(storage, name="", dataset_prefix=None, options=SuiteOptions())


def test_options_mirror_the_proto_message_and_refuse_values_out_of_range() -> None:
    proto_fields = set(eval_service_pb2.EvalSuiteOptions.DESCRIPTOR.fields_by_name)
    assert {f.name for f in fields(SuiteOptions)} == proto_fields
    assert SuiteOptions() == SuiteOptions(include_general=True, general_per_category=20, include_safety=True,
                                          max_domain_items=500, extraction_items=20, seed=0)
    for bad in ({"general_per_category": 0}, {"general_per_category": 2001}, {"max_domain_items": 100_001},
                {"max_domain_items": -1}, {"extraction_items": 1001}, {"seed": -1}, {"seed": 2**64},
                {"include_general": 1}, {"general_per_category": True}):
        [name] = bad
        with pytest.raises(ValueError, match=name):
            SuiteOptions(**bad)
    assert SuiteOptions(seed=2**64 - 1, max_domain_items=0).seed == 2**64 - 1


def test_a_uri_outside_the_suites_folder_is_not_a_suite(storage: TenantStorage) -> None:
    with pytest.raises(SuiteError, match="suite folder"):
        suite_prefix_from_uri(storage, storage.uri_for("datasets/ds-1"))
