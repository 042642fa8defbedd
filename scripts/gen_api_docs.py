#!/usr/bin/env python3
"""Render the API reference (docs/api.md) from the protos in proto/privtune/v1.

    .venv/bin/python scripts/gen_api_docs.py                # write docs/api.md
    .venv/bin/python scripts/gen_api_docs.py --check        # exit 1 if docs/api.md is stale
    .venv/bin/python scripts/gen_api_docs.py --output PATH  # write (or --check) another file

The protos are compiled by grpc_tools' protoc (as scripts/gen_proto.sh does) into a
FileDescriptorSet that keeps source info, so every service, method, message, field, enum
and value carries the comments written next to it in the .proto file. The page is a pure
function of the protos: same protos, same bytes.

Layout: conventions (from the header of dataset_service.proto), public services, internal
services (called by workers only), messages and enums grouped by file, then the event
catalogue (events.proto). Within a file, types keep their order in the file. Detached
comments are not rendered, except divider lines (``// ---- training``) in a file, which
become subheadings.
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

try:
    from google.protobuf import descriptor_pb2
except ImportError:  # run with a Python that lacks the project's dependencies
    sys.exit("gen_api_docs.py needs protobuf and grpcio-tools: run it with .venv/bin/python (`make venv`)")

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
DEFAULT_OUTPUT = ROOT / "docs" / "api.md"
PACKAGE = "privtune.v1"

CONVENTIONS_FILE = "privtune/v1/dataset_service.proto"
EVENTS_FILE = "privtune/v1/events.proto"
# Called by privtune's own workers, never by users.
INTERNAL_SERVICES = frozenset({"TrainingAttemptService", "CurationWorkService"})
# The order a reader meets the APIs in: data, curation, training, registry, then the worker
# APIs. Files not listed follow in name order; events.proto always comes last.
FILE_ORDER = (
    "privtune/v1/dataset_service.proto",
    "privtune/v1/curation_service.proto",
    "privtune/v1/curation_config.proto",
    "privtune/v1/training_service.proto",
    "privtune/v1/registry_service.proto",
    "privtune/v1/curation_work_service.proto",
    "privtune/v1/training_attempt_service.proto",
)

# Field numbers of the descriptor fields that SourceCodeInfo paths walk through.
_FILE = descriptor_pb2.FileDescriptorProto
_MESSAGE = descriptor_pb2.DescriptorProto
FILE_SYNTAX = _FILE.SYNTAX_FIELD_NUMBER
FILE_MESSAGE = _FILE.MESSAGE_TYPE_FIELD_NUMBER
FILE_ENUM = _FILE.ENUM_TYPE_FIELD_NUMBER
FILE_SERVICE = _FILE.SERVICE_FIELD_NUMBER
MESSAGE_FIELD = _MESSAGE.FIELD_FIELD_NUMBER
MESSAGE_NESTED = _MESSAGE.NESTED_TYPE_FIELD_NUMBER
MESSAGE_ENUM = _MESSAGE.ENUM_TYPE_FIELD_NUMBER
ENUM_VALUE = descriptor_pb2.EnumDescriptorProto.VALUE_FIELD_NUMBER
SERVICE_METHOD = descriptor_pb2.ServiceDescriptorProto.METHOD_FIELD_NUMBER

_Field = descriptor_pb2.FieldDescriptorProto
SCALAR_NAMES = {
    _Field.TYPE_DOUBLE: "double", _Field.TYPE_FLOAT: "float", _Field.TYPE_INT64: "int64",
    _Field.TYPE_UINT64: "uint64", _Field.TYPE_INT32: "int32", _Field.TYPE_FIXED64: "fixed64",
    _Field.TYPE_FIXED32: "fixed32", _Field.TYPE_BOOL: "bool", _Field.TYPE_STRING: "string",
    _Field.TYPE_BYTES: "bytes", _Field.TYPE_UINT32: "uint32", _Field.TYPE_SFIXED32: "sfixed32",
    _Field.TYPE_SFIXED64: "sfixed64", _Field.TYPE_SINT32: "sint32", _Field.TYPE_SINT64: "sint64",
}
DIVIDER = re.compile(r"^\s*-{3,}\s*(?P<title>\S.*?)\s*$")
COMMENT_LINE = re.compile(r"^(?P<indent>\s*)//(?P<text>.*)$")
LIST_ITEM = re.compile(r"^(?:[-*+]|\d+[.)])\s")


# ----------------------------------------------------------------------------- build

def build_descriptor_set(proto_root: Path = PROTO_ROOT) -> descriptor_pb2.FileDescriptorSet:
    """Compile every proto under ``proto_root/privtune/v1`` into a set with source info."""
    protos = sorted(str(p.relative_to(proto_root)) for p in (proto_root / "privtune" / "v1").glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {proto_root / 'privtune' / 'v1'}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "privtune.binpb"
        proc = subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", "-I", ".", "--include_source_info",
             f"--descriptor_set_out={out}", *protos],
            cwd=proto_root, capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise SystemExit(f"protoc failed on {proto_root}:\n{proc.stderr}")
        descriptor_set = descriptor_pb2.FileDescriptorSet()
        descriptor_set.ParseFromString(out.read_bytes())
    return descriptor_set


# ----------------------------------------------------------------------------- comments

@dataclass(frozen=True)
class Comments:
    """The comments protoc attached to one element of a .proto file."""

    leading: str = ""
    trailing: str = ""
    detached: tuple[str, ...] = ()
    line: int = 0  # 0-based line and column the element starts at, and the line it ends on
    column: int = 0
    end_line: int = 0

    @property
    def text(self) -> str:
        """Leading then trailing comment, as one raw comment."""
        return "\n\n".join(c for c in (self.leading, self.trailing) if c.strip())


class FileComments:
    """Comments of one file, looked up by SourceCodeInfo path."""

    def __init__(self, file: descriptor_pb2.FileDescriptorProto, source: str | None = None) -> None:
        self._by_path: dict[tuple[int, ...], Comments] = {}
        for loc in file.source_code_info.location:
            span = list(loc.span)  # [line, column, end_line, end_column]; end_line left out when equal
            # setdefault: the first location of a path is the element's own declaration.
            self._by_path.setdefault(tuple(loc.path), Comments(
                loc.leading_comments, loc.trailing_comments, tuple(loc.leading_detached_comments),
                line=span[0], column=span[1], end_line=span[2] if len(span) == 4 else span[0]))
        if source is not None:
            self._join_wrapped_trailing_comments(source.splitlines())

    def at(self, *path: int) -> Comments:
        return self._by_path.get(path, Comments())

    def _join_wrapped_trailing_comments(self, lines: list[str]) -> None:
        """Give a trailing comment back the lines it wraps onto.

        protoc reads the second line here as the leading comment of ``score``::

            repeated string entities = 2;   // all supported (EMAIL_ADDRESS, PHONE_NUMBER,
                                            // US_SSN, PERSON)
            optional double score = 3;      // default 0.4

        Comment lines right below a one-line trailing comment, indented past the start of its
        element, continue that comment; they are moved from the next element's leading comment.
        """
        leading_from_line = {c.line - len(c.leading.splitlines()): path
                             for path, c in self._by_path.items() if c.leading}
        for path, comments in list(self._by_path.items()):
            if len(comments.trailing.splitlines()) != 1:
                continue
            wrapped: list[str] = []
            for line in lines[comments.end_line + 1:]:
                match = COMMENT_LINE.match(line)
                if not match or len(match["indent"]) <= comments.column:
                    break
                wrapped.append(match["text"] + "\n")
            if not wrapped:
                continue
            self._by_path[path] = replace(comments, trailing=comments.trailing + "".join(wrapped))
            owner = leading_from_line.get(comments.end_line + 1)
            if owner is not None:
                leading = self._by_path[owner].leading.splitlines(keepends=True)
                self._by_path[owner] = replace(self._by_path[owner], leading="".join(leading[len(wrapped):]))


def comment_blocks(raw: str) -> list[list[str]]:
    """A proto comment as paragraphs of lines: wrapped lines joined, list items kept apart.

    protoc keeps each ``//`` line (minus the slashes) with its newline. A blank line ends a
    paragraph; a line starting with ``-``, ``*`` or ``1.`` starts a list item; any other line
    continues the line before it.
    """
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in raw.splitlines():
        stripped = line.strip()
        if not stripped:
            if current:
                blocks.append(current)
            current = []
        elif LIST_ITEM.match(stripped) or not current:
            current.append(stripped)
        else:
            current[-1] += " " + stripped
    if current:
        blocks.append(current)
    return blocks


def escape_markdown(text: str, *, table_cell: bool = False) -> str:
    """Comment text made safe for markdown: ``<``, ``>`` and ``*`` outside `code`, ``|`` in cells."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unmatched backtick: treat the whole text as prose
        parts = [text.replace("`", "\\`")]
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;").replace("*", "\\*")
    escaped = "`".join(parts)
    return escaped.replace("|", "\\|") if table_cell else escaped


