"""The curation report: what every stage kept, dropped and why — counts and locations, never text.

Each dropped or quarantined record is listed by file, line/offset and reason (the first
``MAX_LISTED`` of each list; the rest are counted as "not listed"), so a user can find
it in their own data, while a 10M-record job's report stays a few megabytes at most.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field

from services.curation.documents import Provenance, Quarantined

_HISTOGRAM_EDGES = (0, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
MAX_LISTED_QUARANTINE = 1000
MAX_LISTED = 1000               # per list of dropped records (quality, dedupe, PII, no example)
MAX_KEPT_LOCATIONS = 100_000    # kept documents whose location a dedupe entry can name (bounded memory)
DROP_LISTS = ("quality", "dedupe", "pii", "no_example")


def location(p: Provenance) -> dict[str, object]:
    """Where a record is: enough to find it in the tenant's own files, nothing of its content."""
    return {"source": p.source, "member": p.member, "line": p.line, "offset": p.offset, "page": p.page}


@dataclass
class Listing:
    """The first ``limit`` entries of a list that may grow to millions; the rest are only counted."""

    limit: int = MAX_LISTED
    total: int = 0
    items: list[dict[str, object]] = field(default_factory=list)

    def add(self, entry: dict[str, object]) -> None:
        self.total += 1
        if len(self.items) < self.limit:
            self.items.append(entry)

    def to_dict(self) -> dict[str, object]:
        return {"total": self.total, "listed_max": self.limit, "not_listed": self.total - len(self.items),
                "items": self.items}


def _bucket(n: int) -> str:
    for lo, hi in zip(_HISTOGRAM_EDGES, _HISTOGRAM_EDGES[1:]):
        if n < hi:
            return f"{lo}-{hi - 1}"
    return f"{_HISTOGRAM_EDGES[-1]}+"


