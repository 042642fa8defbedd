"""Recipes: turn curated documents into supervised fine-tuning examples.

An example is a dict in one of three shapes, chosen by ``output_format``:

- ``alpaca``: ``{"instruction", "input", "output"}``
- ``prompt_completion``: ``{"prompt", "completion"}``
- ``chat``: ``{"messages": [{"role", "content"}, ...]}``

Preference pairs (``prompt``/``chosen``/``rejected``) pass through in their own shape
whatever the format, since DPO needs both answers.
"""

from __future__ import annotations

import re
from typing import Callable, Iterator, Mapping

from services.curation.documents import Document

Example = dict[str, object]
RECIPES = ("auto", "passthrough", "tickets_to_sft", "documents_to_qa")
FORMATS = ("alpaca", "prompt_completion", "chat")


def _shape(instruction: str, context: str, answer: str, output_format: str) -> Example:
    """One (instruction, optional context, answer) triple in the requested shape."""
    if output_format == "alpaca":
        return {"instruction": instruction, "input": context, "output": answer}
    prompt = f"{instruction}\n\n{context}".strip() if context else instruction
    if output_format == "prompt_completion":
        return {"prompt": prompt, "completion": answer}
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def from_paired(doc: Document, output_format: str) -> Iterator[Example]:
    """Already-paired records: instruction/input/response or prompt/completion, chat, preference."""
    f: Mapping[str, object] = doc.fields
    if doc.kind == "preference":
        prompt, chosen, rejected = _text(f.get("prompt")), _text(f.get("chosen")), _text(f.get("rejected"))
        if prompt and chosen and rejected:
            yield {"prompt": prompt, "chosen": chosen, "rejected": rejected}
        return
    if doc.kind == "chat":
        messages = [m for m in f.get("messages", []) if isinstance(m, Mapping)]  # type: ignore[union-attr]
        turns = [{"role": _text(m.get("role")), "content": _text(m.get("content"))} for m in messages]
        turns = [t for t in turns if t["role"] and t["content"]]
        if any(t["role"] == "assistant" for t in turns):
            if output_format == "chat":
                yield {"messages": turns}
            else:  # flatten: the last assistant turn answers everything before it
                last = max(i for i, t in enumerate(turns) if t["role"] == "assistant")
                context = "\n".join(f"{t['role']}: {t['content']}" for t in turns[:last] if t["role"] != "system")
                yield _shape(context, "", turns[last]["content"], output_format)
        return
    if doc.kind == "paired":
        instruction = _text(f.get("instruction")) or _text(f.get("prompt")) or _text(f.get("question"))
        context = _text(f.get("input")) or _text(f.get("context"))
        answer = (_text(f.get("output")) or _text(f.get("response")) or _text(f.get("completion"))
                  or _text(f.get("answer")))
        if instruction and answer:
            yield _shape(instruction, context, answer, output_format)


def from_ticket(doc: Document, output_format: str) -> Iterator[Example]:
    """A support thread: the customer's question (with subject) to the agent's first answer.

    With ``chat`` output the whole alternating conversation is kept as turns.
    """
    messages = [m for m in doc.fields.get("messages", []) if isinstance(m, Mapping)]  # type: ignore[union-attr]
    turns = [(_text(m.get("role")), _text(m.get("text"))) for m in messages]
    turns = [(("user" if r == "customer" else "assistant"), t) for r, t in turns if t and r in ("customer", "agent")]
    if not turns or turns[0][0] != "user" or not any(r == "assistant" for r, _ in turns):
        return
    subject = _text(doc.fields.get("subject"))
    if output_format == "chat":
        merged: list[dict[str, str]] = []
        for role, text in turns:  # merge consecutive messages of one side
            if merged and merged[-1]["role"] == role:
                merged[-1]["content"] += "\n\n" + text
            else:
                merged.append({"role": role, "content": text})
        if subject:
            merged[0]["content"] = f"{subject}\n\n{merged[0]['content']}"
        yield {"messages": merged}
        return
    first_answer = next(i for i, (r, _) in enumerate(turns) if r == "assistant")
    question = "\n\n".join(t for _, t in turns[:first_answer])
    yield _shape(f"{subject}\n\n{question}".strip() if subject else question, "", turns[first_answer][1],
                 output_format)