def render_blocks(blocks: list[list[str]]) -> str:
    """Paragraphs and lists of ``comment_blocks`` as markdown."""
    rendered = []
    for block in blocks:
        lines: list[str] = []
        for i, line in enumerate(block):
            item = LIST_ITEM.match(line)
            if item:
                if i > 0 and not LIST_ITEM.match(block[i - 1]):
                    lines.append("")  # a list after a paragraph line starts its own block
                marker = "-" if item[0].strip() in "-*+" else item[0].strip()
                lines.append(f"{marker} {escape_markdown(line[item.end():])}")
            else:
                lines.append(escape_markdown(line))
        rendered.append("\n".join(lines))
    return "\n\n".join(rendered)


def paragraphs(raw: str) -> str:
    """A comment as markdown paragraphs (empty string for no comment)."""
    return render_blocks(comment_blocks(raw))


def cell(raw: str) -> str:
    """A comment as the text of one table cell."""
    return " ".join(escape_markdown(line, table_cell=True) for block in comment_blocks(raw) for line in block)


# ----------------------------------------------------------------------------- model

@dataclass(frozen=True)
class Service:
    file: descriptor_pb2.FileDescriptorProto
    index: int
    proto: descriptor_pb2.ServiceDescriptorProto

    @property
    def full_name(self) -> str:
        return f"{self.file.package}.{self.proto.name}"