@dataclass
class CurationReport:
    objects: int = 0
    bytes: int = 0
    documents: int = 0
    quarantined: list[dict[str, object]] = field(default_factory=list)
    quarantined_by_code: Counter[str] = field(default_factory=Counter)
    pii_found: Counter[str] = field(default_factory=Counter)
    pii_dropped_records: int = 0
    quality_dropped: Counter[str] = field(default_factory=Counter)
    dedupe_dropped: Counter[str] = field(default_factory=Counter)
    dedupe_clusters: int = 0
    largest_clusters: list[int] = field(default_factory=list)
    examples_by_kind: Counter[str] = field(default_factory=Counter)
    no_example: int = 0
    general_mix: int = 0
    canaries: dict[str, int] = field(default_factory=dict)  # counts only, never the secrets; {} when off
    train: int = 0
    holdout: int = 0
    length_words: Counter[str] = field(default_factory=Counter)
    dropped: dict[str, Listing] = field(default_factory=lambda: {name: Listing() for name in DROP_LISTS})
    _kept_at: dict[str, dict[str, object]] = field(default_factory=dict, repr=False)

    def quarantine(self, q: Quarantined) -> None:
        self.quarantined_by_code[q.code] += 1
        if len(self.quarantined) < MAX_LISTED_QUARANTINE:
            self.quarantined.append({**location(q.provenance), "code": q.code, "reason": q.reason})

    def drop_for_quality(self, p: Provenance, rule: str) -> None:
        self.quality_dropped[rule] += 1
        self.dropped["quality"].add({**location(p), "rule": rule})

    def keep_unique(self, doc_id: str, p: Provenance) -> None:
        """Remember where a document dedupe kept is, so its later duplicates can point at it (the first
        ``MAX_KEPT_LOCATIONS`` only; later ones are named by document id)."""
        if len(self._kept_at) < MAX_KEPT_LOCATIONS and self.dropped["dedupe"].total < MAX_LISTED:
            self._kept_at[doc_id] = location(p)

    def drop_as_duplicate(self, p: Provenance, kind: str, kept_doc_id: str) -> None:
        self.dedupe_dropped[kind] += 1
        kept = self._kept_at.get(kept_doc_id)
        self.dropped["dedupe"].add({**location(p), "kind": kind, "kept": kept, "kept_doc_id": kept_doc_id})
        if self.dropped["dedupe"].total >= MAX_LISTED:
            self._kept_at.clear()  # no later entry is listed: stop paying for the map

    def drop_for_pii(self, p: Provenance) -> None:
        """A record dropped whole because it held PII (``pii.mode: drop_record``)."""
        self.pii_dropped_records += 1
        self.dropped["pii"].add({**location(p), "reason": "held PII (pii.mode drop_record)"})

    def no_example_for(self, p: Provenance, kind: str, reason: str) -> None:
        self.no_example += 1
        self.dropped["no_example"].add({**location(p), "kind": kind, "reason": reason})

    def count_length(self, words: int) -> None:
        self.length_words[_bucket(words)] += 1

    def to_dict(self) -> dict[str, object]:
        return {
            "input": {"objects": self.objects, "bytes": self.bytes, "documents": self.documents},
            "quarantine": {"total": sum(self.quarantined_by_code.values()),
                           "by_code": dict(sorted(self.quarantined_by_code.items())),
                           "items": self.quarantined, "items_listed_max": MAX_LISTED_QUARANTINE,
                           "not_listed": sum(self.quarantined_by_code.values()) - len(self.quarantined)},
            "pii": {"found_by_type": dict(sorted(self.pii_found.items())),
                    "dropped_records": self.pii_dropped_records},
            "quality": {"dropped_by_reason": dict(sorted(self.quality_dropped.items()))},
            "dedupe": {"dropped": dict(sorted(self.dedupe_dropped.items())), "clusters": self.dedupe_clusters,
                       "largest_clusters": self.largest_clusters},
            "examples": {"by_document_kind": dict(sorted(self.examples_by_kind.items())),
                         "documents_without_example": self.no_example, "general_mix": self.general_mix,
                         "train": self.train, "holdout": self.holdout,
                         "length_words_histogram": {k: self.length_words[k] for k in _ordered_buckets()
                                                    if self.length_words[k]}},
            "dropped": {name: listing.to_dict() for name, listing in self.dropped.items()},
            **({"canaries": dict(self.canaries)} if self.canaries else {}),
        }


def _ordered_buckets() -> list[str]:
    return [f"{lo}-{hi - 1}" for lo, hi in zip(_HISTOGRAM_EDGES, _HISTOGRAM_EDGES[1:])] + [f"{_HISTOGRAM_EDGES[-1]}+"]


