"""scripts/gen_api_docs.py renders every service, method, field and enum value of the protos.

The expectations are read from the .proto sources with regular expressions, independently of
the descriptors the renderer uses, so a proto that gains an RPC or a comment is checked too.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto" / "privtune" / "v1"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_api_docs", ROOT / "scripts" / "gen_api_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


gen_api_docs = _load_script()


@pytest.fixture(scope="module")
def reference() -> str:
    rendered: str = gen_api_docs.render_api_reference()
    return rendered


def _section(markdown: str, title: str) -> str:
    """The text of a level-2 section, up to the next level-2 heading."""
    start = markdown.index(f"\n## {title}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start:] if end == -1 else markdown[start:end]


def _services_in_protos() -> dict[str, list[str]]:
    """Service name -> its RPC names, read from the .proto sources."""
    services: dict[str, list[str]] = {}
    for proto in sorted(PROTO_DIR.glob("*.proto")):
        current = None
        for line in proto.read_text(encoding="utf-8").splitlines():
            if match := re.match(r"^service (\w+)", line):
                current = services.setdefault(match[1], [])
            elif current is not None and (match := re.match(r"^\s*rpc (\w+)\(", line)):
                current.append(match[1])
    return services


def test_every_rpc_of_every_service_is_documented(reference: str) -> None:
    services = _services_in_protos()
    assert services and all(services.values())
    public, internal = _section(reference, "Services"), _section(reference, "Internal services")
    for service, rpcs in services.items():
        section = internal if service in gen_api_docs.INTERNAL_SERVICES else public
        assert f"### {service}\n" in section, service
        for rpc in rpcs:
            assert f"#### {service}.{rpc}\n" in section, f"{service}.{rpc}"
    assert "### TrainingAttemptService\n" in internal and "### CurationWorkService\n" in internal


def test_streaming_rpc_and_request_response_links(reference: str) -> None:
    watch = reference.split("#### DatasetService.WatchDataset\n", 1)[1].split("\n#### ", 1)[0]
    assert ("Server streaming: [WatchDatasetRequest](#privtune.v1.WatchDatasetRequest) → "
            "stream of [WatchDatasetResponse](#privtune.v1.WatchDatasetResponse)") in watch
    assert '<a name="privtune.v1.WatchDatasetResponse"></a>' in reference


def test_trailing_field_comments_are_in_the_field_rows(reference: str) -> None:
    field = re.compile(r"^\s*(?:optional |repeated )?[\w.<>, ]+ (\w+) = \d+;\s*//\s?(.+)$")
    checked = 0
    for proto in sorted(PROTO_DIR.glob("*.proto")):
        for line in proto.read_text(encoding="utf-8").splitlines():
            if match := field.match(line):
                name, comment = match[1], gen_api_docs.escape_markdown(match[2].strip(), table_cell=True)
                rows = [row for row in reference.splitlines() if row.startswith(f"| `{name}` |")]
                assert any(comment in row for row in rows), f"{proto.name}: {name}: {comment!r}"
                checked += 1
    assert checked > 50
    assert "| `request_id` | `string` |  | 7 | optional idempotency key |" in reference


def test_enum_values_have_their_numbers_and_comments(reference: str) -> None:
    value = re.compile(r"^\s*([A-Z][A-Z0-9_]+) = (\d+);")
    for proto in sorted(PROTO_DIR.glob("*.proto")):
        for line in proto.read_text(encoding="utf-8").splitlines():
            if match := value.match(line):
                assert f"| `{match[1]}` | {match[2]} |" in reference, f"{proto.name}: {match[1]}"
    assert "| `TRAINING_EXECUTOR_LOCAL` | 1 | a gpu_worker pool member |" in reference


def test_conventions_come_from_the_dataset_service_header(reference: str) -> None:
    conventions = _section(reference, "Conventions")
    for topic in ("authenticated identity", "google.rpc.Status", "next_page_token", "request_id"):
        assert topic in conventions, topic
    assert "Public API for raw datasets." not in conventions
    assert reference.index("\n## Events\n") > reference.index("\n## Messages and enums\n")
    assert '<a name="privtune.v1.EventEnvelope"></a>' in _section(reference, "Events")


SMALL_DATASET_PROTO = """\
// Tiny API.
//
// Conventions shared by every API:
// - Identity comes from the call, never from fields;
//   a second line of the same rule.
syntax = "proto3";

package privtune.v1;

// Streams things.
service DatasetService {
  // Watch a thing: the first line of a comment
  // and its second line.
  rpc WatchThing(Thing) returns (stream Thing);
}

service CurationWorkService {
  rpc Claim(stream Thing) returns (Thing);
}

message Thing {
  string expr = 1;                          // a | b, never <b>bold</b>
  repeated string kinds = 2;                // one of: A, B,
                                            // C or D
  optional uint32 size = 3;                 // default 1
  map<string, Kind> by_name = 4;
}

enum Kind {
  KIND_UNSPECIFIED = 0;
  KIND_A = 1;                               // the first kind
}
"""


def test_comments_are_joined_and_escaped(tmp_path: Path) -> None:
    (tmp_path / "privtune" / "v1").mkdir(parents=True)
    (tmp_path / "privtune" / "v1" / "dataset_service.proto").write_text(SMALL_DATASET_PROTO, encoding="utf-8")
    reference = gen_api_docs.render_api_reference(tmp_path)

    assert "- Identity comes from the call, never from fields; a second line of the same rule." in reference
    assert "Watch a thing: the first line of a comment and its second line." in reference
    assert "Server streaming: [Thing](#privtune.v1.Thing) → stream of [Thing](#privtune.v1.Thing)" in reference
    assert "Client streaming: stream of [Thing](#privtune.v1.Thing) → [Thing](#privtune.v1.Thing)" in reference
    assert "### CurationWorkService" in _section(reference, "Internal services")
    assert r"| `expr` | `string` |  | 1 | a \| b, never &lt;b&gt;bold&lt;/b&gt; |" in reference
    assert "| `kinds` | `string` | repeated | 2 | one of: A, B, C or D |" in reference  # wrapped trailing comment
    assert "| `size` | `uint32` | optional | 3 | default 1 |" in reference
    assert "| `by_name` | map&lt;`string`, [Kind](#privtune.v1.Kind)&gt; | map | 4 |  |" in reference
    assert "| `KIND_A` | 1 | the first kind |" in reference


def test_check_fails_on_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "api.md"
    assert gen_api_docs.main(["--check", "--output", str(output)]) == 1  # missing

    assert gen_api_docs.main(["--output", str(output)]) == 0
    assert gen_api_docs.main(["--check", "--output", str(output)]) == 0  # same protos, same bytes

    output.write_text(output.read_text(encoding="utf-8").replace("ClaimAttempt", "ClaimAttemp", 1), encoding="utf-8")
    capsys.readouterr()
    assert gen_api_docs.main(["--check", "--output", str(output)]) == 1
    assert "is stale: run `make api-docs`" in capsys.readouterr().err
