"""The evaluation report: one self-contained HTML page per run, and a short text summary for the CLI.

Both are built from a run's ``results.json`` dict alone (see the eval contracts), so a report can be
re-rendered from stored results at any time. The page shows example prompts and outputs, so it is
tenant-private and is stored next to ``results.json``; the text summary carries ids and scores only,
never prompts, references or outputs, so the CLI may print it.

The page is a closed box: a strict Content-Security-Policy, no script, no external resource, plots
as inline SVG, and every string from the results HTML-escaped — outputs are model generations and
may hold anything, markup included. Results are treated as untrusted input: a missing section,
a wrong type or a non-finite number renders as "none" or "n/a", never as an exception.
"""

from __future__ import annotations

import html
import math

CSP = "default-src 'none'; style-src 'unsafe-inline'"
MAX_EXAMPLES = 12               # the contract's cap; a longer list is cut, with a note
MAX_EXAMPLE_CHARS = 6000        # per prompt / reference / output shown on the page
MAX_LABEL_CHARS = 26            # a category name inside a plot (the full name is in its tooltip)
SUMMARY_METRICS = ("win_rate", "domain.score", "domain.perplexity", "general.score", "safety.refusal_rate",
                   "safety.over_refusal_rate", "toxicity", "pii_leakage_rate", "canary.exposure",
                   "extraction.exact_rate")
MAX_SUMMARY_METRICS = 8

_WIDTH = 680                    # every plot's width; the plot area is _X0.._X1, labels left, values right
_X0, _X1 = 180.0, 520.0
_MAX_BINS = 20


# --- values from untrusted results --------------------------------------------------------------