def render_html(report: dict[str, object], title: str) -> str:
    """A self-contained, readable HTML page of the report (all values escaped)."""
    def table(rows: dict[str, object], head: tuple[str, str] = ("", "count")) -> str:
        if not rows:
            return "<p class=none>none</p>"
        body = "".join(f"<tr><td>{html.escape(str(k))}</td><td class=n>{html.escape(str(v))}</td></tr>"
                       for k, v in rows.items())
        return f"<table><tr><th>{head[0]}</th><th>{head[1]}</th></tr>{body}</table>"

    def bars(rows: dict[str, int]) -> str:
        top = max(rows.values(), default=1)
        return "".join(f"<div class=bar><span>{html.escape(k)}</span><i style='width:{300 * v // top}px'></i>"
                       f"<b>{v}</b></div>" for k, v in rows.items())

    r = report
    q = r["quarantine"]  # type: ignore[index]
    ex = r["examples"]  # type: ignore[index]
    dropped = r["dropped"]  # type: ignore[index]
    quarantined = _records(q["items"], ("code", "reason"), q["not_listed"])  # type: ignore[index]
    listings = "".join(
        f"<h3>{html.escape(heading)} ({dropped[name]['total']})</h3>"  # type: ignore[index]
        + _records(dropped[name]["items"], columns, dropped[name]["not_listed"])  # type: ignore[index]
        for name, heading, columns in _DROP_TABLES)
    return f"""<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title><style>
body{{font:14px system-ui,sans-serif;margin:2em;max-width:70em;color:#222}} h1{{font-size:1.4em}}
table{{border-collapse:collapse;margin:.5em 0 1.5em}} td,th{{border:1px solid #ddd;padding:.3em .6em;text-align:left}}
td.n{{text-align:right;font-variant-numeric:tabular-nums}} .bar{{display:flex;gap:.5em;align-items:center}}
.bar span{{width:7em}} .bar i{{background:#4a7;height:.9em;display:inline-block}} .none{{color:#888}}
</style></head><body><h1>{html.escape(title)}</h1>
<h2>Input</h2>{table(r["input"])}
<h2>Examples</h2>{table({"train": ex["train"], "holdout": ex["holdout"], "general mix": ex["general_mix"],
                         "documents without an example": ex["documents_without_example"]})}
{table(ex["by_document_kind"], ("document kind", "examples"))}{_canaries(r)}
<h3>Length (words per example)</h3>{bars(ex["length_words_histogram"])}
<h2>PII</h2>{table(r["pii"]["found_by_type"], ("entity", "found"))}
<p>records dropped for PII: {r["pii"]["dropped_records"]}</p>
<h2>Quality filters</h2>{table(r["quality"]["dropped_by_reason"], ("rule", "dropped"))}
<h2>Dedupe</h2>{table(r["dedupe"]["dropped"], ("kind", "dropped"))}
<p>clusters: {r["dedupe"]["clusters"]}; largest: {html.escape(str(r["dedupe"]["largest_clusters"]))}</p>
<h2>Quarantine ({q["total"]})</h2>{table(q["by_code"], ("reason", "inputs"))}
{quarantined}
<h2>Dropped records</h2>
<p>Where each record dropped after parsing is, and why (its text is never shown).</p>
{listings}
</body></html>"""


def _canaries(report: dict[str, object]) -> str:
    """A line on the planted canaries (how many, never which); nothing when there are none."""
    c = report.get("canaries")
    if not isinstance(c, dict):
        return ""
    return (f"<p>canaries planted in train: {c['count']} x {c['repeats']} copies = {c['inserted']} examples, "
            f"each ranked against {c['candidates']} unseen secrets</p>")


_DROP_TABLES = (
    ("quality", "Dropped by quality filters", ("rule",)),
    ("dedupe", "Dropped as duplicates", ("kind", "kept")),
    ("pii", "Dropped for PII", ("reason",)),
    ("no_example", "Documents that gave no example", ("kind", "reason")),
)


def _where(entry: object) -> str:
    """``file!member``, line, byte offset and page of a listed record, as one readable cell."""
    if not isinstance(entry, dict):
        return ""
    parts = [f"{entry['source']}{'!' + str(entry['member']) if entry.get('member') else ''}"]
    parts += [f"{label} {entry[key]}" for key, label in (("line", "line"), ("offset", "byte"), ("page", "page"))
              if entry.get(key)]
    return ", ".join(parts)


def _cell(entry: dict[str, object], column: str) -> str:
    if column == "location":
        return _where(entry)
    if column == "kept":
        kept = entry.get("kept")
        return _where(kept) if kept else f"document {entry.get('kept_doc_id', '')} (location not recorded)"
    return str(entry.get(column, ""))


def _records(items: list[dict[str, object]], columns: tuple[str, ...], not_listed: object) -> str:
    """A table of listed records: location first, then ``columns``; a note for those not listed."""
    if not items:
        return "<p class=none>none</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ("location", *columns))
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(i, c))}</td>" for c in ("location", *columns))
                   + "</tr>" for i in items)
    more = f"<p>{html.escape(str(not_listed))} more not listed.</p>" if not_listed else ""
    return f"<table><tr>{head}</tr>{rows}</table>{more}"