@dataclass(frozen=True)
class TypeDef:
    """A message or enum, top-level or nested, with the path to its comments."""

    full_name: str
    display_name: str  # Outer.Inner for nested types
    path: tuple[int, ...]
    proto: descriptor_pb2.DescriptorProto | descriptor_pb2.EnumDescriptorProto


def ordered_files(descriptor_set: descriptor_pb2.FileDescriptorSet) -> list[descriptor_pb2.FileDescriptorProto]:
    """Files in reading order: FILE_ORDER, then the rest by name, then events.proto."""
    def key(file: descriptor_pb2.FileDescriptorProto) -> tuple[int, int, str]:
        if file.name == EVENTS_FILE:
            return (2, 0, file.name)
        if file.name in FILE_ORDER:
            return (0, FILE_ORDER.index(file.name), file.name)
        return (1, 0, file.name)
    return sorted(descriptor_set.file, key=key)


def types_in_file(file: descriptor_pb2.FileDescriptorProto, comments: FileComments) -> list[TypeDef]:
    """Messages and enums of a file in the order they are written (nested ones after their parent)."""
    def walk(messages: list[descriptor_pb2.DescriptorProto], enums: list[descriptor_pb2.EnumDescriptorProto],
             prefix: str, path: tuple[int, ...], message_tag: int, enum_tag: int) -> Iterator[TypeDef]:
        found = [TypeDef(f"{file.package}.{prefix}{m.name}", f"{prefix}{m.name}", (*path, message_tag, i), m)
                 for i, m in enumerate(messages) if not m.options.map_entry]
        found += [TypeDef(f"{file.package}.{prefix}{e.name}", f"{prefix}{e.name}", (*path, enum_tag, i), e)
                  for i, e in enumerate(enums)]
        for typedef in sorted(found, key=lambda t: comments.at(*t.path).line):
            yield typedef
            if isinstance(typedef.proto, descriptor_pb2.DescriptorProto):
                yield from walk(list(typedef.proto.nested_type), list(typedef.proto.enum_type),
                                f"{typedef.display_name}.", typedef.path, MESSAGE_NESTED, MESSAGE_ENUM)
    return list(walk(list(file.message_type), list(file.enum_type), "", (), FILE_MESSAGE, FILE_ENUM))


