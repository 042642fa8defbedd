"""Source code: one document per top-level function or class where that is cheap to see.

Python is parsed with ``ast`` (decorators included; module-level code between
definitions becomes documents with an empty symbol). Other languages are cut at blank
lines into chunks of about ``text_chunk_bytes``, starting a new chunk at each
top-level definition a simple pattern recognises. ``fields = {"language", "symbol"}``.
"""

from __future__ import annotations

import ast
import re
from pathlib import PurePosixPath
from typing import Iterator

from services.curation.documents import Document, Quarantined
from services.curation.parsers.config import ParserConfig
from services.curation.parsers.text import BlockChunker, chunk_document
from services.curation.parsers.textio import Line, TextSource

LANGUAGES = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".jsx": "javascript", ".ts": "typescript", ".tsx": "typescript", ".java": "java", ".kt": "kotlin",
    ".scala": "scala", ".go": "go", ".rs": "rust", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp",
    ".cxx": "cpp", ".hpp": "cpp", ".cs": "csharp", ".rb": "ruby", ".php": "php", ".swift": "swift",
    ".sql": "sql", ".sh": "shell", ".bash": "shell", ".zsh": "shell", ".ps1": "powershell", ".r": "r",
    ".lua": "lua", ".pl": "perl", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml",
}
_C_LIKE = r"^(?!(?:if|for|while|switch|return|else|do|case)\b)[A-Za-z_][\w\s\*&:<>,]*?\b([A-Za-z_]\w*)\s*\([^;]*$"
_JVM = r"^(?:(?:public|private|protected|internal|abstract|final|static|sealed|open|data|partial)\s+)*" \
       r"(?:class|interface|enum|record|object|trait|struct)\s+(\w+)"
_DEFINITIONS: dict[str, re.Pattern[str]] = {name: re.compile(pattern, flags) for name, pattern, flags in (
    ("python", r"^(?:async\s+)?(?:def|class)\s+(\w+)", 0),
    ("javascript", r"^(?:export\s+)?(?:default\s+)?(?:async\s+)?(?:function\*?\s+(\w+)|class\s+(\w+)|"
                   r"(?:const|let|var)\s+(\w+)\s*=\s*(?:async\s*)?(?:\([^)]*\)|\w+)\s*=>)", 0),
    ("typescript", r"^(?:export\s+)?(?:default\s+)?(?:declare\s+)?(?:abstract\s+)?(?:async\s+)?"
                   r"(?:function\*?\s+(\w+)|class\s+(\w+)|interface\s+(\w+)|type\s+(\w+)\s*=|enum\s+(\w+)|"
                   r"(?:const|let|var)\s+(\w+)\s*(?::[^=]+)?=\s*(?:async\s*)?(?:\([^)]*\)|\w+)\s*=>)", 0),
    ("java", _JVM, 0), ("kotlin", r"^(?:(?:public|private|internal|data|sealed|open|abstract)\s+)*"
                                  r"(?:fun\s+(?:<[^>]*>\s*)?(\w+)|class\s+(\w+)|object\s+(\w+)|interface\s+(\w+))", 0),
    ("scala", r"^(?:(?:case|abstract|final|sealed)\s+)*(?:def|class|object|trait)\s+(\w+)", 0),
    ("csharp", _JVM, 0), ("swift", r"^(?:(?:public|private|internal|final|open)\s+)*(?:func|class|struct|enum|"
                                   r"protocol|extension)\s+(\w+)", 0),
    ("go", r"^(?:func\s+(?:\([^)]*\)\s*)?(\w+)|type\s+(\w+))", 0),
    ("rust", r"^(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?(?:unsafe\s+)?(?:fn|struct|enum|trait|mod|impl)\s+(\w+)", 0),
    ("c", _C_LIKE, 0), ("cpp", _C_LIKE, 0),
    ("sql", r"^\s*create\s+(?:or\s+replace\s+)?(?:temp(?:orary)?\s+)?(?:table|view|function|procedure|index|"
            r"trigger|materialized\s+view)\s+(?:if\s+not\s+exists\s+)?([\w.\"`]+)", re.IGNORECASE),
    ("shell", r"^(?:function\s+)?([A-Za-z_][\w-]*)\s*\(\)\s*\{?", 0),
    ("ruby", r"^(?:def|class|module)\s+([\w.:]+)", 0),
    ("php", r"^(?:(?:abstract|final)\s+)?(?:function|class|interface|trait)\s+(\w+)", 0),
    ("lua", r"^(?:local\s+)?function\s+([\w.:]+)", 0),
    ("perl", r"^sub\s+(\w+)", 0),
    ("r", r"^([\w.]+)\s*<-\s*function\b", 0),
)}


