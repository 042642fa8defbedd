"""Input limits: what every request is held to before any work, and the tenant-boundary check's cost."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from privtune.v1 import curation_config_pb2 as ccpb
from privtune.v1 import curation_service_pb2 as cpb
from privtune.v1 import dataset_service_pb2 as dpb
from privtune.v1 import events_pb2
from privtune.v1 import registry_service_pb2 as rpb
from privtune.v1 import training_service_pb2 as tpb
from services.common import limits
from services.common.errors import InvalidArgument, PermissionDenied
from services.common.grpc_limits import StreamSlots
from services.common.storage import open_tenant_storage, resolve_dataset

pytestmark = pytest.mark.unit


def test_quote_keeps_a_short_prefix_of_the_input() -> None:
    assert limits.quote("docs") == "'docs'"
    quoted = limits.quote("a" * 1_000_000)
    assert quoted == repr("a" * limits.QUOTE_CHARS) + "…" and len(quoted) < 80
    assert limits.quote("x\0y") == repr("x\0y")
    assert len(limits.cut("m" * 5000)) == limits.MAX_MESSAGE_CHARS


@pytest.mark.parametrize("text, depth", [
    ("", 0), ("1", 0), ("[]", 1), ('{"a": [1, {"b": []}]}', 4), ('"[[[[["', 0), (r'["\"[[[", []]', 2),
    ("[" * 10, 10), ("]]]", 0), ("not json {", 1),
])
def test_json_depth_counts_brackets_outside_strings(text: str, depth: int) -> None:
    assert limits.json_depth(text) == depth


def test_json_depth_is_one_pass_and_stops_early() -> None:
    assert limits.json_depth("[" * 100_000, stop_after=32) == 33  # stops at the first level past the limit
    limits.check_json("x", '{"a": "' + "b" * 60_000 + '"}')  # a long but shallow value is fine


def test_check_json_refuses_deep_or_big_values() -> None:
    limits.check_json("config", '{"a": [[1]]}')
    with pytest.raises(InvalidArgument, match="more than 32 levels"):
        limits.check_json("config", "[" * 33 + "]" * 33)
    with pytest.raises(InvalidArgument, match="characters long"):
        limits.check_json("config", "1" * (limits.MAX_JSON + 1))


@pytest.mark.parametrize("message, needle", [
    (dpb.CreateDatasetRequest(name="n" * 129), "name is 129 characters long; at most 128"),
    (dpb.CreateDatasetRequest(storage_uri="file:///x\0"), "storage_uri contains a NUL character"),
    (dpb.CreateDatasetRequest(request_id="r" * 256), "request_id is 256 characters long; at most 255"),
    (dpb.CreateDatasetRequest(labels={"k\0": "v"}), "a key of labels contains a NUL"),
    (dpb.CreateDatasetRequest(labels={"k": "v" * 1025}), "labels['k'] is 1025 characters"),
    (dpb.GetDatasetRequest(dataset_id="d" * 129), "dataset_id is 129 characters"),
    (cpb.CreateCurationJobRequest(config=ccpb.CurationConfig(quality=ccpb.QualitySettings(languages=["e" * 17]))),
     "config.quality.languages[0] is 17 characters long; at most 16"),
    (cpb.CreateCurationJobRequest(config=ccpb.CurationConfig(pii=ccpb.PiiSettings(entities=["X"] * 300))),
     "config.pii.entities has 300 entries"),
    (tpb.CreateTrainingJobRequest(spec=tpb.TrainingJobSpec(gpu_pool="p" * 65)), "spec.gpu_pool is 65 characters"),
    (tpb.CreateTrainingJobRequest(spec=tpb.TrainingJobSpec(lora_config=events_pb2.LoraConfig(target_modules=["q\0"]))),
     "spec.lora_config.target_modules[0] contains a NUL"),
    (rpb.CompareRunsRequest(run_ids=["tj"] * (limits.MAX_ITEMS + 1)), "run_ids has 257 entries"),
])
def test_check_request_names_the_field_over_its_limit(message: object, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(needle)):
        limits.check_request(message)  # type: ignore[arg-type]


def test_check_request_accepts_ordinary_requests() -> None:
    limits.check_request(dpb.CreateDatasetRequest(name="tickets", storage_uri="file:///data/acme/docs",
                                                  classification=2, labels={"team": "support"}, request_id="r-1"))
    limits.check_request(cpb.CreateCurationJobRequest(dataset_id="ds-1", config=ccpb.CurationConfig(
        pii=ccpb.PiiSettings(mode=ccpb.PII_MODE_TAG), quality=ccpb.QualitySettings(languages=["en", "de"]))))
    limits.check_request(tpb.CreateTrainingJobRequest(spec=tpb.TrainingJobSpec(
        name="bot", base_model_id="tiny-llama", options=tpb.TrainingOptions(checkpoint_every=10))))


def test_the_tenant_boundary_check_is_linear_in_the_uri(tmp_path: Path) -> None:
    """A 1 MiB storage_uri of 'a/' once took minutes (os.path.realpath: an lstat per path prefix). Now its
    length is refused before any filesystem work, and a URI outside the tenant by string comparison."""
    open_tenant_storage(f"file://{tmp_path}", "acme").write("docs/a.txt", b"alpha")
    for size in (128 << 10, 1 << 20):
        uri = f"file://{tmp_path}/acme/" + "a/" * (size // 2)
        with pytest.raises(InvalidArgument, match="longer than"):
            resolve_dataset(uri, f"file://{tmp_path}", "acme")
        outside = f"file://{tmp_path}/globex/" + "a/" * (size // 2)
        with pytest.raises(PermissionDenied) as info:
            resolve_dataset(outside, f"file://{tmp_path}", "acme")
        assert str(tmp_path / "acme") not in str(info.value) and len(str(info.value)) < 300


def test_a_root_configured_through_a_symlink_still_maps_uris(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    root = f"file://{tmp_path}/alias"
    open_tenant_storage(root, "acme").write("docs/a.txt", b"alpha")
    assert resolve_dataset(f"{root}/acme/docs", root, "acme")[1] == "docs/"
    assert resolve_dataset(f"file://{tmp_path}/real/acme//docs/a.txt", root, "acme")[1] == "docs/a.txt"


def test_stream_slots_cap_the_process_and_each_tenant() -> None:
    slots = StreamSlots(limits.StreamLimits(per_process=3, per_tenant=2, retry_after_ms=500))
    first, second = slots.take("acme"), slots.take("acme")
    assert callable(first) and callable(second)
    refused = slots.take("acme")
    assert isinstance(refused, str) and "'acme'" in refused and "retry in 0.5 s" in refused
    third = slots.take("globex")
    assert callable(third) and slots.active == 3
    assert isinstance(slots.take("initech"), str)
    first()
    first()  # releasing twice frees one slot
    assert slots.active == 2 and callable(slots.take("initech"))