def _num(value: object) -> float | None:
    """``value`` as a finite float; None when missing, not a number (bools included) or not finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _count(value: object) -> int | None:
    """A non-negative whole count, or None."""
    number = _num(value)
    return int(number) if number is not None and number >= 0 and number == int(number) else None


def _fmt(value: object, signed: bool = False) -> str:
    """A score for display: three decimals in the usual range, "n/a" when not a finite number."""
    number = _num(value)
    if number is None:
        return "n/a"
    sign = "+" if signed else ""
    if number == 0 or 0.001 <= abs(number) < 100_000:
        return f"{number:{sign}.3f}"
    return f"{number:{sign}.3g}"


def _fmt_count(value: object) -> str:
    count = _count(value)
    return "n/a" if count is None else str(count)


def _interval(low: object, high: object, signed: bool = True) -> str:
    return f"[{_fmt(low, signed)}, {_fmt(high, signed)}]"


def _confidence(value: object) -> str:
    level = _num(value)
    return f"{level * 100:g}%" if level is not None and 0 < level < 1 else "n/a"


def _section(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _rows(value: object) -> list[dict[str, object]]:
    return [row for row in value if isinstance(row, dict)] if isinstance(value, list) else []


def _text(value: object, limit: int = 200) -> str:
    """A results string, cut to ``limit`` characters and HTML-escaped (quotes too: safe in attributes)."""
    if value is None:
        return ""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + f"… ({len(text) - limit} more characters)"
    return html.escape(text, quote=True)


def _plain(value: object, limit: int = 120) -> str:
    """A results string for a terminal: cut to ``limit``, non-printable characters (escape sequences,
    newlines) replaced by "?"."""
    if value is None:
        return ""
    text = str(value)
    text = text[:limit] + ("…" if len(text) > limit else "")
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def direction(ci_low: object, ci_high: object, higher_is_better: object) -> str:
    """Which way a change went, read from the interval of its delta (candidate − base).

    "better" or "worse" when the interval excludes 0 on the good or bad side (``higher_is_better``
    says which side is good); "inconclusive" when it contains 0, is missing or not finite, or the
    metric's direction is unknown.
    """
    low, high = _num(ci_low), _num(ci_high)
    if low is None or high is None or not isinstance(higher_is_better, bool):
        return "inconclusive"
    if low > 0:
        return "better" if higher_is_better else "worse"
    if high < 0:
        return "worse" if higher_is_better else "better"
    return "inconclusive"


def _decision(results: dict[str, object]) -> tuple[bool, str]:
    """(passed, reason); anything but ``passed: true`` is not a pass."""
    passed = results.get("passed") is True
    reason = results.get("reason")
    if not isinstance(reason, str) or not reason:
        reason = "all gates passed" if passed else "no gate decision recorded"
    return passed, reason


# --- HTML sections ------------------------------------------------------------------------------

def _table(head: tuple[str, ...], rows: list[list[str]], classes: tuple[str, ...] = ()) -> str:
    """A table of already-escaped cells; ``classes`` gives each column's cell class."""
    th = "".join(f"<th>{h}</th>" for h in head)
    def cell(i: int, content: str) -> str:
        return f"<td class={classes[i]}>{content}</td>" if i < len(classes) and classes[i] else f"<td>{content}</td>"
    body = "".join("<tr>" + "".join(cell(i, c) for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _run_facts(r: dict[str, object]) -> str:
    facts = [("eval", _text(r.get("eval_id"))), ("model version", _text(r.get("model_version_id"))),
             ("base model", _text(r.get("base_model_id"))), ("suite", _text(r.get("suite_id"))),
             ("judge", _text(r.get("judge"))), ("items", _fmt_count(r.get("items"))),
             ("shards", _fmt_count(r.get("shards"))), ("confidence", _confidence(r.get("confidence"))),
             ("bootstrap samples", _fmt_count(r.get("bootstrap_samples"))), ("seed", _fmt_count(r.get("seed")))]
    return "<dl class=facts>" + "".join(f"<dt>{k}</dt><dd>{v or 'n/a'}</dd>" for k, v in facts) + "</dl>"


def _decision_banner(r: dict[str, object]) -> str:
    passed, reason = _decision(r)
    word, cls = ("PASSED", "pass") if passed else ("FAILED", "fail")
    return f"<div class='decision {cls}'><b>{word}</b> <span>{_text(reason, 2000)}</span></div>"


def _gates_table(gates: list[dict[str, object]]) -> str:
    if not gates:
        return "<p class=none>no gates set</p>"
    rows = []
    for g in gates:
        ok = g.get("passed")
        verdict = "<span class=better>passed</span>" if ok is True else (
            "<span class=worse>failed</span>" if ok is False else "n/a")
        rows.append([_text(g.get("gate")), _text(g.get("bound_kind")), _fmt(g.get("bound")),
                     _fmt(g.get("threshold")), _fmt(g.get("margin"), signed=True), verdict,
                     _text(g.get("reason"), 500)])
    return _table(("gate", "bound kind", "bound", "threshold", "margin", "passed", "reason"), rows,
                  ("", "", "n", "n", "n"))


def _metrics_table(estimates: list[dict[str, object]]) -> str:
    if not estimates:
        return "<p class=none>no metrics</p>"
    rows = []
    for e in estimates:
        hib = e.get("higher_is_better")
        way = direction(e.get("ci_low"), e.get("ci_high"), hib)
        goal = "higher is better" if hib is True else ("lower is better" if hib is False else "direction unknown")
        rows.append([f"{_text(e.get('name'))} <small>{goal}</small>", _fmt(e.get("candidate")),
                     _fmt(e.get("reference")), _fmt(e.get("delta"), signed=True),
                     _interval(e.get("ci_low"), e.get("ci_high")), _fmt_count(e.get("n")),
                     f"<span class={way}>{way}</span>"])
    return _table(("metric", "candidate", "base", "delta", "interval of delta", "n", "change"), rows,
                  ("", "n", "n", "n", "n", "n"))


def _win_caption(win: dict[str, object]) -> str:
    return (f"<p>win rate {_fmt(win.get('value'))} {_interval(win.get('ci_low'), win.get('ci_high'), False)}: "
            f"wins {_fmt_count(win.get('wins'))} · ties {_fmt_count(win.get('ties'))} · "
            f"losses {_fmt_count(win.get('losses'))} (n {_fmt_count(win.get('n'))}); "
            f"a tie counts half, 0.5 means no preference.</p>")


def _examples(examples: list[dict[str, object]]) -> str:
    if not examples:
        return "<p class=none>no examples</p>"
    blocks = []
    for ex in examples[:MAX_EXAMPLES]:
        prompt, reference = _pre(ex.get("prompt")), _pre(ex.get("reference"))
        candidate, base = _pre(ex.get("candidate_output")), _pre(ex.get("reference_output"))
        blocks.append(
            f"<section class=example><h3>{_text(ex.get('id'))} <small>{_text(ex.get('category'))}</small> "
            f"<span class=win>{_win_label(ex.get('win'))}</span></h3>"
            f"<h4>prompt</h4>{prompt}<h4>reference</h4>{reference}"
            f"<div class=pair><div><h4>candidate</h4>{candidate}</div>"
            f"<div><h4>base</h4>{base}</div></div></section>")
    more = len(examples) - MAX_EXAMPLES
    return "".join(blocks) + (f"<p class=none>{more} more examples not shown.</p>" if more > 0 else "")


def _pre(value: object) -> str:
    return f"<pre>{_text(value, MAX_EXAMPLE_CHARS)}</pre>" if value is not None else "<p class=none>none</p>"


def _win_label(value: object) -> str:
    win = _num(value)
    if win is None:
        return "not judged"
    who = "candidate preferred" if win == 1 else "base preferred" if win == 0 else "tie" if win == 0.5 else "win"
    return f"judge: {who} ({_fmt(win)})"


# --- plots (inline SVG) ---------------------------------------------------------------------------

def _x(value: float, low: float, high: float) -> float:
    """Where ``value`` falls in the plot area for an axis from ``low`` to ``high`` (clamped to it)."""
    span = high - low
    t = (value - low) / span if math.isfinite(span) and span > 0 else 0.5
    t = min(max(t if math.isfinite(t) else 0.5, 0.0), 1.0)
    return _X0 + t * (_X1 - _X0)


def _c(v: float) -> str:
    return f"{v:.1f}"


def _svg(plot_id: str, label: str, height: float, parts: list[str]) -> str:
    return (f'<svg id="{plot_id}" role="img" aria-label="{label}" width="{_WIDTH}" height="{_c(height)}" '
            f'viewBox="0 0 {_WIDTH} {_c(height)}">' + "".join(parts) + "</svg>")


def _area(top: float, height: float) -> str:
    return f'<rect class="area" x="{_c(_X0)}" y="{_c(top)}" width="{_c(_X1 - _X0)}" height="{_c(height)}"/>'


def _vline(cls: str, x: float, y1: float, y2: float) -> str:
    return f'<line class="{cls}" x1="{_c(x)}" y1="{_c(y1)}" x2="{_c(x)}" y2="{_c(y2)}"/>'


def _whisker(x_low: float, x_high: float, y: float) -> str:
    """An interval: a horizontal line with end caps."""
    return (f'<line class="ci" x1="{_c(x_low)}" y1="{_c(y)}" x2="{_c(x_high)}" y2="{_c(y)}"/>'
            + _vline("cap", x_low, y - 5, y + 5) + _vline("cap", x_high, y - 5, y + 5))


def _label(x: float, y: float, text: str, anchor: str = "start", cls: str = "lbl") -> str:
    """SVG text; ``text`` must already be escaped."""
    return f'<text class="{cls}" x="{_c(x)}" y="{_c(y)}" text-anchor="{anchor}">{text}</text>'


def _ticks(values: list[float], low: float, high: float, y: float, signed: bool = False) -> list[str]:
    return [_vline("tick", _x(v, low, high), y, y + 4) + _label(_x(v, low, high), y + 15, _fmt(v, signed), "middle")
            for v in values]


def _win_rate_plot(win: dict[str, object]) -> str:
    """The win rate as a bar from 0 with its interval as a whisker, against the 0.5 line of no
    preference; below it, the wins/ties/losses as one stacked bar."""
    value, low, high = _num(win.get("value")), _num(win.get("ci_low")), _num(win.get("ci_high"))
    top, height = 10.0, 56.0
    rate_y, split_y = top + 16, top + 40
    parts = [_area(top, height), _label(_X0 - 8, rate_y + 4, "win rate", "end"),
             _label(_X0 - 8, split_y + 4, "wins · ties · losses", "end")]
    if value is not None:
        parts.append(f'<rect class="bar" x="{_c(_X0)}" y="{_c(rate_y - 7)}" '
                     f'width="{_c(_x(value, 0, 1) - _X0)}" height="14"/>')
    if low is not None and high is not None:
        low, high = min(low, high), max(low, high)
        parts.append(_whisker(_x(low, 0, 1), _x(high, 0, 1), rate_y))
    parts.append(_label(_X1 + 8, rate_y + 4, f"{_fmt(value)} {_interval(low, high, False)}"))
    counts = [(cls, _count(win.get(key)) or 0) for cls, key in (("wins", "wins"), ("ties", "ties"),
                                                               ("losses", "losses"))]
    total = sum(n for _, n in counts)
    x = _X0
    for cls, n in counts:
        if total and n:
            w = n / total * (_X1 - _X0)
            parts.append(f'<rect class="{cls}" x="{_c(x)}" y="{_c(split_y - 7)}" width="{_c(w)}" height="14">'
                         f"<title>{cls} {n}</title></rect>")
            x += w
    parts.append(_label(_X1 + 8, split_y + 4, " · ".join(_fmt_count(win.get(k)) for k in ("wins", "ties", "losses"))))
    parts.append(_vline("ref", _x(0.5, 0, 1), top - 4, top + height + 4))
    parts += _ticks([0.0, 0.25, 0.5, 0.75, 1.0], 0, 1, top + height)
    return _svg("plot-win-rate", "win rate with its interval against 0.5", top + height + 24, parts)


def _forest_plot(categories: list[dict[str, object]]) -> str:
    """Each category's delta (candidate − base) as a dot with its interval, around a zero line."""
    finite = [v for c in categories for v in (_num(c.get(k)) for k in ("delta", "ci_low", "ci_high")) if v is not None]
    reach = max((abs(v) for v in finite), default=0.0) or 0.1
    reach = reach * 1.1 if math.isfinite(reach * 1.1) else reach
    low, high = -reach, reach
    top, row = 10.0, 24.0
    height = row * len(categories)
    parts = [_area(top, height)]
    for i, cat in enumerate(categories):
        y = top + row * i + row / 2
        name = str(cat.get("category", ""))
        short = name if len(name) <= MAX_LABEL_CHARS else name[:MAX_LABEL_CHARS - 1] + "…"
        delta, ci_low, ci_high = _num(cat.get("delta")), _num(cat.get("ci_low")), _num(cat.get("ci_high"))
        row_parts = [f"<title>{_text(name)}: delta {_fmt(delta, True)} {_interval(ci_low, ci_high)}, "
                     f"n {_fmt_count(cat.get('n'))}</title>", _label(_X0 - 8, y + 4, html.escape(short), "end")]
        if ci_low is not None and ci_high is not None:
            row_parts.append(_whisker(_x(min(ci_low, ci_high), low, high), _x(max(ci_low, ci_high), low, high), y))
        if delta is not None:
            row_parts.append(f'<circle class="est" cx="{_c(_x(delta, low, high))}" cy="{_c(y)}" r="4"/>')
        row_parts.append(_label(_X1 + 8, y + 4, f"{_fmt(delta, True)} (n {_fmt_count(cat.get('n'))})"))
        parts.append("<g>" + "".join(row_parts) + "</g>")
    parts.append(_vline("zero", _x(0.0, low, high), top - 4, top + height + 4))
    parts += _ticks([low, low / 2, 0.0, high / 2, high], low, high, top + height, signed=True)
    return _svg("plot-categories", "per-category deltas with intervals", top + height + 24, parts)


def _histogram(values: list[float], max_bits: float, bins: int) -> list[int]:
    counts = [0] * bins
    for v in values:
        i = bins - 1 if v >= max_bits else 0 if v <= 0 else min(bins - 1, int(v / (max_bits / bins)))
        counts[i] += 1
    return counts


def _exposure_plot(exposure: dict[str, object]) -> str:
    """Histograms of canary exposure (bits) for candidate and base, over 0..max_bits, with chance marked.

    An exposure near the maximum means the model ranks the inserted secret first among its unseen
    look-alikes: memorised. Chance is about 1 bit.
    """
    sides: dict[str, list[float]] = {}
    unreadable = 0
    for side in ("candidate", "reference"):
        raw = exposure.get(side)
        raw = raw if isinstance(raw, list) else []
        sides[side] = [v for v in (_num(x) for x in raw) if v is not None]
        unreadable += len(raw) - len(sides[side])
    if not sides["candidate"] and not sides["reference"]:
        return "<p class=none>no canary exposures recorded</p>"
    max_bits = _num(exposure.get("max_bits"))
    per_canary = _count(exposure.get("candidates_per_canary"))
    if max_bits is None or max_bits <= 0:
        max_bits = math.log2(per_canary + 1) if per_canary else max(max(sides["candidate"] + sides["reference"]), 1.0)
    bins = min(_MAX_BINS, max(1, math.ceil(max_bits)))
    histograms = {side: _histogram(values, max_bits, bins) for side, values in sides.items()}
    peak = max(max(h) for h in histograms.values()) or 1
    top, height = 14.0, 140.0
    bottom, slot = top + height, (_X1 - _X0) / bins
    parts = [_area(top, height), _label(_X0 - 8, top + 8, str(peak), "end"), _label(_X0 - 8, bottom, "0", "end"),
             _label(_X0 - 8, top + height / 2, "canaries", "end")]
    for offset, side, cls, who in ((0.1, "candidate", "cand", "candidate"), (0.5, "reference", "base", "base")):
        for i, n in enumerate(histograms[side]):
            if n:
                h = n / peak * height
                lo, hi = max_bits * i / bins, max_bits * (i + 1) / bins
                parts.append(f'<rect class="{cls}" x="{_c(_X0 + slot * (i + offset))}" y="{_c(bottom - h)}" '
                             f'width="{_c(slot * 0.4)}" height="{_c(h)}"><title>{who} {_fmt(lo)}–{_fmt(hi)} bits: {n}'
                             "</title></rect>")
    chance = _num(exposure.get("chance_bits"))
    if chance is not None:
        x = _x(chance, 0, max_bits)
        parts += [_vline("chance", x, top - 4, bottom + 4), _label(x + 3, top + 4, "chance")]
    step = max(1, bins // 5)
    parts += _ticks([max_bits * i / bins for i in range(0, bins + 1, step)], 0, max_bits, bottom)
    parts += [f'<rect class="cand" x="{_c(_X1 + 10)}" y="{_c(top)}" width="10" height="10"/>',
              _label(_X1 + 24, top + 9, "candidate"),
              f'<rect class="base" x="{_c(_X1 + 10)}" y="{_c(top + 16)}" width="10" height="10"/>',
              _label(_X1 + 24, top + 25, "base"), _label(_X1 + 10, bottom + 19, "bits")]
    note = f"<p class=none>{unreadable} values not finite, not shown.</p>" if unreadable else ""
    caption = (f"<p>{len(sides['candidate'])} canaries; exposure in bits, chance {_fmt(chance)}, "
               f"maximum {_fmt(max_bits)} ({_fmt_count(per_canary)} look-alikes per canary); "
               f"mean candidate {_fmt(_mean(sides['candidate']))}, base {_fmt(_mean(sides['reference']))}.</p>")
    return _svg("plot-exposure", "canary exposure histogram", bottom + 24, parts) + caption + note


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


_CSS = """
body{font:14px system-ui,sans-serif;margin:2em;max-width:75em;color:#222} h1{font-size:1.4em}
table{border-collapse:collapse;margin:.5em 0 1.5em} td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap} small{color:#777}
.none{color:#888} .facts{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}
.facts dt{color:#666} .facts dd{margin:0;word-break:break-all}
.decision{font-size:1.3em;padding:.6em 1em;border-radius:4px;margin:1em 0}
.decision.pass{background:#e3f4e8;border:2px solid #2a8a4a} .decision.fail{background:#fbe5e5;border:2px solid #b33}
.decision span{font-size:.75em;margin-left:1em}
.better{color:#1d7a3a;font-weight:600} .worse{color:#b22;font-weight:600} .inconclusive{color:#777}
svg{display:block;margin:.5em 0;font-size:11px} svg .area{fill:#fafafa;stroke:#ddd}
svg .ci,svg .cap{stroke:#222;stroke-width:1.5} svg .bar{fill:#8bb8dd} svg .est{fill:#225d8f}
svg .ref,svg .zero,svg .chance{stroke:#b33;stroke-dasharray:4 3} svg .tick{stroke:#999}
svg .wins{fill:#4a9a5e} svg .ties{fill:#bbb} svg .losses{fill:#c55} svg .cand{fill:#3a6ea5} svg .base{fill:#aaa}
.example{border-top:1px solid #ddd;margin-top:1em} .win{font-size:.8em;color:#555;margin-left:1em}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:1em} h4{margin:.6em 0 .2em;color:#555}
pre{white-space:pre-wrap;word-break:break-word;background:#f6f6f6;padding:.5em;margin:0;max-height:30em;overflow:auto}
"""


def render_html(results: dict[str, object]) -> str:
    """A self-contained HTML page of one evaluation run, for tenant storage next to results.json.

    Sections: the run and its gate decision, the gates, every metric with its interval and direction,
    plots (win rate, per-category deltas, canary exposure) and example pairs side by side.
    """
    r = _section(results)
    win, exposure = r.get("win_rate"), r.get("exposure")
    win_part = _win_rate_plot(win) + _win_caption(win) if isinstance(win, dict) else "<p class=none>no judged pairs</p>"
    categories = _rows(r.get("categories"))
    forest = _forest_plot(categories) if categories else "<p class=none>no categories</p>"
    exposure_part = _exposure_plot(exposure) if isinstance(exposure, dict) else "<p class=none>no canary probes</p>"
    title = f"Evaluation {_text(r.get('eval_id'))}"
    return f"""<!doctype html><html><head><meta charset=utf-8>
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name=referrer content=no-referrer><title>{title}</title><style>{_CSS}</style></head><body>
<h1>{title}</h1>{_decision_banner(r)}
<section id=run><h2>Run</h2>{_run_facts(r)}</section>
<section id=gates><h2>Gates</h2>{_gates_table(_rows(r.get("gates")))}</section>
<section id=metrics><h2>Metrics</h2>
<p>delta = candidate − base; the interval is the {_confidence(r.get("confidence"))} paired bootstrap interval of the
delta. A change is better or worse when its interval excludes 0, inconclusive when it contains 0.</p>
{_metrics_table(_rows(r.get("estimates")))}</section>
<section id=win-rate><h2>Win rate against the base model</h2>{win_part}</section>
<section id=categories><h2>Per-category deltas</h2>{forest}</section>
<section id=exposure><h2>Canary exposure</h2>{exposure_part}</section>
<section id=examples><h2>Examples</h2>
<p>Private prompts and outputs: this page stays in tenant storage.</p>{_examples(_rows(r.get("examples")))}</section>
</body></html>"""


# --- text summary -------------------------------------------------------------------------------

def _summary_metrics(estimates: list[dict[str, object]]) -> list[dict[str, object]]:
    """The headline metrics present (in ``SUMMARY_METRICS`` order); the first estimates if none are."""
    by_name = {e.get("name"): e for e in estimates}
    chosen = [by_name[name] for name in SUMMARY_METRICS if name in by_name]
    return (chosen or estimates)[:MAX_SUMMARY_METRICS]


def render_summary_text(results: dict[str, object]) -> str:
    """A few plain-text lines for the CLI: the decision, each gate, the headline metrics with intervals.

    Ids and scores only — the examples (prompts, references, outputs) are never read.
    """
    r = _section(results)
    passed, reason = _decision(r)
    lines = [f"eval {_plain(r.get('eval_id'))}: {'PASSED' if passed else 'FAILED'} ({_plain(reason, 400)})",
             f"model {_plain(r.get('model_version_id'))} vs base {_plain(r.get('base_model_id'))}, "
             f"suite {_plain(r.get('suite_id'))}, judge {_plain(r.get('judge'))}, items {_fmt_count(r.get('items'))}"]
    gates = _rows(r.get("gates"))
    lines.append("gates:" if gates else "gates: none set")
    for g in gates:
        verdict = "PASS" if g.get("passed") is True else "FAIL"
        lines.append(f"  {verdict} {_plain(g.get('gate'), 40)}: {_plain(g.get('bound_kind'), 10)} bound "
                     f"{_fmt(g.get('bound'))} vs {_fmt(g.get('threshold'))} (margin {_fmt(g.get('margin'), True)})")
    metrics = _summary_metrics(_rows(r.get("estimates")))
    if metrics:
        lines.append(f"metrics (candidate vs base, delta [{_confidence(r.get('confidence'))} interval]):")
    width = max((len(_plain(e.get("name"), 32)) for e in metrics), default=0)
    for e in metrics:
        lines.append(f"  {_plain(e.get('name'), 32):<{width}}  {_fmt(e.get('candidate'))} vs {_fmt(e.get('reference'))}"
                     f"  delta {_fmt(e.get('delta'), True)} {_interval(e.get('ci_low'), e.get('ci_high'))}"
                     f"  {direction(e.get('ci_low'), e.get('ci_high'), e.get('higher_is_better'))}")
    return "\n".join(lines) + "\n"