_SENTENCE = re.compile(r"([^\n]+?[.!?:])(?=\s|$)|([^\n]+)")  # the first sentence, or else the first line
_MAX_TOPIC_CHARS = 120
_HEADED_FORMATS = frozenset({"html", "markdown"})  # pages that usually have headings


def _topic(doc: Document, body: str) -> tuple[str, str]:
    """``(title, answer)`` for a section: its heading (or HTML ``<title>``) and its body.

    An HTML or Markdown section with neither (a page without headings, text before the
    first heading) takes its first sentence as the title and the rest as the answer, when
    that sentence is short enough to read as a topic. Plain text and PDF pages do not:
    a chunk or page often starts mid-sentence, so they give no example (listed, with why).
    """
    title = _text(doc.fields.get("title"))
    if title or doc.format not in _HEADED_FORMATS:
        return title, body
    m = _SENTENCE.match(body)
    first = (m.group(1) or m.group(2) or "").strip() if m else ""
    rest = body[m.end():].strip() if m else ""
    if not first or not rest or len(first) > _MAX_TOPIC_CHARS:
        return "", body
    return first.rstrip(".!?:").strip(), rest


def from_document(doc: Document, output_format: str) -> Iterator[Example]:
    """Section-based question/answer templates for prose (wiki pages, policies, PDFs).

    The section title (see ``_topic``) becomes the question; the section body is the
    answer. Sections without one give no example (``no_example_reason`` says so).
    """
    body = doc.text.strip()
    if not body:
        return
    title, answer = _topic(doc, body)
    path = [p for p in doc.fields.get("path", []) if isinstance(p, str)]  # type: ignore[union-attr]
    where = " > ".join(path[:-1]) if len(path) > 1 else doc.provenance.source
    if title and answer != title:
        yield _shape(f"What does our documentation say about \"{title}\"?", f"Source: {where}", answer,
                     output_format)


def from_code(doc: Document, output_format: str) -> Iterator[Example]:
    symbol, language = _text(doc.fields.get("symbol")), _text(doc.fields.get("language"))
    if symbol and doc.text.strip():
        yield _shape(f"Show the implementation of `{symbol}` in {doc.provenance.source}.", "",
                     f"```{language}\n{doc.text.strip()}\n```", output_format)


_BY_KIND: dict[str, Callable[[Document, str], Iterator[Example]]] = {
    "paired": from_paired, "chat": from_paired, "preference": from_paired, "ticket": from_ticket,
    "text": from_document, "code": from_code,
}
_ALLOWED_KINDS: dict[str, tuple[str, ...]] = {
    "auto": tuple(_BY_KIND),
    "passthrough": ("paired", "chat", "preference"),
    "tickets_to_sft": ("ticket",),
    "documents_to_qa": ("text",),
}


def build_examples(doc: Document, recipe: str, output_format: str) -> Iterator[Example]:
    """Examples from one document under ``recipe`` (documents of other kinds yield none)."""
    kind = "code" if doc.format == "code" else doc.kind
    if kind not in _ALLOWED_KINDS[recipe]:
        return iter(())
    return _BY_KIND[kind](doc, output_format)


def no_example_reason(doc: Document, recipe: str) -> str:
    """Why ``build_examples`` made nothing of ``doc``: a sentence for the report (never its content).

    Mirrors the conditions of the ``from_*`` functions above; keep them in step.
    """
    kind = "code" if doc.format == "code" else doc.kind
    if kind not in _ALLOWED_KINDS[recipe]:
        return f"recipe {recipe} does not use {kind} documents; use recipe auto to include them"
    if kind == "text":
        body = doc.text.strip()
        if not body:
            return "the section has no text"
        title, answer = _topic(doc, body)
        if not title:
            return ("no heading or title to turn into a question (plain text and PDF pages have none, and an "
                    "untitled HTML/Markdown section has no short first sentence); add headings to the source")
        return "the section holds only its heading" if answer == title else "no example could be made"
    if kind == "code":
        return "no function or class name at the start of this code to ask about" if doc.text.strip() else \
            "the code chunk is empty"
    if kind == "preference":
        return "the preference record has an empty prompt, chosen or rejected answer"
    if kind == "chat":
        return "the conversation has no assistant turn with text to learn from"
    if kind == "ticket":
        return "the thread has no agent answer after the customer's first message"
    return ("the record has no instruction (instruction, prompt or question) or no answer (output, response, "
            "completion or answer) with text")