# ----------------------------------------------------------------------------- render

def anchor(name: str) -> str:
    return f'<a name="{name}"></a>'


class Renderer:
    """Renders one FileDescriptorSet as the markdown API reference."""

    def __init__(self, descriptor_set: descriptor_pb2.FileDescriptorSet, sources: dict[str, str]) -> None:
        """``sources``: each file's text by its name, to join wrapped trailing comments."""
        self.files = ordered_files(descriptor_set)
        self.comments = {f.name: FileComments(f, sources.get(f.name)) for f in self.files}
        self.types = {f.name: types_in_file(f, self.comments[f.name]) for f in self.files}
        self.own_types = {t.full_name for types in self.types.values() for t in types}
        self.services = [Service(f, i, s) for f in self.files for i, s in enumerate(f.service)]
        self.file_intro, self.conventions = self._split_conventions()
        # A service without its own comment is described by its file's header; then the
        # file's section does not repeat it.
        self.header_shown_with_service = {
            s.file.name for s in self.services if not self.comments[s.file.name].at(FILE_SERVICE, s.index).text}

    def _split_conventions(self) -> tuple[dict[str, str], str]:
        """Each file's header comment, with the conventions taken out of CONVENTIONS_FILE's."""
        intro = {f.name: self.comments[f.name].at(FILE_SYNTAX).text for f in self.files}
        blocks = comment_blocks(intro.get(CONVENTIONS_FILE, ""))
        start = next((i for i, b in enumerate(blocks) if b[0].startswith("Conventions")), None)
        if start is None:
            raise SystemExit(
                f"proto/{CONVENTIONS_FILE}: its header comment has no paragraph starting with 'Conventions'; "
                "the API reference takes the conventions shared by every API from there")
        # The paragraph's first line introduces the list ("Conventions shared by ...:"); the
        # reference has its own heading for it.
        conventions = [blocks[start][1:], *blocks[start + 1:]]
        intro[CONVENTIONS_FILE] = "\n\n".join("\n".join(b) for b in blocks[:start])
        return intro, render_blocks([b for b in conventions if b])

    # -- links and types

    def link(self, type_name: str) -> str:
        """A type reference (``.privtune.v1.Dataset``): a link for ours, code for others."""
        name = type_name.lstrip(".")
        if name in self.own_types:
            short = name.removeprefix(f"{PACKAGE}.")
            return f"[{short}](#{name})"
        return f"`{name}`"

    def field_type(self, field: descriptor_pb2.FieldDescriptorProto, message: descriptor_pb2.DescriptorProto) -> str:
        if field.type in (_Field.TYPE_MESSAGE, _Field.TYPE_ENUM):
            entry = self._map_entry(field, message)
            if entry is not None:
                key, value = entry.field[0], entry.field[1]
                return f"map&lt;{self.field_type(key, entry)}, {self.field_type(value, entry)}&gt;"
            return self.link(field.type_name)
        return f"`{SCALAR_NAMES[field.type]}`"

    @staticmethod
    def _map_entry(field: descriptor_pb2.FieldDescriptorProto,
                   message: descriptor_pb2.DescriptorProto) -> descriptor_pb2.DescriptorProto | None:
        if field.label != _Field.LABEL_REPEATED or field.type != _Field.TYPE_MESSAGE:
            return None
        entry_name = field.type_name.rsplit(".", 1)[-1]
        return next((n for n in message.nested_type if n.name == entry_name and n.options.map_entry), None)

    def field_label(self, field: descriptor_pb2.FieldDescriptorProto, message: descriptor_pb2.DescriptorProto) -> str:
        if self._map_entry(field, message) is not None:
            return "map"
        if field.label == _Field.LABEL_REPEATED:
            return "repeated"
        if field.proto3_optional:
            return "optional"
        if field.HasField("oneof_index"):
            return f"oneof `{message.oneof_decl[field.oneof_index].name}`"
        return ""

    # -- sections

    def render(self) -> str:
        out: list[str] = [
            "# privtune API reference",
            "",
            "<!-- Generated by scripts/gen_api_docs.py from proto/privtune/v1/*.proto: do not edit by hand, "
            "run `make api-docs`. -->",
            "",
            f"Every privtune API is a gRPC service in the package `{PACKAGE}`; this page is generated from "
            "the protos in [`proto/privtune/v1/`](../proto/privtune/v1/), their comments included.",
            "",
        ]
        out += self.render_contents()
        out += ["## Conventions", "", f"Shared by every privtune API (from the header of `proto/{CONVENTIONS_FILE}`):",
                "", self.conventions, ""]
        out += ["## Services", ""]
        for service in self.services:
            if service.proto.name not in INTERNAL_SERVICES:
                out += self.render_service(service)
        out += ["## Internal services", "",
                "Called by privtune's own workers, never by users; listed for operators and implementers.", ""]
        for service in self.services:
            if service.proto.name in INTERNAL_SERVICES:
                out += self.render_service(service)
        out += ["## Messages and enums", ""]
        for file in self.files:
            if file.name != EVENTS_FILE:
                out += self.render_file(file, heading="###", divider_heading="####")
        events = [f for f in self.files if f.name == EVENTS_FILE]
        if events:
            out += ["## Events", ""]
            out += self.render_file(events[0], heading=None, divider_heading="###")
        return "\n".join(out).rstrip("\n") + "\n"

    def render_contents(self) -> list[str]:
        out = ["## Contents", "", "- [Conventions](#conventions)", "- [Services](#services)"]
        for internal in (False, True):
            if internal:
                out.append("- [Internal services](#internal-services)")
            for service in self.services:
                if (service.proto.name in INTERNAL_SERVICES) != internal:
                    continue
                out.append(f"  - [{service.proto.name}](#{service.full_name})")
                for method in service.proto.method:
                    out.append(f"    - [{method.name}](#{service.full_name}.{method.name})")
        out.append("- [Messages and enums](#messages-and-enums)")
        for file in self.files:
            if file.name != EVENTS_FILE:
                out.append(f"  - [{file.name}](#{file.name})")
        if any(f.name == EVENTS_FILE for f in self.files):
            out.append("- [Events](#events)")
            for title in self.dividers(EVENTS_FILE):
                out.append(f"  - [{title}](#{divider_anchor(EVENTS_FILE, title)})")
        return [*out, ""]

    def dividers(self, file_name: str) -> list[str]:
        return [title for typedef in self.types[file_name]
                for title in divider_titles(self.comments[file_name].at(*typedef.path))]

    def render_service(self, service: Service) -> list[str]:
        comments = self.comments[service.file.name]
        description = comments.at(FILE_SERVICE, service.index).text or self.file_intro[service.file.name]
        out = [anchor(service.full_name), f"### {service.proto.name}", ""]
        if description:
            out += [paragraphs(description), ""]
        out += [f"Defined in [`{service.file.name}`](#{service.file.name}).", ""]
        for i, method in enumerate(service.proto.method):
            request = self.link(method.input_type)
            response = self.link(method.output_type)
            kind = {(False, False): "Unary", (False, True): "Server streaming",
                    (True, False): "Client streaming", (True, True): "Bidirectional streaming"}[
                (method.client_streaming, method.server_streaming)]
            if method.client_streaming:
                request = f"stream of {request}"
            if method.server_streaming:
                response = f"stream of {response}"
            out += [anchor(f"{service.full_name}.{method.name}"), f"#### {service.proto.name}.{method.name}", "",
                    f"{kind}: {request} → {response}", ""]
            text = comments.at(FILE_SERVICE, service.index, SERVICE_METHOD, i).text
            if text:
                out += [paragraphs(text), ""]
        return out

    def render_file(self, file: descriptor_pb2.FileDescriptorProto, *, heading: str | None,
                    divider_heading: str) -> list[str]:
        comments = self.comments[file.name]
        out = [anchor(file.name)]
        if heading:
            out += [f"{heading} {file.name}"]
        out += [""]
        intro = self.file_intro[file.name]
        if intro and file.name not in self.header_shown_with_service:
            out += [paragraphs(intro), ""]
        for typedef in self.types[file.name]:
            for title in divider_titles(comments.at(*typedef.path)):
                out += [anchor(divider_anchor(file.name, title)), f"{divider_heading} {title}", ""]
            if isinstance(typedef.proto, descriptor_pb2.DescriptorProto):
                out += self.render_message(typedef, comments)
            else:
                out += self.render_enum(typedef, comments)
        return out

    def render_message(self, typedef: TypeDef, comments: FileComments) -> list[str]:
        message = typedef.proto
        assert isinstance(message, descriptor_pb2.DescriptorProto)
        out = [anchor(typedef.full_name), f"#### {typedef.display_name}", ""]
        text = comments.at(*typedef.path).text
        if text:
            out += [paragraphs(text), ""]
        if not message.field:
            return [*out, "No fields.", ""]
        out += ["| Field | Type | Label | Number | Description |", "|---|---|---|---|---|"]
        for i, field in enumerate(message.field):
            description = cell(comments.at(*typedef.path, MESSAGE_FIELD, i).text)
            out.append(f"| `{field.name}` | {self.field_type(field, message)} | {self.field_label(field, message)} "
                       f"| {field.number} | {description} |")
        return [*out, ""]

    def render_enum(self, typedef: TypeDef, comments: FileComments) -> list[str]:
        enum = typedef.proto
        assert isinstance(enum, descriptor_pb2.EnumDescriptorProto)
        out = [anchor(typedef.full_name), f"#### {typedef.display_name} (enum)", ""]
        text = comments.at(*typedef.path).text
        if text:
            out += [paragraphs(text), ""]
        out += ["| Value | Number | Description |", "|---|---|---|"]
        for i, value in enumerate(enum.value):
            description = cell(comments.at(*typedef.path, ENUM_VALUE, i).text)
            out.append(f"| `{value.name}` | {value.number} | {description} |")
        return [*out, ""]