def language_of(name: str) -> str:
    return LANGUAGES.get(PurePosixPath(name).suffix.lower(), "")


def _symbol(language: str, text: str) -> str:
    pattern = _DEFINITIONS.get(language)
    m = pattern.match(text) if pattern else None
    return next((g for g in m.groups() if g), "") if m else ""


def _fields(language: str, symbol: str) -> dict[str, object]:
    return {"language": language, "symbol": symbol}


def _python_spans(source: str) -> list[tuple[int, int, str]] | None:
    """(first line, last line, symbol) of every top-level def/class, or None if it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    spans = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            spans.append((first, node.end_lineno or node.lineno, node.name))
    return spans


def _python_documents(lines: list[Line], source: TextSource, spans: list[tuple[int, int, str]]) -> Iterator[Document]:
    """Each def/class, and the module-level code between them, as documents."""
    index = {line.number: i for i, line in enumerate(lines)}
    cursor = lines[0].number if lines else 1
    pieces: list[tuple[int, int, str]] = []
    for first, last, name in spans:
        if first > cursor:
            pieces.append((cursor, first - 1, ""))
        pieces.append((first, last, name))
        cursor = last + 1
    if lines and cursor <= lines[-1].number:
        pieces.append((cursor, lines[-1].number, ""))
    for first, last, name in pieces:
        chunk = [lines[index[n]] for n in range(first, last + 1) if n in index]
        if any(line.text.strip() for line in chunk):
            yield chunk_document(chunk, source.base, "code", _fields("python", name))


def _blocks(lines: Iterator[Line | Quarantined], source: TextSource, config: ParserConfig,
            language: str) -> Iterator[Document | Quarantined]:
    chunker = BlockChunker(config.text_chunk_bytes, config.max_record_bytes)
    symbol = ""  # of the chunk being built: set when it starts with a recognised definition
    for line in lines:
        if isinstance(line, Quarantined):
            yield line
            continue
        found = _symbol(language, line.text)
        if found and (chunk := chunker.take()) is not None:  # a definition always starts a chunk
            yield chunk_document(chunk, source.base, "code", _fields(language, symbol))
        if (chunk := chunker.add(line)) is not None:
            yield chunk_document(chunk, source.base, "code", _fields(language, symbol))
            symbol = ""
        if found:
            symbol = found
    if (chunk := chunker.take()) is not None:
        yield chunk_document(chunk, source.base, "code", _fields(language, symbol))


def parse(source: TextSource, config: ParserConfig) -> Iterator[Document | Quarantined]:
    language = language_of(source.name)
    lines = source.lines()
    if language != "python":
        yield from _blocks(lines, source, config, language)
        return
    held: list[Line] = []  # a Python file up to max_record_bytes is parsed whole with ast
    size = 0
    for line in lines:
        if isinstance(line, Quarantined):
            yield line
            continue
        held.append(line)
        size += len(line.text) + 1
        if size > config.max_record_bytes:
            break
    else:
        spans = _python_spans("\n".join(line.text for line in held) + "\n")
        if spans is not None:
            yield from _python_documents(held, source, spans)
            return

    def replay() -> Iterator[Line | Quarantined]:
        yield from held
        yield from lines

    yield from _blocks(replay(), source, config, language)
