"""The curation report: what every stage kept, dropped and why — counts, never text."""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field

from services.curation.documents import Quarantined

_HISTOGRAM_EDGES = (0, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
MAX_LISTED_QUARANTINE = 1000


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
    train: int = 0
    holdout: int = 0
    length_words: Counter[str] = field(default_factory=Counter)

    def quarantine(self, q: Quarantined) -> None:
        self.quarantined_by_code[q.code] += 1
        if len(self.quarantined) < MAX_LISTED_QUARANTINE:
            p = q.provenance
            self.quarantined.append({"source": p.source, "member": p.member, "line": p.line, "offset": p.offset,
                                     "page": p.page, "code": q.code, "reason": q.reason})

    def count_length(self, words: int) -> None:
        self.length_words[_bucket(words)] += 1

    def to_dict(self) -> dict[str, object]:
        return {
            "input": {"objects": self.objects, "bytes": self.bytes, "documents": self.documents},
            "quarantine": {"total": sum(self.quarantined_by_code.values()),
                           "by_code": dict(sorted(self.quarantined_by_code.items())),
                           "items": self.quarantined, "items_listed_max": MAX_LISTED_QUARANTINE},
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
    items = "".join(
        f"<tr><td>{html.escape(str(i['source']))}{'!' + html.escape(str(i['member'])) if i['member'] else ''}</td>"
        f"<td class=n>{i['line'] or ''}</td><td>{html.escape(str(i['code']))}</td>"
        f"<td>{html.escape(str(i['reason']))}</td></tr>" for i in q["items"])  # type: ignore[index]
    return f"""<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title><style>
body{{font:14px system-ui,sans-serif;margin:2em;max-width:70em;color:#222}} h1{{font-size:1.4em}}
table{{border-collapse:collapse;margin:.5em 0 1.5em}} td,th{{border:1px solid #ddd;padding:.3em .6em;text-align:left}}
td.n{{text-align:right;font-variant-numeric:tabular-nums}} .bar{{display:flex;gap:.5em;align-items:center}}
.bar span{{width:7em}} .bar i{{background:#4a7;height:.9em;display:inline-block}} .none{{color:#888}}
</style></head><body><h1>{html.escape(title)}</h1>
<h2>Input</h2>{table(r["input"])}
<h2>Examples</h2>{table({"train": ex["train"], "holdout": ex["holdout"], "general mix": ex["general_mix"],
                         "documents without an example": ex["documents_without_example"]})}
{table(ex["by_document_kind"], ("document kind", "examples"))}
<h3>Length (words per example)</h3>{bars(ex["length_words_histogram"])}
<h2>PII</h2>{table(r["pii"]["found_by_type"], ("entity", "found"))}
<p>records dropped for PII: {r["pii"]["dropped_records"]}</p>
<h2>Quality filters</h2>{table(r["quality"]["dropped_by_reason"], ("rule", "dropped"))}
<h2>Dedupe</h2>{table(r["dedupe"]["dropped"], ("kind", "dropped"))}
<p>clusters: {r["dedupe"]["clusters"]}; largest: {html.escape(str(r["dedupe"]["largest_clusters"]))}</p>
<h2>Quarantine ({q["total"]})</h2>{table(q["by_code"], ("reason", "inputs"))}
<table><tr><th>file</th><th>line</th><th>code</th><th>reason</th></tr>{items}</table>
</body></html>"""