def divider_titles(comments: Comments) -> list[str]:
    """Titles of divider comments (``// ------ training``) just above an element."""
    titles = []
    for detached in comments.detached:
        match = DIVIDER.match(detached.strip())
        if match:
            title = match["title"]
            titles.append(escape_markdown(title[:1].upper() + title[1:]))
    return titles


def divider_anchor(file_name: str, title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return f"{file_name}:{slug}"


def render_api_reference(proto_root: Path = PROTO_ROOT) -> str:
    """The API reference for the protos under ``proto_root``, as markdown."""
    descriptor_set = build_descriptor_set(proto_root)
    sources = {f.name: (proto_root / f.name).read_text(encoding="utf-8") for f in descriptor_set.file}
    return Renderer(descriptor_set, sources).render()


# ----------------------------------------------------------------------------- CLI

def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the output file differs from the protos")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="default: docs/api.md")
    parser.add_argument("--proto-root", type=Path, default=PROTO_ROOT, help="the -I root of privtune/v1 (default: proto)")
    args = parser.parse_args(argv)

    rendered = render_api_reference(args.proto_root)
    output: Path = args.output
    if args.check:
        if not output.exists():
            print(f"{_display(output)} is missing: run `make api-docs` and commit the result", file=sys.stderr)
            return 1
        current = output.read_text(encoding="utf-8")
        if current != rendered:
            print(f"{_display(output)} is stale: run `make api-docs` and commit the result", file=sys.stderr)
            diff = difflib.unified_diff(current.splitlines(), rendered.splitlines(), "committed", "generated",
                                        lineterm="", n=1)
            for line in list(diff)[:20]:
                print(line, file=sys.stderr)
            return 1
        print(f"{_display(output)} is up to date")
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(rendered, encoding="utf-8")
    print(f"wrote {_display(output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
